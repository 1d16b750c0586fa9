"""``python -m gradprobe``: see :mod:`gradprobe.integrations.cli`."""
import sys

from .integrations.cli import main

sys.exit(main())
