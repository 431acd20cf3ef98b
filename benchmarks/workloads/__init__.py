"""The workloads; importing this package registers them, in table order."""

from . import echo, http, memory, scheduling, tasks  # noqa: F401  (registration order)
