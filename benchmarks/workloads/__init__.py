"""The workloads; importing this package registers them, in table order."""

from . import echo, memory, scheduling, tasks  # noqa: F401  (registration order)
