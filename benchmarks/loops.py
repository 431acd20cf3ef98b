"""The loops the suite knows how to make, and how to tell if one is usable.

A loop is named, imported by module, and made by a zero-argument factory.
``deque`` is not a loop: it names the bare trampoline that the call_soon
floor runs on, so that the floor gets a row (and a process) of its own.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.metadata
import platform
from collections.abc import Callable
from dataclasses import dataclass

from .registry import LoopFactory


@dataclass(frozen=True)
class LoopSpec:
    name: str
    module: str
    factory: str  # attribute of the module: a zero-argument callable
    dist: str | None  # distribution whose version to report (None: the Python version)
    description: str


KNOWN: dict[str, LoopSpec] = {
    spec.name: spec
    for spec in (
        LoopSpec("casyncio", "casyncio", "new_event_loop", "casyncio", "this project (C)"),
        LoopSpec(
            "asyncio", "asyncio", "SelectorEventLoop", None, "stock asyncio (Python + _asyncio)"
        ),
        LoopSpec("uvloop", "uvloop", "new_event_loop", "uvloop", "libuv via Cython"),
        LoopSpec("rloop", "rloop", "new_event_loop", "rloop", "Rust (PyO3)"),
        LoopSpec("veloxloop", "veloxloop", "new_event_loop", "veloxloop", "Rust (PyO3)"),
    )
}

# Compared side by side in quick mode (the targets are against these).
CORE = ("casyncio", "asyncio", "uvloop")
PSEUDO = "deque"


def _no_loop() -> asyncio.AbstractEventLoop:
    raise RuntimeError("the deque floor is not a loop")


def load(name: str) -> tuple[LoopFactory, str, str]:
    """Import loop ``name``: its factory, version, and the file it came from.
    Raises ImportError (or whatever the import raises) when it is not
    installed or broken."""
    if name == PSEUDO:
        return _no_loop, "collections.deque", ""
    spec = KNOWN.get(name)
    if spec is None:
        raise KeyError(f"unknown loop {name!r}; known: {', '.join(KNOWN)}")
    module = importlib.import_module(spec.module)
    factory: Callable[[], asyncio.AbstractEventLoop] = getattr(module, spec.factory)
    if spec.dist is None:
        version = platform.python_version()
    else:
        try:
            version = importlib.metadata.version(spec.dist)
        except importlib.metadata.PackageNotFoundError:
            version = str(getattr(module, "__version__", "?"))
    return factory, version, str(getattr(module, "__file__", ""))


def smoke_test(factory: LoopFactory) -> None:
    """Raise unless the loop runs callbacks, timers, tasks and futures."""

    async def main() -> int:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        loop.call_soon(fut.set_result, 1)
        got = await fut
        await asyncio.sleep(0)
        await asyncio.sleep(0.001)
        results = await asyncio.gather(*[asyncio.sleep(0, i) for i in range(3)])
        return int(got) + sum(results)

    loop = factory()
    try:
        if loop.run_until_complete(main()) != 4:
            raise RuntimeError("smoke test computed a wrong result")
    finally:
        loop.close()
