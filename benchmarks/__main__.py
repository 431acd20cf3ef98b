"""``python -m benchmarks [--quick|--full] [--loops ...] [--only ...] [--rounds N] [--out DIR]``."""

from .cli import main

raise SystemExit(main())
