"""Memory: bytes per pending task, bytes per idle connection (plain TCP and
TLS), and whether a long run of task lifecycles leaves memory flat.

All three read the process's resident set size (RSS) from /proc/self/statm.
RSS is the only measure that is fair across implementations: tracemalloc sees
only what goes through Python's allocator, so it would count a Python or
Cython loop's objects in full but miss a C or Rust loop's own ``malloc``
calls.  RSS counts both, at page granularity, so the workloads use a large n,
take the delta around the n items, and divide by n.  Each measurement runs in
a fresh process, which keeps one workload's garbage out of another's delta.
"""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys

from ..registry import MEMORY_TARGETS, LoopFactory, Measurement, Sizes, run_loop, workload

PAGE = os.sysconf("SC_PAGE_SIZE")
MIB = 1024 * 1024


def rss() -> int:
    """The process's resident set size in bytes, after a full collection."""
    gc.collect()
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


async def _blocked(fut: asyncio.Future[None]) -> None:
    await fut


@workload(
    "mem_pending_task",
    group="memory",
    kind="memory",
    sizes=Sizes(tiny=2_000, quick=50_000, full=200_000),
    unit="task",
    targets=MEMORY_TARGETS,
    warmup=False,
    max_rounds={"quick": 1, "full": 2},
)
def mem_pending_task(new_loop: LoopFactory, n: int) -> Measurement:
    """RSS growth divided by n while n tasks (each a coroutine awaiting one
    shared future) are pending."""

    async def main() -> Measurement:
        loop = asyncio.get_running_loop()
        # Warm up: the same shape, smaller, so the code paths, free lists and
        # type caches a first task needs are not charged to the measured ones.
        warm = loop.create_future()
        warm_tasks = [loop.create_task(_blocked(warm)) for _ in range(1000)]
        await asyncio.sleep(0)
        warm.set_result(None)
        await asyncio.gather(*warm_tasks)
        del warm_tasks

        fut: asyncio.Future[None] = loop.create_future()
        tasks: list[asyncio.Future[None]] = [None] * n  # type: ignore[list-item]
        before = rss()
        for i in range(n):
            tasks[i] = loop.create_task(_blocked(fut))
        await asyncio.sleep(0)  # every task has now run its first step and blocks on fut
        after = rss()
        if any(t.done() for t in tasks):
            raise RuntimeError("a task finished early")
        fut.set_result(None)
        await asyncio.gather(*tasks)
        return Measurement((after - before) / n, n, {"rss_before": before, "rss_after": after})

    result: Measurement = run_loop(new_loop, main)
    return result


# A client process that holds idle connections to the server under test, so
# the client ends cost the measured process nothing.  Each line on its stdin
# says how many more connections to open; it answers when they are all open
# (with a certificate file as its second argument: open and TLS-handshaken)
# and holds them until its stdin closes.
_CLIENT = """
import socket, ssl, sys
port = int(sys.argv[1])
tls = None
if len(sys.argv) > 2:
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    tls.load_verify_locations(sys.argv[2])
socks = []
for line in sys.stdin:
    for _ in range(int(line)):
        sock = socket.create_connection(("127.0.0.1", port))
        socks.append(tls.wrap_socket(sock, server_hostname="127.0.0.1") if tls else sock)
    print(len(socks), flush=True)
"""


def _idle_connections(new_loop: LoopFactory, n: int, tls: bool) -> Measurement:
    """The two idle-connection rows below, with or without TLS."""
    from .echo import TLS_CERT, _tls_contexts

    server_tls = _tls_contexts()[0] if tls else None

    async def main() -> Measurement:
        loop = asyncio.get_running_loop()
        conns: list[asyncio.BaseTransport] = []
        reached: dict[int, asyncio.Future[None]] = {}

        class Idle(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                conns.append(transport)
                waiter = reached.get(len(conns))
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)

        server = await loop.create_server(Idle, "127.0.0.1", 0, backlog=1024, ssl=server_tls)
        port = server.sockets[0].getsockname()[1]
        # A blocking spawn inside a coroutine is fine here: it happens before
        # anything is measured, and the loop's own subprocess support is not
        # what this workload is about.
        client = subprocess.Popen(  # noqa: ASYNC220
            [
                sys.executable,
                "-I",
                "-S",
                "-c",
                _CLIENT,
                str(port),
                *([str(TLS_CERT)] if tls else []),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
        )
        assert client.stdin is not None
        try:

            async def open_more(count: int) -> None:
                waiter = reached[len(conns) + count] = loop.create_future()
                assert client.stdin is not None
                client.stdin.write(f"{count}\n")
                client.stdin.flush()
                await asyncio.wait_for(waiter, 60)

            warm = 50  # first connections pay one-time costs; they stay open
            await open_more(warm)
            await asyncio.sleep(0.05)
            before = rss()
            await open_more(n)
            await asyncio.sleep(0.05)
            after = rss()
        finally:
            client.stdin.close()
            client.wait(30)
            for t in conns:
                t.close()
            server.close()
            await server.wait_closed()
        return Measurement((after - before) / n, n, {"rss_before": before, "rss_after": after})

    result: Measurement = run_loop(new_loop, main)
    return result


@workload(
    "mem_idle_connection",
    group="memory",
    kind="memory",
    sizes=Sizes(tiny=50, quick=3_000, full=5_000),
    unit="connection",
    targets=MEMORY_TARGETS,
    warmup=False,
    max_rounds={"quick": 1, "full": 2},
)
def mem_idle_connection(new_loop: LoopFactory, n: int) -> Measurement:
    """RSS growth divided by n when n idle TCP connections, opened by a separate
    client process, are accepted by a create_server Protocol server."""
    return _idle_connections(new_loop, n, tls=False)


@workload(
    "mem_idle_tls_connection",
    group="memory",
    kind="memory",
    sizes=Sizes(tiny=20, quick=300, full=2_000),
    unit="connection",
    warmup=False,
    max_rounds={"quick": 1, "full": 2},
)
def mem_idle_tls_connection(new_loop: LoopFactory, n: int) -> Measurement:
    """mem_idle_connection with TLS: the server has ssl=, and each connection
    counts once its handshake is done.  (Not in the issue's list: no target.)"""
    return _idle_connections(new_loop, n, tls=True)


LIFECYCLE_BATCH = 1000


@workload(
    "task_lifecycles_flat",
    group="memory",
    kind="growth",
    sizes=Sizes(tiny=5_000, quick=100_000, full=1_000_000),
    unit="lifecycles",
    max_growth=1 * MIB,
    warmup=False,
    max_rounds={"quick": 1, "full": 1},
)
def task_lifecycles_flat(new_loop: LoopFactory, n: int) -> Measurement:
    """RSS growth over n task lifecycles (create, one sleep(0), finish, in
    batches of 1000 gathered), measured after a warm-up of n/10."""

    async def life() -> None:
        await asyncio.sleep(0)

    async def lives(count: int) -> None:
        create_task = asyncio.get_running_loop().create_task
        for _ in range(count // LIFECYCLE_BATCH):
            await asyncio.gather(*[create_task(life()) for _ in range(LIFECYCLE_BATCH)])

    async def main() -> Measurement:
        await lives(max(n // 10, LIFECYCLE_BATCH))
        before = rss()
        samples = []
        step = max(n // 10, LIFECYCLE_BATCH)
        for _ in range(n // step):
            await lives(step)
            samples.append(rss() - before)
        growth = samples[-1]
        return Measurement(
            float(growth),
            step * (n // step),
            {"rss_before": before, "max_growth": max(samples), "growth_samples": samples},
        )

    result: Measurement = run_loop(new_loop, main)
    return result
