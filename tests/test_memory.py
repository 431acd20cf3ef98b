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
import asyncio, socket

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

ROUND = (timers, failures, sock_ops, transports, datagrams)
"""

# Appended to a workload that defines ROUND, a tuple of coroutine functions.
COUNT_GROWTH = r"""
import gc, json, sys
import casyncio

async def round_():
    for f in ROUND:
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
    result = _run_child(MIX + COUNT_GROWTH, [50])
    assert min(result["growths"]) < result["rounds"] // 5, result


def test_the_object_count_check_catches_a_leak():
    """The workload-mix measurement with one leaked container per round must
    exceed the bound the real test uses."""
    leaky = (MIX + COUNT_GROWTH).replace(
        "async def round_():\n", "LEAK = []\n\nasync def round_():\n    LEAK.append([])\n"
    )
    assert "LEAK.append" in leaky
    result = _run_child(leaky, [50])
    assert min(result["growths"]) >= result["rounds"] // 5, result


# The ways things go wrong, each round: refused connections, peers that reset
# with data in flight, aborts, protocols and callbacks that raise, cancelled
# sock_* operations, TLS, Unix sockets and sendfile, children and pipes (one
# broken), signals, threads and the executor.
ERROR_PATHS = r"""
import asyncio, os, signal, socket, struct, threading

try:
    from test.test_asyncio import utils as test_utils
except ImportError:  # the interpreter's test package is not installed
    test_utils = None

DIR = os.getcwd()  # run_python()'s temporary directory
FILE = os.path.join(DIR, "file")
with open(FILE, "wb") as f:
    f.write(b"s" * 100_000)

def free_port(kind=socket.SOCK_STREAM):
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

def reset(sock):
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()

async def refused():
    loop = asyncio.get_running_loop()
    port = free_port()
    for connect in (lambda: loop.create_connection(asyncio.Protocol, "127.0.0.1", port),
                    lambda: asyncio.open_connection("127.0.0.1", port)):
        try:
            await connect()
        except OSError:
            pass
    with socket.socket() as s:
        s.setblocking(False)
        try:
            await loop.sock_connect(s, ("127.0.0.1", port))
        except OSError:
            pass

class Flooder(asyncio.Protocol):
    def connection_made(self, transport):
        transport.write(b"p" * 2_000_000)  # more than the socket takes
        transport.pause_reading()
        transport.resume_reading()

class Raiser(asyncio.Protocol):
    def data_received(self, data):
        raise ValueError("data_received fails")

class BufferedEcho(asyncio.BufferedProtocol):
    def __init__(self):
        self.buffer = bytearray(5000)
    def connection_made(self, transport):
        self.transport = transport
    def get_buffer(self, sizehint):
        return self.buffer
    def buffer_updated(self, nbytes):
        self.transport.write(bytes(self.buffer[:nbytes]))

async def resets():
    loop = asyncio.get_running_loop()
    for factory in (Flooder, Raiser, BufferedEcho):
        server = await loop.create_server(factory, "127.0.0.1", 0)
        client = socket.create_connection(server.sockets[0].getsockname())
        client.send(b"hello")
        await asyncio.sleep(0.002)
        reset(client)
        await asyncio.sleep(0.002)
        server.close()
        await server.wait_closed()
    server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
    address = server.sockets[0].getsockname()
    transport, _ = await loop.create_connection(asyncio.Protocol, *address)
    transport.write(b"a" * 3_000_000)
    transport.abort()
    transport, _ = await loop.create_connection(asyncio.Protocol, *address)
    transport.write_eof()
    transport.close()
    server.close()
    await server.wait_closed()

async def timeouts():
    accepted = asyncio.get_running_loop().create_future()
    server = await asyncio.start_server(lambda r, w: accepted.set_result(w), "127.0.0.1", 0)
    reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname())
    server_writer = await accepted  # else wait_closed() (3.12+) waits for it
    try:
        async with asyncio.timeout(0.001):
            await reader.read(10)
    except TimeoutError:
        pass
    for w in (writer, server_writer):
        w.close()
    server.close()
    await server.wait_closed()

async def tls():
    if test_utils is None:
        return
    async def echo(reader, writer):
        writer.write(await reader.read(100))
        writer.close()
    server = await asyncio.start_server(
        echo, "127.0.0.1", 0, ssl=test_utils.simple_server_sslcontext())
    reader, writer = await asyncio.open_connection(
        *server.sockets[0].getsockname(), ssl=test_utils.simple_client_sslcontext(),
        server_hostname="localhost")
    writer.write(b"tls")
    assert await reader.read(100) == b"tls"
    writer.close()
    await writer.wait_closed()
    server.close()
    await server.wait_closed()

async def unix_sendfile():
    path = os.path.join(DIR, "socket")
    async def count(reader, writer):
        writer.write(str(len(await reader.read())).encode())
        writer.close()
    server = await asyncio.start_unix_server(count, path)
    reader, writer = await asyncio.open_unix_connection(path)
    with open(FILE, "rb") as f:
        await asyncio.get_running_loop().sendfile(writer.transport, f)
    writer.write_eof()
    assert await reader.read() == b"100000"
    writer.close()
    await writer.wait_closed()
    server.close()
    await server.wait_closed()

async def cancelled_ops():
    loop = asyncio.get_running_loop()
    listener = socket.create_server(("127.0.0.1", 0))
    a, b = socket.socketpair()
    for s in (listener, a, b):
        s.setblocking(False)
    for coro in (loop.sock_accept(listener), loop.sock_recv(a, 10),
                 loop.sock_recv_into(a, bytearray(10)), loop.sock_sendall(a, b"z" * 5_000_000)):
        task = asyncio.ensure_future(coro)
        await asyncio.sleep(0)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
    for s in (listener, a, b):
        s.close()

async def children_and_pipes():
    cat = await asyncio.create_subprocess_exec(
        "cat", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    out, _ = await cat.communicate(b"c" * 10_000)
    assert len(out) == 10_000
    sleeper = await asyncio.create_subprocess_exec("sleep", "10")
    sleeper.kill()
    await sleeper.wait()
    loop = asyncio.get_running_loop()
    rfd, wfd = os.pipe()
    rt, _ = await loop.connect_read_pipe(asyncio.Protocol, os.fdopen(rfd, "rb", 0))
    wt, _ = await loop.connect_write_pipe(asyncio.Protocol, os.fdopen(wfd, "wb", 0))
    wt.write(b"q" * 1000)
    await asyncio.sleep(0.001)
    rt.close()  # the writer's next write fails with EPIPE
    wt.write(b"q" * 100_000)
    await asyncio.sleep(0.001)
    wt.close()

async def callbacks():
    loop = asyncio.get_running_loop()
    got = loop.create_future()
    loop.add_signal_handler(signal.SIGUSR1, got.set_result, 1)
    os.kill(os.getpid(), signal.SIGUSR1)
    await got
    loop.remove_signal_handler(signal.SIGUSR1)
    await loop.run_in_executor(None, sum, [1, 2])
    fut = loop.create_future()
    thread = threading.Thread(target=loop.call_soon_threadsafe, args=(fut.set_result, 2))
    thread.start()
    await fut
    thread.join()
    loop.call_soon(lambda: 1 / 0)
    loop.call_later(0, lambda: {}["key"])
    a, b = socket.socketpair()
    def failing_reader():
        loop.remove_reader(a)
        raise OSError("reader fails")
    loop.add_reader(a, failing_reader)
    b.send(b"r")
    await asyncio.sleep(0.001)
    a.close()
    b.close()

async def datagram_refused():
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        asyncio.DatagramProtocol, remote_addr=("127.0.0.1", free_port(socket.SOCK_DGRAM)))
    for _ in range(3):
        transport.sendto(b"d")  # ICMP port unreachable: error_received()
        await asyncio.sleep(0)
    transport.abort()

async def quiet():
    asyncio.get_running_loop().set_exception_handler(lambda loop, context: None)

ROUND = (quiet, refused, resets, timeouts, tls, unix_sendfile, cancelled_ops,
         children_and_pipes, callbacks, datagram_refused)
"""


def test_error_paths_leak_no_python_objects():
    """What goes wrong, over and over (see ERROR_PATHS), leaves no
    GC-tracked object behind: exceptions, transports, futures, tracebacks.
    (Had the transports' fatal-error path leaked its exception, a path the
    workload mix above does not reach, this would grow by 27 per round.)"""
    result = _run_child(ERROR_PATHS + COUNT_GROWTH, [50])
    assert min(result["growths"]) < result["rounds"] // 5, result


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
