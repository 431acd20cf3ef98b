"""Networking for casyncio.Loop: the cold orchestration around the C parts.

The hot paths -- the socket transports, the sock_*() operations, reading and
writing -- are C (csrc/transport*.c, csrc/sockops.c).  This module does what
runs once per connection: resolving addresses (numeric ones without the
executor), happy eyeballs, creating and binding sockets, servers and their
accept loop, datagram endpoints, sendfile, TLS on top of asyncio's own
SSLProtocol.  Behaviour, argument checks and error messages follow asyncio's
selector event loop; the code is our own.
"""

from __future__ import annotations

import collections.abc
import contextvars
import errno
import io
import itertools
import logging
import os
import socket
import stat
import sys
from asyncio import Server, exceptions, staggered, streams, tasks, trsock
from typing import Any

from ._versions import since

try:
    import ssl as _ssl
except ImportError:  # pragma: no cover - Python without ssl
    _ssl = None

logger = logging.getLogger("asyncio")

_HAS_IPV6 = hasattr(socket, "AF_INET6")
# create_datagram_endpoint(sock=) takes any socket but a stream one (a raw
# socket, say) from 3.11.8 and 3.12.2 on (CPython gh-114887); before, only
# SOCK_DGRAM.
_ANY_NON_STREAM_SOCK = since((3, 11, 8), (3, 12, 2))
# create_connection(all_errors=) raises an ExceptionGroup of every attempt's
# error from 3.12 on; 3.11 has no such keyword.
_HAS_ALL_ERRORS = since((3, 12, 0))
# sendfile()/sock_sendfile() put the file at `offset` even when it is 0, and
# leave it at offset + sent even when nothing went, from 3.14.6 and 3.13.14
# on (CPython gh-150107); before, offset 0 meant "from where the file is" for
# the plain-send fallback, and the position moved only after a send.
_SENDFILE_ALWAYS_SEEKS = since((3, 13, 14), (3, 14, 6))
# sock_sendfile() takes a count too big for one sendfile(2) call (more than a
# C ssize_t) from 3.13 on (CPython gh-107056), sending up to the file's end;
# before, os.sendfile() raised OverflowError on it.
_SENDFILE_ANY_COUNT = since((3, 13, 0))
# From 3.15 on (CPython gh-140947), a stream transport runs all its events in
# one context: a copy of the server's (taken when the server was made) for
# each accepted connection, a copy of the caller's for create_connection()
# and friends.  Before, each reader and writer copied the one current when
# it was set up.  3.15 also closes the socket when no transport could be
# made of it (gh-153133).
_TRANSPORT_HAS_CONTEXT = sys.version_info >= (3, 15)
_ACCEPT_RETRY_DELAY = 1  # seconds, as asyncio.constants.ACCEPT_RETRY_DELAY
_SENDFILE_FALLBACK_BUFSIZE = 256 * 1024
_SSL_HANDSHAKE_TIMEOUT = 60.0


def _check_ssl_socket(sock) -> None:
    if _ssl is not None and isinstance(sock, _ssl.SSLSocket):
        raise TypeError("Socket cannot be of type SSLSocket")


def _numeric_port(port):
    """port as an int (None and '' mean 0), or None for a service name."""
    if port is None or port == "" or port == b"":
        return 0
    try:
        return int(port)
    except (TypeError, ValueError):
        return None


def _ip_literal_family(host, family, *, strict=False):
    """The family an IP literal host parses as, or None (a name).

    With strict, a host no name can be raises as asyncio's own check for a
    literal does (UnicodeError for bytes that are not IDNA, TypeError for a
    non-string, ValueError for a NUL inside) instead of being left to
    getaddrinfo(), which gives gaierror for some of them."""
    if isinstance(host, bytes):
        try:
            host = host.decode("idna")
        except UnicodeError:
            if strict:
                raise
            return None
    if not (strict or isinstance(host, str)) or "%" in host:
        # Linux's inet_pton() takes no IPv6 zone index ('::1%lo'): resolve.
        return None
    if family == socket.AF_UNSPEC:
        families = (socket.AF_INET, socket.AF_INET6) if _HAS_IPV6 else (socket.AF_INET,)
    else:
        families = (family,)
    for af in families:
        try:
            socket.inet_pton(af, host)
        except OSError:
            continue
        except (TypeError, ValueError):
            if strict:
                raise
            continue
        return af
    return None


def _literal_addrinfo(host, port, family, type, proto, flowinfo=0, scopeid=0):
    """The address info of an IP-literal host, built without getaddrinfo()
    (so without the executor), or None when host needs resolving.  The port
    is kept as given: an out-of-range port fails in connect()/bind() with
    OverflowError, instead of being truncated to 16 bits by getaddrinfo()."""
    if host is None or proto not in (0, socket.IPPROTO_TCP, socket.IPPROTO_UDP):
        return None
    if type == socket.SOCK_STREAM:
        proto = socket.IPPROTO_TCP
    elif type == socket.SOCK_DGRAM:
        proto = socket.IPPROTO_UDP
    else:
        return None
    port = _numeric_port(port)
    af = _ip_literal_family(host, family, strict=True) if port is not None else None
    if af is None:
        return None
    if isinstance(host, bytes):
        host = host.decode("idna")
    if _HAS_IPV6 and af == socket.AF_INET6:
        return [(af, type, proto, "", (host, port, flowinfo, scopeid))]
    return [(af, type, proto, "", (host, port))]


def _local_getaddrinfo(host, port, family, type, proto, flags):
    """getaddrinfo() answered without DNS -- an IP-literal (or no) host and a
    numeric (or no) port -- or None when it needs the executor.

    The arguments go to socket.getaddrinfo() unchanged, only with
    AI_NUMERICHOST | AI_NUMERICSERV added, which make it fail instead of
    resolving a name: so an answer is exactly socket.getaddrinfo()'s, and any
    failure (a name, or no host and no port, EAI_NONAME) is left to the real
    call in the executor, which reports it as asyncio does.  The port is not
    normalised here as _literal_addrinfo() does: getaddrinfo() itself tells
    None from '' (None with no host is an error), takes ' 80' but not '8_0',
    and rejects float and bool ports, which int() would accept."""
    if port.__class__ is int:
        # Out of range, getaddrinfo() truncates to 16 bits or raises
        # OverflowError: let the real call do that.
        if not 0 <= port <= 65535:
            return None
    elif not (port is None or isinstance(port, (str, bytes))):
        # The real call raises OSError("Int or String expected").
        return None
    if host is not None and _ip_literal_family(host, family) is None:
        return None
    try:
        return socket.getaddrinfo(
            host, port, family, type, proto, flags | socket.AI_NUMERICHOST | socket.AI_NUMERICSERV
        )
    except socket.gaierror:
        return None


def _interleave_addrinfos(addrinfos, first_family_count: int = 1):
    """Reorder addresses so that families alternate (RFC 8305), starting
    with first_family_count of the first family."""
    by_family: dict[int, collections.deque] = {}
    for info in addrinfos:
        by_family.setdefault(info[0], collections.deque()).append(info)
    queues = list(by_family.values())
    result = []
    if first_family_count > 1 and queues:
        for _ in range(first_family_count - 1):
            if queues[0]:
                result.append(queues[0].popleft())
    while any(queues):
        for q in queues:
            if q:
                result.append(q.popleft())
    return result


def _remove_stale_unix_socket(path) -> bool:
    """Remove a socket file left by an earlier run at path (not an abstract
    address, and only if it is a socket), so that bind() can succeed.
    Returns whether there was one."""
    if path[0] in (0, "\x00"):
        return False
    try:
        if stat.S_ISSOCK(os.stat(path).st_mode):
            os.remove(path)
            return True
    except FileNotFoundError:
        pass
    except OSError as err:
        logger.error("Unable to check or remove stale UNIX socket %r: %r", path, err)
    return False


def _bind_unix(sock, path) -> None:
    """Bind sock to path, replacing a socket file already there as asyncio
    does.  That file is looked for only once bind() found the path taken, so
    a fresh path costs no stat()."""
    try:
        sock.bind(path)
        return
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        if not _remove_stale_unix_socket(path):
            raise OSError(errno.EADDRINUSE, f"Address {path!r} is already in use") from None
    sock.bind(path)


def _set_reuseport(sock) -> None:
    if not hasattr(socket, "SO_REUSEPORT"):
        raise ValueError("reuse_port not supported by socket module")
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    except OSError:
        raise ValueError(
            "reuse_port not supported by socket module, SO_REUSEPORT defined but not implemented."
        )


def _seek_to_start(file: Any, offset: int) -> None:
    """Where the plain-send fallbacks of sendfile() start reading."""
    if _SENDFILE_ALWAYS_SEEKS:
        if hasattr(file, "seek"):
            file.seek(offset)
    elif offset:
        file.seek(offset)


def _hand_over_buffered_bytes(protocol: Any, ssl_protocol: Any) -> None:
    """What the client sent before the server's start_tls() (its
    ClientHello, say) may already sit in the stream reader's buffer: it goes
    to the TLS layer instead of being lost, as stock asyncio does from
    3.14.3 (gh-142352; before, such a handshake hangs there)."""
    if not isinstance(protocol, streams.StreamReaderProtocol):
        return
    reader = getattr(protocol, "_stream_reader", None)
    if reader is not None and reader._buffer:
        ssl_protocol._incoming.write(reader._buffer)
        reader._buffer.clear()


class _SendfileFallbackProtocol:
    """Stands in for a transport's protocol while loop.sendfile() writes the
    file through transport.write(): it waits out write pauses and keeps the
    real protocol's reading paused."""

    def __init__(self, transport) -> None:
        self._transport = transport
        self._proto = transport.get_protocol()
        self._should_resume_reading = transport.is_reading()
        self._should_resume_writing = transport._protocol_paused
        transport.pause_reading()
        transport.set_protocol(self)
        loop = transport._loop
        self._write_ready_fut = None
        if self._should_resume_writing:
            self._write_ready_fut = loop.create_future()

    async def drain(self) -> None:
        if self._transport.is_closing():
            raise ConnectionError("Connection closed by peer")
        fut = self._write_ready_fut
        if fut is not None:
            await fut

    def connection_made(self, transport) -> None:
        raise RuntimeError("Invalid state: connection should have been established already.")

    def connection_lost(self, exc) -> None:
        fut = self._write_ready_fut
        if fut is not None and not fut.done():
            if exc is None:
                fut.set_exception(ConnectionError("Connection is closed by peer"))
            else:
                fut.set_exception(exc)
        self._proto.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._write_ready_fut is None:
            self._write_ready_fut = self._transport._loop.create_future()

    def resume_writing(self) -> None:
        fut = self._write_ready_fut
        self._write_ready_fut = None
        if fut is not None and not fut.done():
            fut.set_result(False)

    def data_received(self, data) -> None:
        raise RuntimeError("Invalid state: reading should be paused")

    def eof_received(self) -> None:
        raise RuntimeError("Invalid state: reading should be paused")

    async def restore(self) -> None:
        self._transport.set_protocol(self._proto)
        if self._should_resume_reading:
            self._transport.resume_reading()
        if self._write_ready_fut is not None:
            self._write_ready_fut.cancel()
        if self._should_resume_writing:
            self._proto.resume_writing()


class NetworkMixin:
    """The networking methods of casyncio.Loop."""

    # ---- sock_*() ----------------------------------------------------------

    async def sock_recv(self, sock, n):
        """Receive up to n bytes from a non-blocking socket."""
        return await self._sock_recv(sock, n)

    async def sock_recv_into(self, sock, buf):
        """Receive into buf; return the number of bytes received."""
        return await self._sock_recv_into(sock, buf)

    async def sock_recvfrom(self, sock, bufsize):
        """Receive a datagram: (data, address)."""
        return await self._sock_recvfrom(sock, bufsize)

    async def sock_recvfrom_into(self, sock, buf, nbytes=0):
        """Receive a datagram into buf: (nbytes, address)."""
        if not nbytes:
            nbytes = len(buf)
        return await self._sock_recvfrom_into(sock, buf, nbytes)

    async def sock_sendall(self, sock, data):
        """Send all of data, waiting as long as the socket would block."""
        return await self._sock_sendall(sock, data)

    async def sock_sendto(self, sock, data, address):
        """Send a datagram to address; return the number of bytes sent."""
        return await self._sock_sendto(sock, data, address)

    async def sock_connect(self, sock, address):
        """Connect a non-blocking socket, resolving a host name first."""
        _check_ssl_socket(sock)
        if self._debug and sock.gettimeout() != 0:
            raise ValueError("the socket must be non-blocking")
        family = sock.family  # a property that builds an enum: read once
        if family == socket.AF_INET or (_HAS_IPV6 and family == socket.AF_INET6):
            resolved = await self._ensure_resolved(
                address, family=family, type=sock.type, proto=sock.proto
            )
            address = resolved[0][4]
        return await self._sock_connect(sock, address)

    async def sock_accept(self, sock):
        """Accept a connection: (conn, address), conn non-blocking."""
        return await self._sock_accept(sock)

    async def sock_sendfile(self, sock, file, offset=0, count=None, *, fallback=True):
        """Send a file over a socket, with os.sendfile() where possible."""
        if self._debug and sock.gettimeout() != 0:
            raise ValueError("the socket must be non-blocking")
        _check_ssl_socket(sock)
        self._check_sendfile_params(sock, file, offset, count)
        try:
            return await self._sock_sendfile_native(sock, file, offset, count)
        except exceptions.SendfileNotAvailableError:
            if not fallback:
                raise
        return await self._sock_sendfile_fallback(sock, file, offset, count)

    def _check_sendfile_params(self, sock, file, offset, count) -> None:
        if "b" not in getattr(file, "mode", "b"):
            raise ValueError("file should be opened in binary mode")
        if not sock.type == socket.SOCK_STREAM:
            raise ValueError("only SOCK_STREAM type sockets are supported")
        if count is not None:
            if not isinstance(count, int):
                raise TypeError(f"count must be a positive integer (got {count!r})")
            if count <= 0:
                raise ValueError(f"count must be a positive integer (got {count!r})")
        if not isinstance(offset, int):
            raise TypeError(f"offset must be a non-negative integer (got {offset!r})")
        if offset < 0:
            raise ValueError(f"offset must be a non-negative integer (got {offset!r})")

    async def _sock_sendfile_native(self, sock, file, offset, count):
        try:
            fileno = file.fileno()
        except (AttributeError, io.UnsupportedOperation) as err:
            raise exceptions.SendfileNotAvailableError("not a regular file") from err
        try:
            fsize = os.fstat(fileno).st_size
        except OSError:
            raise exceptions.SendfileNotAvailableError("not a regular file")
        if not (count or fsize):
            return 0  # empty file
        fd = sock.fileno()
        if fd >= 0:
            # A closed socket's first sendfile(2) fails (EBADF), and its
            # fallback after it, as on stock asyncio.
            self._ensure_fd_no_transport(fd)
        if count and _SENDFILE_ANY_COUNT:
            count = min(count, sys.maxsize)  # a file's end comes first
        # sendfile(2) runs in C, again each time the socket is writable; the
        # op counts what went, which moves the file's position even when the
        # send fails or is cancelled.
        op = self._sock_sendfile(sock, fileno, offset, count or 0)
        try:
            return await op.future
        except OSError as exc:
            if op.sent == 0:
                # Nothing sent: the file may be one sendfile(2) cannot read,
                # or the socket is broken; either way the plain-send fallback
                # tells (and raises) best.
                raise exceptions.SendfileNotAvailableError("os.sendfile call failed") from exc
            if exc.errno == errno.ENOTCONN and type(exc) is not ConnectionError:
                # The peer went away mid-transfer: one exception type across
                # platforms, as asyncio.
                raise ConnectionError("socket is not connected", errno.ENOTCONN) from exc
            raise
        finally:
            if op.sent > 0 or _SENDFILE_ALWAYS_SEEKS:
                file.seek(offset + op.sent)

    async def _sock_sendfile_fallback(self, sock, file, offset, count):
        _seek_to_start(file, offset)
        blocksize = min(count, _SENDFILE_FALLBACK_BUFSIZE) if count else _SENDFILE_FALLBACK_BUFSIZE
        buf = bytearray(blocksize)
        total = 0
        try:
            while True:
                if count:
                    blocksize = min(count - total, blocksize)
                    if blocksize <= 0:
                        break
                view = memoryview(buf)[:blocksize]
                read = await self.run_in_executor(None, file.readinto, view)
                if not read:
                    break
                await self.sock_sendall(sock, view[:read])
                total += read
            return total
        finally:
            if total > 0 and hasattr(file, "seek"):
                file.seek(offset + total)

    # ---- address resolution ------------------------------------------------

    async def getaddrinfo(self, host, port, *, family=0, type=0, proto=0, flags=0):
        """socket.getaddrinfo() in the default executor; numeric hosts and
        ports are answered at once, without a thread."""
        self._check_closed()
        infos = _local_getaddrinfo(host, port, family, type, proto, flags)
        if infos is not None:
            return infos
        return await self.run_in_executor(
            None, socket.getaddrinfo, host, port, family, type, proto, flags
        )

    async def getnameinfo(self, sockaddr, flags=0):
        """socket.getnameinfo() in the default executor."""
        return await self.run_in_executor(None, socket.getnameinfo, sockaddr, flags)

    async def _ensure_resolved(
        self, address, *, family=0, type=socket.SOCK_STREAM, proto=0, flags=0
    ):
        host, port = address[:2]
        infos = _literal_addrinfo(host, port, family, type, proto, *address[2:])
        if infos is not None:
            return infos
        return await self.getaddrinfo(
            host, port, family=family, type=type, proto=proto, flags=flags
        )

    # ---- connections ---------------------------------------------------------

    async def _connect_sock(self, exceptions_, addr_info, local_addr_infos=None):
        mine: list[OSError] = []
        exceptions_.append(mine)
        family, type_, proto, _, address = addr_info
        sock = None
        try:
            # Made non-blocking by socket(2) itself: no ioctl() after it.
            sock = socket.socket(family=family, type=type_ | socket.SOCK_NONBLOCK, proto=proto)
            if local_addr_infos is not None:
                for lfamily, _, _, _, laddr in local_addr_infos:
                    if lfamily != family:
                        continue
                    try:
                        sock.bind(laddr)
                        break
                    except OSError as exc:
                        msg = (
                            f"error while attempting to bind on address {laddr!r}: "
                            f"{exc.strerror.lower()}"
                        )
                        mine.append(OSError(exc.errno, msg))
                else:
                    if mine:
                        raise mine.pop()
                    raise OSError(f"no matching local address with family={family} found")
            # The address is getaddrinfo()'s already: sock_connect() would
            # only resolve it again.  One replaced on the instance or in a
            # subclass is called, as asyncio calls it.
            connect = self.sock_connect
            if getattr(connect, "__func__", None) is NetworkMixin.sock_connect:
                await self._sock_connect(sock, address)
            else:
                await connect(sock, address)
            return sock
        except OSError as exc:
            mine.append(exc)
            if sock is not None:
                sock.close()
            raise
        except BaseException:
            if sock is not None:
                sock.close()
            raise
        finally:
            # The raised exception's traceback keeps this frame: let go of
            # the lists that hold the exception itself.
            exceptions_ = mine = None  # type: ignore[assignment]

    async def create_connection(
        self,
        protocol_factory,
        host=None,
        port=None,
        *,
        ssl=None,
        family=0,
        proto=0,
        flags=0,
        sock=None,
        local_addr=None,
        server_hostname=None,
        ssl_handshake_timeout=None,
        ssl_shutdown_timeout=None,
        happy_eyeballs_delay=None,
        interleave=None,
        all_errors=False,
    ):
        """Open a stream connection to host:port (or over sock) and return
        (transport, protocol)."""
        if server_hostname is not None and not ssl:
            raise ValueError("server_hostname is only meaningful with ssl")
        if server_hostname is None and ssl:
            if not host:
                raise ValueError("You must set server_hostname when using ssl without a host")
            server_hostname = host
        if ssl_handshake_timeout is not None and not ssl:
            raise ValueError("ssl_handshake_timeout is only meaningful with ssl")
        if ssl_shutdown_timeout is not None and not ssl:
            raise ValueError("ssl_shutdown_timeout is only meaningful with ssl")
        if sock is not None:
            _check_ssl_socket(sock)
        if happy_eyeballs_delay is not None and interleave is None:
            interleave = 1  # RFC 8305 recommends interleaving with happy eyeballs

        made_here = host is not None or port is not None
        if made_here:
            if sock is not None:
                raise ValueError("host/port and sock can not be specified at the same time")
            infos = await self._ensure_resolved(
                (host, port), family=family, type=socket.SOCK_STREAM, proto=proto, flags=flags
            )
            if not infos:
                raise OSError("getaddrinfo() returned empty list")
            laddr_infos = None
            if local_addr is not None:
                laddr_infos = await self._ensure_resolved(
                    local_addr, family=family, type=socket.SOCK_STREAM, proto=proto, flags=flags
                )
                if not laddr_infos:
                    raise OSError("getaddrinfo() returned empty list")
            if interleave:
                infos = _interleave_addrinfos(infos, interleave)
            errors: list[list[OSError]] = []
            if happy_eyeballs_delay is None:
                for info in infos:
                    try:
                        sock = await self._connect_sock(errors, info, laddr_infos)
                        break
                    except OSError:
                        continue
            else:
                # The attempts reach `errors` through this frame, whose copy is
                # dropped below; and only the winner is kept of the race's
                # result, whose other items list the attempts' exceptions.  A
                # raised error must not stay referenced from a list that
                # outlives the call (asyncio's happy-eyeballs refcycle test).
                attempts = (
                    lambda info=info: self._connect_sock(errors, info, laddr_infos)
                    for info in infos
                )
                sock = (await staggered.staggered_race(attempts, happy_eyeballs_delay, loop=self))[
                    0
                ]
            if sock is None:
                flat = [exc for sub in errors for exc in sub]
                try:
                    if all_errors:
                        raise ExceptionGroup("create_connection failed", flat)
                    if len(flat) == 1:
                        raise flat[0]
                    model = str(flat[0])
                    if all(str(exc) == model for exc in flat):
                        raise flat[0]
                    raise OSError(
                        "Multiple exceptions: {}".format(", ".join(str(exc) for exc in flat))
                    )
                finally:
                    flat = errors = None  # type: ignore[assignment]
        else:
            if sock is None:
                raise ValueError("host and port was not specified and no sock specified")
            if sock.type != socket.SOCK_STREAM:
                raise ValueError(f"A Stream Socket was expected, got {sock!r}")

        transport, protocol = await self._create_connection_transport(
            sock,
            protocol_factory,
            ssl,
            server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout,
            made_here=made_here,
        )
        if self._debug:
            logger.debug(
                "%r connected to %s:%r: (%r, %r)",
                transport.get_extra_info("socket"),
                host,
                port,
                transport,
                protocol,
            )
        return transport, protocol

    if not _HAS_ALL_ERRORS:
        # all_errors= is there from 3.12 on: on 3.11 create_connection() has
        # 3.11's signature, which refuses it at the call (open_connection()
        # passes its keywords on), as any unknown keyword is refused.
        _create_connection_impl = create_connection

        async def create_connection(
            self,
            protocol_factory,
            host=None,
            port=None,
            *,
            ssl=None,
            family=0,
            proto=0,
            flags=0,
            sock=None,
            local_addr=None,
            server_hostname=None,
            ssl_handshake_timeout=None,
            ssl_shutdown_timeout=None,
            happy_eyeballs_delay=None,
            interleave=None,
        ):
            return await self._create_connection_impl(
                protocol_factory,
                host,
                port,
                ssl=ssl,
                family=family,
                proto=proto,
                flags=flags,
                sock=sock,
                local_addr=local_addr,
                server_hostname=server_hostname,
                ssl_handshake_timeout=ssl_handshake_timeout,
                ssl_shutdown_timeout=ssl_shutdown_timeout,
                happy_eyeballs_delay=happy_eyeballs_delay,
                interleave=interleave,
            )

        create_connection.__doc__ = _create_connection_impl.__doc__

    async def _create_connection_transport(
        self,
        sock,
        protocol_factory,
        ssl,
        server_hostname,
        server_side=False,
        ssl_handshake_timeout=None,
        ssl_shutdown_timeout=None,
        context=None,
        made_here=False,
    ):
        try:
            if not made_here:  # _connect_sock() makes its sockets non-blocking
                sock.setblocking(False)
            if context is None and _TRANSPORT_HAS_CONTEXT:
                context = contextvars.copy_context()
            protocol = protocol_factory()
            waiter = self.create_future()
            if ssl:
                sslcontext = None if isinstance(ssl, bool) else ssl
                transport = self._make_ssl_transport(
                    sock,
                    protocol,
                    sslcontext,
                    waiter,
                    server_side=server_side,
                    server_hostname=server_hostname,
                    ssl_handshake_timeout=ssl_handshake_timeout,
                    ssl_shutdown_timeout=ssl_shutdown_timeout,
                    context=context,
                )
            else:
                transport = self._make_socket_transport(sock, protocol, waiter, context=context)
        except BaseException:
            if _TRANSPORT_HAS_CONTEXT:
                sock.close()
            raise
        try:
            await waiter
        except BaseException:
            transport.close()
            raise
        return transport, protocol

    def _make_ssl_transport(
        self,
        rawsock,
        protocol,
        sslcontext,
        waiter=None,
        *,
        server_side=False,
        server_hostname=None,
        extra=None,
        server=None,
        ssl_handshake_timeout=None,
        ssl_shutdown_timeout=None,
        context=None,
    ):
        # TLS is asyncio's own SSLProtocol (a BufferedProtocol, with a
        # quicker read loop: casyncio/_tls.py) over our C transport.
        from casyncio._tls import TLSProtocol

        ssl_protocol = TLSProtocol(
            self,
            protocol,
            sslcontext,
            waiter,
            server_side,
            server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout,
        )
        self._make_socket_transport(
            rawsock, ssl_protocol, extra=extra, server=server, context=context
        )
        return ssl_protocol._app_transport

    async def start_tls(
        self,
        transport,
        protocol,
        sslcontext,
        *,
        server_side=False,
        server_hostname=None,
        ssl_handshake_timeout=None,
        ssl_shutdown_timeout=None,
    ):
        """Upgrade a connection to TLS; return the new (TLS) transport."""
        from casyncio._tls import TLSProtocol

        if _ssl is None:
            raise RuntimeError("Python ssl module is not available")
        if not isinstance(sslcontext, _ssl.SSLContext):
            raise TypeError(
                f"sslcontext is expected to be an instance of ssl.SSLContext, got {sslcontext!r}"
            )
        if not getattr(transport, "_start_tls_compatible", False):
            raise TypeError(f"transport {transport!r} is not supported by start_tls()")
        waiter = self.create_future()
        ssl_protocol = TLSProtocol(
            self,
            protocol,
            sslcontext,
            waiter,
            server_side,
            server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout,
            call_connection_made=False,
        )
        # Pause first, so that no data reaches the TLS protocol before its
        # connection_made().
        transport.pause_reading()
        if server_side:
            _hand_over_buffered_bytes(protocol, ssl_protocol)
        transport.set_protocol(ssl_protocol)
        made = self.call_soon(ssl_protocol.connection_made, transport)
        resumed = self.call_soon(transport.resume_reading)
        try:
            await waiter
        except BaseException:
            transport.close()
            made.cancel()
            resumed.cancel()
            raise
        return ssl_protocol._app_transport

    async def connect_accepted_socket(
        self,
        protocol_factory,
        sock,
        *,
        ssl=None,
        ssl_handshake_timeout=None,
        ssl_shutdown_timeout=None,
    ):
        """Wrap a connection accepted elsewhere in a transport/protocol."""
        if sock.type != socket.SOCK_STREAM:
            raise ValueError(f"A Stream Socket was expected, got {sock!r}")
        if ssl_handshake_timeout is not None and not ssl:
            raise ValueError("ssl_handshake_timeout is only meaningful with ssl")
        if ssl_shutdown_timeout is not None and not ssl:
            raise ValueError("ssl_shutdown_timeout is only meaningful with ssl")
        _check_ssl_socket(sock)
        transport, protocol = await self._create_connection_transport(
            sock,
            protocol_factory,
            ssl,
            "",
            server_side=True,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout,
        )
        if self._debug:
            logger.debug("%r handled: (%r, %r)", sock, transport, protocol)
        return transport, protocol

    async def create_unix_connection(
        self,
        protocol_factory,
        path=None,
        *,
        ssl=None,
        sock=None,
        server_hostname=None,
        ssl_handshake_timeout=None,
        ssl_shutdown_timeout=None,
    ):
        """Open a Unix-socket stream connection to path (or over sock)."""
        # Stock asyncio checks the type with an assert: the same exception,
        # and none under python -O.
        assert server_hostname is None or isinstance(server_hostname, str)
        if ssl:
            if server_hostname is None:
                raise ValueError("you have to pass server_hostname when using ssl")
        else:
            if server_hostname is not None:
                raise ValueError("server_hostname is only meaningful with ssl")
            if ssl_handshake_timeout is not None:
                raise ValueError("ssl_handshake_timeout is only meaningful with ssl")
            if ssl_shutdown_timeout is not None:
                raise ValueError("ssl_shutdown_timeout is only meaningful with ssl")
        if path is not None:
            if sock is not None:
                raise ValueError("path and sock can not be specified at the same time")
            path = os.fspath(path)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, 0)
            try:
                sock.setblocking(False)
                await self.sock_connect(sock, path)
            except BaseException:
                sock.close()
                raise
        else:
            if sock is None:
                raise ValueError("no path and sock were specified")
            if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
                raise ValueError(f"A UNIX Domain Stream Socket was expected, got {sock!r}")
            sock.setblocking(False)
        return await self._create_connection_transport(
            sock,
            protocol_factory,
            ssl,
            server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout,
        )

    # ---- servers -------------------------------------------------------------

    async def create_server(
        self,
        protocol_factory,
        host=None,
        port=None,
        *,
        family=socket.AF_UNSPEC,
        flags=socket.AI_PASSIVE,
        sock=None,
        backlog=100,
        ssl=None,
        reuse_address=None,
        reuse_port=None,
        ssl_handshake_timeout=None,
        ssl_shutdown_timeout=None,
        start_serving=True,
    ):
        """Listen on host:port (every address it resolves to; several hosts
        may be given) or on sock, and return an asyncio.Server."""
        if isinstance(ssl, bool):
            raise TypeError("ssl argument must be an SSLContext or None")
        if ssl_handshake_timeout is not None and ssl is None:
            raise ValueError("ssl_handshake_timeout is only meaningful with ssl")
        if ssl_shutdown_timeout is not None and ssl is None:
            raise ValueError("ssl_shutdown_timeout is only meaningful with ssl")
        if sock is not None:
            _check_ssl_socket(sock)
        if host is not None or port is not None:
            if sock is not None:
                raise ValueError("host/port and sock can not be specified at the same time")
            if reuse_address is None:
                reuse_address = os.name == "posix" and sys.platform != "cygwin"
            if host == "":
                hosts = [None]
            elif isinstance(host, str) or not isinstance(host, collections.abc.Iterable):
                hosts = [host]
            else:
                hosts = host
            resolved = await tasks.gather(
                *[self._create_server_getaddrinfo(h, port, family, flags) for h in hosts]
            )
            infos = set(itertools.chain.from_iterable(resolved))
            sockets = []
            completed = False
            try:
                for af, socktype, proto, _canonname, sa in infos:
                    try:
                        sock = socket.socket(af, socktype, proto)
                    except OSError:
                        # A family/type/protocol combination this host lacks.
                        if self._debug:
                            logger.warning(
                                "create_server() failed to create socket.socket(%r, %r, %r)",
                                af,
                                socktype,
                                proto,
                                exc_info=True,
                            )
                        continue
                    sockets.append(sock)
                    if reuse_address:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, True)
                    if reuse_port:
                        _set_reuseport(sock)
                    if _HAS_IPV6 and af == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
                        # One socket per family: no dual-stack IPv6 socket.
                        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, True)
                    try:
                        sock.bind(sa)
                    except OSError as err:
                        raise OSError(
                            err.errno,
                            f"error while attempting to bind on address {sa!r}: "
                            f"{err.strerror.lower()}",
                        ) from None
                completed = True
            finally:
                if not completed:
                    for s in sockets:
                        s.close()
        else:
            if sock is None:
                raise ValueError("Neither host/port nor sock were specified")
            if sock.type != socket.SOCK_STREAM:
                raise ValueError(f"A Stream Socket was expected, got {sock!r}")
            sockets = [sock]
        server = await self._serve(
            sockets,
            protocol_factory,
            ssl,
            backlog,
            ssl_handshake_timeout,
            ssl_shutdown_timeout,
            start_serving,
        )
        if self._debug:
            logger.info("%r is serving", server)
        return server

    async def _serve(
        self,
        sockets,
        protocol_factory,
        ssl,
        backlog,
        ssl_handshake_timeout,
        ssl_shutdown_timeout,
        start_serving,
    ):
        """An asyncio.Server over bound sockets, listening unless told not to."""
        for s in sockets:
            s.setblocking(False)
        server = Server(
            self,
            sockets,
            protocol_factory,
            ssl,
            backlog,
            ssl_handshake_timeout,
            ssl_shutdown_timeout,
        )
        if start_serving:
            server._start_serving()
            # One iteration, so that the listening sockets are watched.
            await tasks.sleep(0)
        return server

    async def _create_server_getaddrinfo(self, host, port, family, flags):
        infos = await self._ensure_resolved(
            (host, port), family=family, type=socket.SOCK_STREAM, flags=flags
        )
        if not infos:
            raise OSError(f"getaddrinfo({host!r}) returned empty list")
        return infos

    async def create_unix_server(
        self,
        protocol_factory,
        path=None,
        *,
        sock=None,
        backlog=100,
        ssl=None,
        ssl_handshake_timeout=None,
        ssl_shutdown_timeout=None,
        start_serving=True,
    ):
        """Listen on a Unix socket at path (or on sock)."""
        if isinstance(ssl, bool):
            raise TypeError("ssl argument must be an SSLContext or None")
        if ssl_handshake_timeout is not None and not ssl:
            raise ValueError("ssl_handshake_timeout is only meaningful with ssl")
        if ssl_shutdown_timeout is not None and not ssl:
            raise ValueError("ssl_shutdown_timeout is only meaningful with ssl")
        if path is not None:
            if sock is not None:
                raise ValueError("path and sock can not be specified at the same time")
            path = os.fspath(path)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                _bind_unix(sock, path)
            except BaseException:
                sock.close()
                raise
        else:
            if sock is None:
                raise ValueError("path was not specified, and no sock specified")
            if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
                raise ValueError(f"A UNIX Domain Stream Socket was expected, got {sock!r}")
        return await self._serve(
            [sock],
            protocol_factory,
            ssl,
            backlog,
            ssl_handshake_timeout,
            ssl_shutdown_timeout,
            start_serving,
        )

    def _start_serving(
        self,
        protocol_factory,
        sock,
        sslcontext=None,
        server=None,
        backlog=100,
        ssl_handshake_timeout=_SSL_HANDSHAKE_TIMEOUT,
        ssl_shutdown_timeout=None,
        context=None,
    ):
        # asyncio.Server calls this for each listening socket (from 3.15 with
        # the context it was made in).
        self.add_reader(
            sock.fileno(),
            self._accept_connection,
            protocol_factory,
            sock,
            sslcontext,
            server,
            backlog,
            ssl_handshake_timeout,
            ssl_shutdown_timeout,
            context,
        )

    def _stop_serving(self, sock) -> None:
        self.remove_reader(sock.fileno())
        sock.close()

    def _accept_connection(
        self,
        protocol_factory,
        sock,
        sslcontext=None,
        server=None,
        backlog=100,
        ssl_handshake_timeout=_SSL_HANDSHAKE_TIMEOUT,
        ssl_shutdown_timeout=None,
        context=None,
    ) -> None:
        # Several connections may be waiting: accept up to a backlog's worth
        # per readiness event.  A plain socket's connections are made
        # non-blocking by accept4() itself; any other listener's accept()
        # method is called, as asyncio does.
        plain = type(sock) is socket.socket
        for _ in range(backlog):
            try:
                if plain:
                    conn, addr = self._accept_plain(sock)
                else:
                    conn, addr = sock.accept()
                if self._debug:
                    logger.debug("%r got a new connection from %r: %r", server, addr, conn)
                if not plain:
                    conn.setblocking(False)
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    # Out of descriptors: the listening fd stays readable, so
                    # stop watching it for a while instead of spinning.
                    self.call_exception_handler(
                        {
                            "message": "socket.accept() out of system resource",
                            "exception": exc,
                            "socket": trsock.TransportSocket(sock),
                        }
                    )
                    self.remove_reader(sock.fileno())
                    self.call_later(
                        _ACCEPT_RETRY_DELAY,
                        self._start_serving,
                        protocol_factory,
                        sock,
                        sslcontext,
                        server,
                        backlog,
                        ssl_handshake_timeout,
                        ssl_shutdown_timeout,
                        context,
                    )
                    return
                raise  # the loop reports it and goes on
            else:
                # Each connection gets its own copy of the server's context.
                conn_context = None if context is None else context.copy()
                self.create_task(
                    self._accept_connection2(
                        protocol_factory,
                        conn,
                        {"peername": addr},
                        sslcontext,
                        server,
                        ssl_handshake_timeout,
                        ssl_shutdown_timeout,
                        context=conn_context,
                    ),
                    context=conn_context,
                )

    async def _accept_connection2(
        self,
        protocol_factory,
        conn,
        extra,
        sslcontext=None,
        server=None,
        ssl_handshake_timeout=_SSL_HANDSHAKE_TIMEOUT,
        ssl_shutdown_timeout=None,
        context=None,
    ) -> None:
        protocol = transport = None
        try:
            protocol = protocol_factory()
            waiter = self.create_future()
            if sslcontext:
                transport = self._make_ssl_transport(
                    conn,
                    protocol,
                    sslcontext,
                    waiter=waiter,
                    server_side=True,
                    extra=extra,
                    server=server,
                    ssl_handshake_timeout=ssl_handshake_timeout,
                    ssl_shutdown_timeout=ssl_shutdown_timeout,
                    context=context,
                )
            else:
                transport = self._make_socket_transport(
                    conn, protocol, waiter=waiter, extra=extra, server=server, context=context
                )
            try:
                await waiter
            except BaseException:
                transport.close()
                raise
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            if transport is None:
                conn.close()
            if self._debug:
                context: dict[str, Any] = {
                    "message": "Error on transport creation for incoming connection",
                    "exception": exc,
                }
                if protocol is not None:
                    context["protocol"] = protocol
                if transport is not None:
                    context["transport"] = transport
                self.call_exception_handler(context)

    # ---- datagrams -----------------------------------------------------------

    async def create_datagram_endpoint(
        self,
        protocol_factory,
        local_addr=None,
        remote_addr=None,
        *,
        family=0,
        proto=0,
        flags=0,
        reuse_port=None,
        allow_broadcast=None,
        sock=None,
    ):
        """Create a datagram endpoint: (transport, protocol)."""
        r_addr = None
        if sock is not None:
            if _ANY_NON_STREAM_SOCK:
                if sock.type == socket.SOCK_STREAM:
                    raise ValueError(f"A datagram socket was expected, got {sock!r}")
            elif sock.type != socket.SOCK_DGRAM:
                raise ValueError(f"A UDP Socket was expected, got {sock!r}")
            if (
                local_addr
                or remote_addr
                or family
                or proto
                or flags
                or reuse_port
                or allow_broadcast
            ):
                opts = {
                    "local_addr": local_addr,
                    "remote_addr": remote_addr,
                    "family": family,
                    "proto": proto,
                    "flags": flags,
                    "reuse_port": reuse_port,
                    "allow_broadcast": allow_broadcast,
                }
                problems = ", ".join(f"{k}={v}" for k, v in opts.items() if v)
                raise ValueError(
                    f"socket modifier keyword arguments can not be used when sock is "
                    f"specified. ({problems})"
                )
            sock.setblocking(False)
        else:
            if not (local_addr or remote_addr):
                if family == 0:
                    raise ValueError("unexpected address family")
                addr_pairs = [((family, proto), (None, None))]
            elif hasattr(socket, "AF_UNIX") and family == socket.AF_UNIX:
                for addr in (local_addr, remote_addr):
                    if addr is not None and not isinstance(addr, str):
                        raise TypeError("string is expected")
                if local_addr:
                    _remove_stale_unix_socket(local_addr)
                addr_pairs = [((family, proto), (local_addr, remote_addr))]
            else:
                by_key: dict[tuple[int, int], list] = {}
                for idx, addr in ((0, local_addr), (1, remote_addr)):
                    if addr is None:
                        continue
                    if not (isinstance(addr, tuple) and len(addr) == 2):
                        raise TypeError("2-tuple is expected")
                    infos = await self._ensure_resolved(
                        addr, family=family, type=socket.SOCK_DGRAM, proto=proto, flags=flags
                    )
                    if not infos:
                        raise OSError("getaddrinfo() returned empty list")
                    for fam, _, pro, _, address in infos:
                        by_key.setdefault((fam, pro), [None, None])[idx] = address
                addr_pairs = [
                    (key, pair)
                    for key, pair in by_key.items()
                    if not ((local_addr and pair[0] is None) or (remote_addr and pair[1] is None))
                ]
                if not addr_pairs:
                    raise ValueError("can not get address information")
            errors = []
            for (fam, pro), (local_address, remote_address) in addr_pairs:
                sock = None
                r_addr = None
                try:
                    sock = socket.socket(family=fam, type=socket.SOCK_DGRAM, proto=pro)
                    if reuse_port:
                        _set_reuseport(sock)
                    if allow_broadcast:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
                    sock.setblocking(False)
                    if local_addr:
                        sock.bind(local_address)
                    if remote_addr:
                        if not allow_broadcast:
                            await self.sock_connect(sock, remote_address)
                        r_addr = remote_address
                except OSError as exc:
                    if sock is not None:
                        sock.close()
                    errors.append(exc)
                except BaseException:
                    if sock is not None:
                        sock.close()
                    raise
                else:
                    break
            else:
                raise errors[0]

        protocol = protocol_factory()
        waiter = self.create_future()
        transport = self._make_datagram_transport(sock, protocol, r_addr, waiter)
        if self._debug:
            logger.debug(
                "Datagram endpoint local_addr=%r remote_addr=%r created: (%r, %r)",
                local_addr,
                remote_addr,
                transport,
                protocol,
            )
        try:
            await waiter
        except BaseException:
            transport.close()
            raise
        return transport, protocol

    # ---- sendfile on transports ----------------------------------------------

    async def sendfile(self, transport, file, offset=0, count=None, *, fallback=True):
        """Send a file over a transport: os.sendfile() on its socket when
        possible, else read-and-write with the transport's flow control."""
        from asyncio import constants

        if transport.is_closing():
            raise RuntimeError("Transport is closing")
        mode = getattr(transport, "_sendfile_compatible", constants._SendfileMode.UNSUPPORTED)
        if mode is constants._SendfileMode.UNSUPPORTED:
            raise RuntimeError(f"sendfile is not supported for transport {transport!r}")
        if mode is constants._SendfileMode.TRY_NATIVE:
            try:
                return await self._sendfile_native(transport, file, offset, count)
            except exceptions.SendfileNotAvailableError:
                if not fallback:
                    raise
        if not fallback:
            raise RuntimeError(
                f"fallback is disabled and native sendfile is not supported for transport "
                f"{transport!r}"
            )
        return await self._sendfile_fallback(transport, file, offset, count)

    async def _sendfile_native(self, transport, file, offset, count):
        fd = transport._sock_fd
        owner = self._transport_fd_release(fd)
        resume_reading = transport.is_reading()
        transport.pause_reading()
        try:
            await transport._make_empty_waiter()
            return await self.sock_sendfile(transport._sock, file, offset, count, fallback=False)
        finally:
            transport._reset_empty_waiter()
            if resume_reading:
                transport.resume_reading()
            self._transport_fd_restore(fd, owner)

    async def _sendfile_fallback(self, transport, file, offset, count):
        _seek_to_start(file, offset)
        blocksize = min(count, 16384) if count else 16384
        buf = bytearray(blocksize)
        total = 0
        proto = _SendfileFallbackProtocol(transport)
        try:
            while True:
                if count:
                    blocksize = min(count - total, blocksize)
                    if blocksize <= 0:
                        return total
                view = memoryview(buf)[:blocksize]
                read = await self.run_in_executor(None, file.readinto, view)
                if not read:
                    return total
                await proto.drain()
                transport.write(view[:read])
                total += read
        finally:
            if total > 0 and hasattr(file, "seek"):
                file.seek(offset + total)
            await proto.restore()
