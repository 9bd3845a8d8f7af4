"""``python -m napari_ganrec.cli``: the ``napari-ganrec`` command."""

import sys

from . import main

sys.exit(main())
