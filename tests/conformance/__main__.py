"""``python -m tests.conformance``: see run.py, or pass --help."""

import sys

from .run import main

sys.exit(main())
