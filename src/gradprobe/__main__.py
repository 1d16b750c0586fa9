"""``python -m gradprobe``: see :mod:`gradprobe.cli`."""
import sys

from .cli import main

sys.exit(main())
