"""The Qt-free state of the dock widgets (DESIGN.md: widget model beside ``_qt/``).

- :mod:`.inputs`: what a widget reads from a layer (sinograms in any layout, line integrals through
  :func:`napari_ganrec.io.line_integrals`, angles and centre from metadata, angular coverage).
- :mod:`.run`: the run's parameters (:class:`~.run.RunParams`), the worker generator that drives the
  engine and yields small update records, and the evented run state the widgets observe.
"""
