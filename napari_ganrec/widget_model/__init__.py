"""The Qt-free state of the dock widgets (DESIGN.md: widget model beside ``_qt/``).

- :mod:`.inputs`: what a widget reads from a layer (sinograms in any layout, line integrals through
  :func:`napari_ganrec.io.line_integrals`, angles and centre from metadata, angular coverage);
  :mod:`.binning` the binning before a run.
- :mod:`.form`: what the reconstruction form's choices mean (data kinds, angle sources, a centre
  scan's centres, reading and binning a run's input, the run's context).
- :mod:`.run`: the run's parameters (:class:`~.run.RunParams`) and the worker generator that drives
  the engine and yields small update records; :mod:`.state` the evented run state the widgets
  observe; :mod:`.status` what the Run box says about it.
- :mod:`.live` and :mod:`.metadata`: the live layers' names, shapes, contrast and metadata.
- :mod:`.devices` and :mod:`.warm`: the devices offered and the engine's warm-up.
"""
