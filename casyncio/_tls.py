"""The TLS protocol casyncio puts over its transports.

It is asyncio's own ``SSLProtocol`` (the running Python's
``asyncio.sslproto``) with these changes.

- The methods every record passes through while the connection is up are
  in C (``csrc/tls.c``), first among the bases: reading a record
  (``get_buffer``, ``buffer_updated``, ``_do_read``, ``_do_read__copied``,
  ``_do_read__buffered``) and writing one (the app transport's ``write``, ``_write_appdata``,
  ``_do_write``, ``_process_outgoing``), with the flow-control checks that
  end both.  They do what asyncio's methods do and hand the rare cases
  back to them (a state other than WRAPPED, a flow-control mark crossed);
  the handshake, the shutdown and the rest are asyncio's Python.  The
  protocol's fields stay in the instance, where asyncio's methods find
  them.
- The connections of a loop share one read buffer.  asyncio gives each its
  own, zero-filled, of ``max_size`` (256 KiB) bytes: the transport receives
  into it, and ``buffer_updated()`` copies what came into the incoming BIO
  at once, before anything else can run.  Those 256 KiB were most of an
  idle TLS connection's memory (the benchmarks' mem_idle_tls_connection).

Two more are in the loops that take decrypted bytes out of the
``SSLObject`` (``_do_read__copied`` and ``_do_read__buffered``, both C):

- they stop when nothing is left to decrypt, instead of reading until
  ``read()`` raises ``SSLWantReadError``: building and catching that
  exception ended every read, and cost about a tenth of a 1 KiB TLS echo's
  time.  Nothing is left when the incoming BIO is empty and the
  ``SSLObject`` holds no decrypted bytes (``pending()``): a read then could
  only raise.  A record that has only partly arrived still ends the loop
  with the exception, as before.
- For a ``BufferedProtocol`` application, each read goes into a byte
  ``memoryview`` of its buffer.  When a record does not fill the buffer,
  stock asyncio reads the next one into ``buf[offset:]``, which for a
  ``bytearray`` is a copy: those bytes are lost, and the application is
  told they arrived (CPython gh-156275, open in every release up to 3.15).
  (An ``array`` of wider items is filled byte by byte, as the socket
  transport fills it.)

Everything else, including what the application's protocol is given and
when, is the running Python's ``SSLProtocol``.
"""

from asyncio import sslproto

from . import _casyncio

_casyncio._tls_setup(sslproto.SSLProtocol, sslproto.SSLProtocolState, sslproto.SSLAgainErrors)


def _shared_read_buffer(loop) -> memoryview:
    view = getattr(loop, "_tls_read_buffer", None)
    if view is None:
        view = memoryview(bytearray(sslproto.SSLProtocol.max_size))
        loop._tls_read_buffer = view
    return view


class _SSLProtocolTransport(_casyncio.TLSAppTransportBase, sslproto._SSLProtocolTransport):
    """asyncio's app transport, with write() in C.  It keeps asyncio's class
    name, which code and tests look at ('ssl' in it)."""


class TLSProtocol(_casyncio.TLSProtocolBase, sslproto.SSLProtocol):
    def __init__(self, loop, *args, **kwargs):
        # asyncio's __init__ makes the buffer bytearray(self.max_size): have
        # it make an empty one, then take the loop's.
        self.max_size = 0
        try:
            super().__init__(loop, *args, **kwargs)
        finally:
            del self.max_size
        self._ssl_buffer_view = _shared_read_buffer(loop)
        self._ssl_buffer = self._ssl_buffer_view.obj

    def _get_app_transport(self):
        if self._app_transport is None and not self._app_transport_created:
            self._app_transport = _SSLProtocolTransport(self._loop, self)
            self._app_transport_created = True
        return super()._get_app_transport()
