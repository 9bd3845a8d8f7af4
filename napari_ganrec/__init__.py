"""napari-ganrec: GANrec tomographic reconstruction for napari, the command line and Dask."""
__version__ = "0.1.0"
