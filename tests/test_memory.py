"""Memory: a million task lifecycles leave the process's memory flat.

Each run happens in a child process (a clean heap, its own RSS): tasks are
created, scheduled, awaited and released in batches; the resident set size
after a warm-up is compared with the one after a million lifecycles, and
casyncio's live-object counters must be back where they started.
"""

from __future__ import annotations

import json
import os

import pytest
from conftest import run_python

CHILD = r"""
import asyncio, gc, json, os, sys
import casyncio
from casyncio import _casyncio

def rss_kib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024

async def child(i):
    if i % 3 == 0:
        await asyncio.sleep(0)
    fut = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_soon(fut.set_result, i)
    return await fut

async def batch(n):
    results = await asyncio.gather(*(child(i) for i in range(n)))
    assert results == list(range(n))

async def lifecycles(total, per_batch=1000):
    for _ in range(total // per_batch):
        await batch(per_batch)

def main(total, warmup):
    loop = casyncio.new_event_loop()
    loop.run_until_complete(lifecycles(warmup))
    gc.collect()
    before = rss_kib()
    counts_before = _casyncio._live_counts()
    loop.run_until_complete(lifecycles(total))
    gc.collect()
    after = rss_kib()
    counts_after = _casyncio._live_counts()
    loop.close()
    print(json.dumps({"before_kib": before, "after_kib": after,
                      "futures": [counts_before["futures"], counts_after["futures"]],
                      "handles": [counts_before["handles"], counts_after["handles"]]}))

main(int(sys.argv[1]), int(sys.argv[2]))
"""


def _child_env() -> dict[str, str]:
    # Task lifecycles in normal operation: debug mode's source tracebacks
    # fragment the heap, which RSS would show though nothing leaks.
    env = dict(os.environ)
    env.pop("PYTHONASYNCIODEBUG", None)
    return env


def _run_child(source: str, args: list[int], env=None) -> dict:
    """Run `source` in a fresh interpreter; return the JSON it prints."""
    return json.loads(run_python(source, *map(str, args), env=env, timeout=600))


UNDER_ASAN = "libasan" in os.environ.get("LD_PRELOAD", "")


@pytest.mark.skipif(
    UNDER_ASAN,
    reason="RSS says nothing under AddressSanitizer: its quarantine keeps freed memory "
    "mapped (the object-count leak test below still runs)",
)
def test_a_million_task_lifecycles_leave_memory_flat():
    result = _run_child(CHILD, [1_000_000, 100_000], env=_child_env())
    growth = result["after_kib"] - result["before_kib"]
    # Flat: a leak of even 8 bytes per lifecycle would add ~7800 KiB.
    assert growth < 2048, result
    assert result["futures"][0] == result["futures"][1], result
    assert result["handles"][0] == result["handles"][1], result


@pytest.mark.skipif(UNDER_ASAN, reason="RSS says nothing under AddressSanitizer")
def test_the_memory_check_catches_a_leak():
    """The same measurement, with a deliberate leak of one small object per
    lifecycle, must fail the bound used above (so the test can fail)."""
    leaky = CHILD.replace("    return await fut", "    LEAK.append(object())\n    return await fut")
    leaky = leaky.replace("import casyncio\n", "import casyncio\nLEAK = []\n")
    result = _run_child(leaky, [300_000, 10_000], env=_child_env())
    assert result["after_kib"] - result["before_kib"] >= 2048, result


MIX = r"""
import asyncio, gc, json, socket, sys
import casyncio

async def timers():
    loop = asyncio.get_running_loop()
    hs = [loop.call_later(0.0005 * (i % 5), lambda: None) for i in range(200)]
    for h in hs[::2]:
        h.cancel()
    await asyncio.sleep(0.003)

async def failures():
    async def boom():
        raise ValueError("x")
    async def forever():
        await asyncio.sleep(3600)
    t = asyncio.ensure_future(boom())
    try:
        await t
    except ValueError:
        pass
    t2 = asyncio.ensure_future(forever())
    await asyncio.sleep(0)
    t2.cancel("stop")
    try:
        await t2
    except asyncio.CancelledError:
        pass
    try:
        await asyncio.wait_for(forever(), 0.0001)
    except TimeoutError:
        pass
    async with asyncio.TaskGroup() as tg:
        for _ in range(5):
            tg.create_task(asyncio.sleep(0))

async def sock_ops():
    loop = asyncio.get_running_loop()
    a, b = socket.socketpair()
    a.setblocking(False); b.setblocking(False)
    for _ in range(20):
        await loop.sock_sendall(a, b"x" * 3000)
        got = 0
        while got < 3000:
            got += len(await loop.sock_recv(b, 65536))
    try:  # a pending op given up on
        await asyncio.wait_for(loop.sock_recv(b, 10), 0.0001)
    except TimeoutError:
        pass
    a.close(); b.close()

async def transports():
    loop = asyncio.get_running_loop()
    class Echo(asyncio.Protocol):
        def connection_made(self, t): self.t = t
        def data_received(self, d): self.t.write(d)
    srv = await loop.create_server(Echo, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    r, w = await asyncio.open_connection("127.0.0.1", port)
    for _ in range(20):
        w.write(b"y" * 5000)
        await r.readexactly(5000)
    w.close()
    await w.wait_closed()
    srv.close()
    await srv.wait_closed()

async def datagrams():
    loop = asyncio.get_running_loop()
    got = loop.create_future()
    class P(asyncio.DatagramProtocol):
        def datagram_received(self, d, a):
            if not got.done():
                got.set_result(d)
    t1, _ = await loop.create_datagram_endpoint(P, local_addr=("127.0.0.1", 0))
    t2, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol,
                                                remote_addr=t1.get_extra_info("sockname"))
    t2.sendto(b"z")
    await got
    t1.close(); t2.close()
    await asyncio.sleep(0)

async def round_():
    for f in (timers, failures, sock_ops, transports, datagrams):
        await f()

def measure(rounds):
    for _ in range(rounds):
        casyncio.run(round_())
    gc.collect()
    return len(gc.get_objects())

# Counted: the objects the garbage collector tracks (containers, contexts,
# futures, transports, bound methods...), which free lists do not blur.
# After a warm-up, a leak grows the count in every interval; take the
# smallest growth of three.
rounds = int(sys.argv[1])
measure(3 * rounds)
prev = measure(1)
growths = []
for _ in range(3):
    cur = measure(rounds)
    growths.append(cur - prev)
    prev = cur
print(json.dumps({"growths": growths, "rounds": rounds}))
"""


def test_workload_mix_leaks_no_python_objects():
    """Timers, cancellation, failures, sock_* ops (one abandoned), TCP and
    UDP transports, streams and servers, over and over: once warm, the number
    of live GC-tracked objects does not grow (a leaked container per round
    would add `rounds` to every interval)."""
    result = _run_child(MIX, [50])
    assert min(result["growths"]) < result["rounds"] // 5, result


def test_the_object_count_check_catches_a_leak():
    """The workload-mix measurement with one leaked container per round must
    exceed the bound the real test uses."""
    leaky = MIX.replace(
        "async def round_():\n", "LEAK = []\n\nasync def round_():\n    LEAK.append([])\n"
    )
    assert "LEAK.append" in leaky
    result = _run_child(leaky, [50])
    assert min(result["growths"]) >= result["rounds"] // 5, result


# Whether glibc serves a big block from the heap or maps it afresh (mallinfo2's
# hblkhd counts mapped bytes), in a fresh process, after a casyncio loop's first
# read or without one.
BIG_BLOCKS = r"""
import asyncio, ctypes, json, socket, sys
import casyncio

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
        "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2

async def read_once():
    loop = asyncio.get_running_loop()
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(False)
        b.send(b"x")
        assert await loop.sock_recv(a, 100) == b"x"

if sys.argv[1] == "read":
    casyncio.run(read_once())
before = libc.mallinfo2().hblkhd
block = bytes(int(sys.argv[2]))
print(json.dumps({"mapped": libc.mallinfo2().hblkhd > before}))
"""


def _has_mallinfo2() -> bool:
    import ctypes

    return hasattr(ctypes.CDLL(None), "mallinfo2")


@pytest.mark.skipif(UNDER_ASAN, reason="AddressSanitizer replaces glibc's malloc")
@pytest.mark.skipif(not _has_mallinfo2(), reason="needs glibc's malloc (mallinfo2, glibc 2.33+)")
def test_big_messages_are_recycled_from_the_heap():
    """Bytes objects of up to 1 MiB (what a transport hands data_received()
    for big messages) come from glibc's heap once a loop has read, rather than
    being mapped afresh and faulted in page by page each time."""
    size = 900 * 1024

    def mapped(first: str) -> bool:
        return json.loads(run_python(BIG_BLOCKS, first, str(size)))["mapped"]

    # Without a loop's read, glibc still maps such a block (else this
    # process's malloc is tuned already, and the test shows nothing).
    if not mapped("none"):
        pytest.skip("this malloc serves 900 KiB blocks from the heap already")
    assert not mapped("read")
