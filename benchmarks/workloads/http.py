"""An HTTP server under load: uvicorn on the loop under test, the clients in C.

What a uvloop user does when they swap one import: the same uvicorn server
(httptools' parser when it is installed, else h11) answering the same small
ASGI app, with only the loop changed.  The load is benchmarks/floor/http_load.c
in another process, 32 keep-alive connections with one request in flight each;
it times its own requests, so the server's start and stop are not counted.
"""

from __future__ import annotations

import asyncio
import importlib.util
from typing import Any

from ..registry import LoopFactory, Measurement, Sizes, run_loop, workload
from .echo import HOST, LOAD_CLIENTS, c_program, run_load_client

BODY = b"Hello, world!"
HEADERS = [(b"content-type", b"text/plain"), (b"content-length", str(len(BODY)).encode())]


async def _hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The ASGI app: 200 and a 13-byte body for every request."""
    assert scope["type"] == "http"
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})


def _parser() -> str:
    return "httptools" if importlib.util.find_spec("httptools") else "h11"


async def _serve_requests(n: int) -> Measurement:
    try:
        import uvicorn
    except ImportError:
        raise NotImplementedError("uvicorn is not installed (pip install '.[bench]')") from None
    config = uvicorn.Config(
        _hello,
        host=HOST,
        port=0,
        http=_parser(),
        lifespan="off",
        log_config=None,
        log_level="warning",
        access_log=False,
    )
    server = uvicorn.Server(config)
    # Port 0 and uvicorn's own create_server(host, port), as uvicorn.run()
    # does: the listening socket is TCP by getaddrinfo(), so every loop sets
    # TCP_NODELAY on the connections (a socket made by socket(AF_INET,
    # SOCK_STREAM) and passed in has proto 0, and asyncio leaves Nagle on).
    serving = asyncio.ensure_future(server.serve())
    try:
        while not server.started:
            if serving.done():
                serving.result()  # it failed to start: say why
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        m = await run_load_client(
            [str(c_program("http_load")), str(port), str(LOAD_CLIENTS), str(n)], "HTTP"
        )
    finally:
        server.should_exit = True
        await serving
    m.extra["parser"] = _parser()
    return m


@workload(
    "http_uvicorn",
    group="server",
    kind="time",
    sizes=Sizes(tiny=5, quick=150, full=800),
    unit="requests",
)
def http_uvicorn(new_loop: LoopFactory, n: int) -> Measurement:
    """A uvicorn server (httptools' parser, else h11) answering a 13-byte hello-world ASGI app
    on the loop under test, loaded by 32 keep-alive connections from a C client in
    another process (benchmarks/floor/http_load.c), n requests each."""
    m: Measurement = run_loop(new_loop, lambda: _serve_requests(n))
    return m
