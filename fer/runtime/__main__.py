"""python -m fer.runtime: the same as the fer-classify command (fer.runtime.cli)."""

import sys

from fer.runtime.cli import main

sys.exit(main())
