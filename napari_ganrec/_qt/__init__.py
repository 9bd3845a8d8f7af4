"""Qt widgets of napari-ganrec (the only package that imports Qt, always through qtpy)."""
