/* transport_dgram.c: the datagram (UDP, Unix datagram) transport, as
 * asyncio's _SelectorDatagramTransport.
 *
 * sendto() tries to send at once and queues (a copy of) the datagram only
 * when the socket would block; the queue drains when the fd is writable.
 * Datagrams are received with recvfrom(2) into the loop's read buffer, and
 * the sender's address is built here for IPv4, IPv6 and Unix sockets, in
 * the form the socket module gives; other families go through the socket
 * object's own recvfrom().  Sending to an address makes the system call
 * here too when the address needs no conversion -- a reply to the last
 * sender (the very object datagram_received() was given), or a numeric
 * IPv4 (host, port) -- and goes through the socket's sendto() otherwise,
 * which knows every form (and resolves names); the sends made here raise no
 * "socket.sendto" audit event, as uvloop's do not.  OSErrors of single
 * datagrams go to protocol.error_received(), as in asyncio; they do not
 * end the transport.  A socket whose class overrides recvfrom(), sendto()
 * or send() has them called for every datagram (cio_socket_overrides()).
 *
 * Two things follow the running Python's asyncio: from 3.13 on, an empty
 * datagram is sent (before, sendto(b"") did nothing), and each queued
 * datagram counts 8 bytes of UDP header in get_write_buffer_size() besides
 * its data, so that queued empty datagrams count for flow control too. */
#include "transport.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#if PY_VERSION_HEX >= 0x030D0000
#define SENDS_EMPTY_DATAGRAMS 1
#define HEADER_SIZE           8
#else
#define SENDS_EMPTY_DATAGRAMS 0
#define HEADER_SIZE           0
#endif

typedef struct {
    PyObject *data; /* bytes */
    PyObject *addr; /* or NULL for a connected socket */
} dgram;

typedef struct {
    TransportObj base;
    PyObject *address; /* the connected peer, or NULL */
    dgram *q;
    Py_ssize_t q_head, q_len, q_cap;
    Py_ssize_t qsize; /* bytes queued, HEADER_SIZE included */
    /* The last sender: the address datagram_received() was given and the
     * sockaddr it came from.  A datagram from the same sender gets the same
     * object, and a reply to that object needs no conversion.  NULL if none
     * (or the kernel gave no address). */
    PyObject *from;
    struct sockaddr_storage from_sa;
    socklen_t from_len;
    int family;       /* the socket's; 0 if unknown */
    char connected;   /* extra['peername'] is set: use send() */
    char via_methods; /* the socket's class has its own recvfrom/sendto/send */
} DgramObj;

/* The families whose addresses cio_sockaddr_to_python() builds. */
static int
own_addresses(int family)
{
    return family == AF_INET || family == AF_INET6 || family == AF_UNIX;
}

static Py_ssize_t
dgram_buffer_size(TransportObj *t)
{
    return ((DgramObj *)t)->qsize;
}

static void
dgram_buffer_clear(TransportObj *t)
{
    DgramObj *d = (DgramObj *)t;
    while (d->q_len > 0) {
        dgram *g = &d->q[d->q_head];
        d->q_head = (d->q_head + 1) % d->q_cap;
        d->q_len--;
        Py_DECREF(g->data);
        Py_XDECREF(g->addr);
    }
    d->qsize = 0;
}

static const cio_transport_ops dgram_ops = {dgram_buffer_size, dgram_buffer_clear, NULL, NULL};

static int
queue_push(DgramObj *d, PyObject *data, PyObject *addr, int front)
{
    if (d->q_len == d->q_cap) {
        Py_ssize_t cap = d->q_cap ? d->q_cap * 2 : 16;
        dgram *q = PyMem_Malloc(cap * sizeof(dgram));
        if (q == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        for (Py_ssize_t i = 0; i < d->q_len; i++) {
            q[i] = d->q[(d->q_head + i) % d->q_cap];
        }
        PyMem_Free(d->q);
        d->q = q;
        d->q_head = 0;
        d->q_cap = cap;
    }
    Py_ssize_t slot;
    if (front) {
        d->q_head = (d->q_head + d->q_cap - 1) % d->q_cap;
        slot = d->q_head;
    }
    else {
        slot = (d->q_head + d->q_len) % d->q_cap;
    }
    d->q[slot].data = Py_NewRef(data);
    d->q[slot].addr = Py_XNewRef(addr);
    d->q_len++;
    d->qsize += PyBytes_GET_SIZE(data) + HEADER_SIZE;
    return 0;
}

/* The sockaddr for `addr` when it needs no conversion: the last sender's
 * when addr is the very object datagram_received() was given, or a numeric
 * IPv4 (host, port) pair on an AF_INET socket, written to *scratch.  NULL
 * for anything else, which the socket module converts (and rejects with
 * its own errors: an out-of-range port, a NUL in the host...). */
static const struct sockaddr *
plain_address(DgramObj *d, PyObject *addr, struct sockaddr_in *scratch, socklen_t *len)
{
    if (addr == d->from) {
        *len = d->from_len;
        return (const struct sockaddr *)&d->from_sa;
    }
    if (d->family != AF_INET || !PyTuple_CheckExact(addr) || PyTuple_GET_SIZE(addr) != 2) {
        return NULL;
    }
    PyObject *host = PyTuple_GET_ITEM(addr, 0);
    PyObject *port = PyTuple_GET_ITEM(addr, 1);
    if (!PyUnicode_CheckExact(host) || PyUnicode_GET_LENGTH(host) >= INET_ADDRSTRLEN ||
        !PyLong_CheckExact(port)) {
        return NULL;
    }
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(host, &n);
    long p = PyLong_AsLong(port);
    if (s == NULL || p == -1) {
        PyErr_Clear(); /* the socket module reports it */
        return NULL;
    }
    memset(scratch, 0, sizeof(*scratch));
    if (p < 0 || p > 0xFFFF || strlen(s) != (size_t)n ||
        inet_pton(AF_INET, s, &scratch->sin_addr) != 1) {
        return NULL;
    }
    scratch->sin_family = AF_INET;
    scratch->sin_port = htons((uint16_t)p);
    *len = sizeof(*scratch);
    return (const struct sockaddr *)scratch;
}

/* Sends one datagram.  Returns 1 sent, 0 would block, -1 error set. */
static int
send_one(DgramObj *d, PyObject *data, PyObject *addr)
{
    struct sockaddr_in scratch;
    const struct sockaddr *to = NULL;
    socklen_t tolen = 0;
    if (d->via_methods && d->connected) {
        PyObject *sock = cio_transport_sock(&d->base);
        PyObject *res = sock ? PyObject_CallMethodOneArg(sock, d->base.st->str_send, data) : NULL;
        if (res == NULL) {
            return cio_err_would_block();
        }
        Py_DECREF(res);
        return 1;
    }
    if (!d->connected) {
        to = addr && !d->via_methods ? plain_address(d, addr, &scratch, &tolen) : NULL;
        if (to == NULL) {
            if (cio_transport_sock(&d->base) == NULL) {
                return -1;
            }
            PyObject *args[] = {d->base.sock, data, addr ? addr : Py_None};
            PyObject *res = PyObject_VectorcallMethod(d->base.st->str_sendto, args,
                                                      3 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
            if (res != NULL) {
                Py_DECREF(res);
                return 1;
            }
            return cio_err_would_block();
        }
    }
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) {
        return -1;
    }
    ssize_t n;
    do {
        n = sendto(d->base.fd, view.buf, (size_t)view.len, 0, to, tolen);
    } while (n < 0 && errno == EINTR);
    PyBuffer_Release(&view);
    return n >= 0 ? 1 : cio_os_error_unless_eagain();
}

/* Passes an OSError to protocol.error_received(); the exception is taken
 * (cleared).  Returns 0, or -1 with what the protocol raised. */
static int
error_received(TransportObj *t)
{
    PyObject *exc = cio_err_take();
    if (t->protocol == NULL) { /* the connection is over: nobody to tell */
        Py_DECREF(exc);
        return 0;
    }
    PyObject *args[] = {Py_NewRef(t->protocol), exc};
    PyObject *res = PyObject_VectorcallMethod(t->st->str_error_received, args,
                                              2 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    Py_DECREF(args[0]);
    Py_DECREF(exc);
    Py_XDECREF(res);
    return res ? 0 : -1;
}

/* After a failed send: an OSError goes to protocol.error_received(), and
 * whatever that raises goes on to our caller, as in asyncio; anything else
 * is fatal.  Returns 0, or -1 with an exception set. */
static int
send_failed(DgramObj *d)
{
    TransportObj *t = &d->base;
    if (!PyErr_ExceptionMatches(PyExc_OSError)) {
        return cio_transport_fatal_error(t, "Fatal write error on datagram transport");
    }
    return error_received(t);
}

/* sendto()'s arguments when some come by keyword (rare), or too few or too
 * many: through a tuple and a dict, for PyArg_ParseTupleAndKeywords()'s
 * checks and messages.  The objects come back borrowed from args. */
static int
sendto_keyword_args(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames, PyObject **data,
                    PyObject **addr)
{
    static char *kwlist[] = {"data", "addr", NULL};
    PyObject *tuple = PyTuple_New(nargs);
    PyObject *kwds = PyDict_New();
    int ok = tuple != NULL && kwds != NULL;
    for (Py_ssize_t i = 0; ok && i < nargs; i++) {
        PyTuple_SET_ITEM(tuple, i, Py_NewRef(args[i]));
    }
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t i = 0; ok && i < nkw; i++) {
        ok = PyDict_SetItem(kwds, PyTuple_GET_ITEM(kwnames, i), args[nargs + i]) == 0;
    }
    ok = ok && PyArg_ParseTupleAndKeywords(tuple, kwds, "O|O:sendto", kwlist, data, addr);
    Py_XDECREF(tuple);
    Py_XDECREF(kwds);
    return ok ? 0 : -1;
}

static PyObject *
Dgram_sendto(DgramObj *d, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *data, *addr = Py_None;
    if (kwnames == NULL && nargs >= 1 && nargs <= 2) {
        data = args[0];
        if (nargs == 2) {
            addr = args[1];
        }
    }
    else if (sendto_keyword_args(args, nargs, kwnames, &data, &addr) < 0) {
        return NULL;
    }
    TransportObj *t = &d->base;
    if (!PyBytes_Check(data) && !PyByteArray_Check(data) && !PyMemoryView_Check(data)) {
        PyErr_Format(PyExc_TypeError, "data argument must be a bytes-like object, not '%.200s'",
                     Py_TYPE(data)->tp_name);
        return NULL;
    }
    Py_ssize_t len = PyObject_Length(data);
    if (len < 0) {
        return NULL;
    }
    if (len == 0 && !SENDS_EMPTY_DATAGRAMS) {
        Py_RETURN_NONE;
    }
    if (d->address != NULL) {
        if (addr != Py_None) {
            int same = PyObject_RichCompareBool(addr, d->address, Py_EQ);
            if (same < 0) {
                return NULL;
            }
            if (!same) {
                PyErr_Format(PyExc_ValueError, "Invalid address: must be None or %S", d->address);
                return NULL;
            }
        }
        addr = d->address;
    }
    /* After the end, asyncio drops what a connected endpoint sends (warning
     * after a few); an unconnected one whose socket is gone (asyncio fails
     * on its None socket there) is given the same treatment. */
    if (t->conn_lost && (d->address != NULL || t->sock == NULL)) {
        if (t->conn_lost >= 5) {
            PyObject *res = PyObject_CallMethod(t->st->logger, "warning", "s",
                                                "socket.send() raised exception.");
            if (res == NULL) {
                return NULL;
            }
            Py_DECREF(res);
        }
        t->conn_lost++;
        Py_RETURN_NONE;
    }
    if (d->q_len == 0) {
        int r = send_one(d, data, addr == Py_None ? NULL : addr);
        if (r > 0) {
            Py_RETURN_NONE;
        }
        if (r < 0) {
            if (send_failed(d) < 0) {
                return NULL;
            }
            Py_RETURN_NONE;
        }
        if (cio_transport_watch(t, CIO_WRITE, 1) < 0) {
            return NULL;
        }
    }
    /* Queue an immutable copy. */
    PyObject *copy = PyBytes_CheckExact(data) ? Py_NewRef(data) : PyBytes_FromObject(data);
    if (copy == NULL) {
        return NULL;
    }
    int rc = queue_push(d, copy, addr == Py_None ? NULL : addr, 0);
    Py_DECREF(copy);
    if (rc < 0 || cio_transport_maybe_pause(t, d->qsize) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static int
sendto_ready(DgramObj *d)
{
    TransportObj *t = &d->base;
    while (d->q_len > 0) {
        dgram g = d->q[d->q_head];
        d->q_head = (d->q_head + 1) % d->q_cap;
        d->q_len--;
        d->qsize -= PyBytes_GET_SIZE(g.data) + HEADER_SIZE;
        int r = send_one(d, g.data, g.addr);
        if (r == 0) {
            /* Would block: put it back in front and wait. */
            r = queue_push(d, g.data, g.addr, 1);
            Py_DECREF(g.data);
            Py_XDECREF(g.addr);
            if (r < 0) {
                return -1;
            }
            break;
        }
        Py_DECREF(g.data);
        Py_XDECREF(g.addr);
        if (r < 0) {
            return send_failed(d);
        }
    }
    if (cio_transport_maybe_resume(t, d->qsize) < 0) { /* may queue more */
        return -1;
    }
    if (d->q_len == 0) {
        if (cio_transport_watch(t, CIO_WRITE, 0) < 0) {
            return -1;
        }
        if (t->closing) {
            return cio_transport_connection_lost(t, NULL);
        }
    }
    return 0;
}

/* Receives one datagram.  Returns 1 with new references in *data and
 * *addr, 0 if there is none, -1 with an exception set. */
static int
recv_one(DgramObj *d, PyObject **data, PyObject **addr)
{
    TransportObj *t = &d->base;
    if (d->via_methods || !own_addresses(d->family)) {
        PyObject *size = PyLong_FromLong(CIO_READ_BUFFER_SIZE);
        PyObject *pair = size && cio_transport_sock(t)
                             ? PyObject_CallMethodOneArg(t->sock, t->st->str_recvfrom, size)
                             : NULL;
        Py_XDECREF(size);
        if (pair == NULL) {
            return -1;
        }
        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2) {
            Py_DECREF(pair);
            PyErr_SetString(PyExc_TypeError, "recvfrom() did not return (data, address)");
            return -1;
        }
        *data = Py_NewRef(PyTuple_GET_ITEM(pair, 0));
        *addr = Py_NewRef(PyTuple_GET_ITEM(pair, 1));
        Py_DECREF(pair);
        return 1;
    }
    char *buf = cio_loop_read_buffer(t->loop);
    if (buf == NULL) {
        return -1;
    }
    struct sockaddr_storage ss;
    socklen_t len;
    ssize_t n;
    do {
        len = sizeof(ss);
        n = recvfrom(t->fd, buf, CIO_READ_BUFFER_SIZE, 0, (struct sockaddr *)&ss, &len);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        return cio_os_error_unless_eagain();
    }
    if (d->from != NULL && len == d->from_len && memcmp(&ss, &d->from_sa, len) == 0) {
        *addr = Py_NewRef(d->from);
    }
    else {
        *addr = cio_sockaddr_to_python(&ss, len);
        if (*addr != NULL && *addr != Py_None && len <= sizeof(ss)) {
            Py_XSETREF(d->from, Py_NewRef(*addr));
            memcpy(&d->from_sa, &ss, len);
            d->from_len = len;
        }
    }
    *data = *addr ? PyBytes_FromStringAndSize(buf, n) : NULL;
    if (*data == NULL) {
        Py_CLEAR(*addr);
        return -1;
    }
    return 1;
}

static int
read_ready(DgramObj *d)
{
    TransportObj *t = &d->base;
    if (t->conn_lost) {
        return 0;
    }
    PyObject *data, *addr;
    int r = recv_one(d, &data, &addr);
    if (r == 0) {
        return 0;
    }
    if (r < 0) {
        if (cio_err_would_block() == 0) {
            return 0;
        }
        if (PyErr_ExceptionMatches(PyExc_OSError)) {
            return error_received(t);
        }
        return cio_transport_fatal_error(t, "Fatal read error on datagram transport");
    }
    /* Hold the protocol: it may swap itself out inside datagram_received(). */
    PyObject *args[] = {Py_NewRef(t->protocol), data, addr};
    PyObject *res = PyObject_VectorcallMethod(t->st->str_datagram_received, args,
                                              3 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    Py_DECREF(args[0]);
    Py_DECREF(data);
    Py_DECREF(addr);
    Py_XDECREF(res);
    return res ? 0 : -1;
}

static int
dgram_io(TransportObj *t, int which)
{
    DgramObj *d = (DgramObj *)t;
    if (which == CIO_READ) {
        return d->base.reading ? read_ready(d) : 0;
    }
    return d->base.writing ? sendto_ready(d) : 0;
}

/* The protocol's callback raised during one readiness: report it as
 * asyncio does, whose _read_ready()/_sendto_ready() run from the fd's
 * Handle (the report names a Handle of them, in the event's context), and
 * keep going; the transport stays open.  Called once that context is
 * exited, as the handler may run in it (3.12+). */
static int
report_io_error(DgramObj *d, int which)
{
    PyObject *obj = (PyObject *)d;
    PyObject *exc = cio_err_take();
    if (cio_exception_is_fatal(exc)) {
        cio_err_restore(exc);
        return -1;
    }
    if (d->base.loop == NULL) { /* lost meanwhile: no loop to report to */
        Py_XDECREF(exc);
        return 0;
    }
    PyObject *callback =
        PyObject_GetAttrString(obj, which == CIO_READ ? "_read_ready" : "_sendto_ready");
    if (callback == NULL) {
        Py_XDECREF(exc);
        PyErr_WriteUnraisable(obj);
        return 0;
    }
    int r = cio_handle_report_call_error(d->base.st, (PyObject *)d->base.loop, callback, NULL,
                                         d->base.ctx[which], exc);
    Py_DECREF(callback);
    return r;
}

int
cio_dgram_io(PyObject *obj, int which)
{
    if (cio_transport_run_io((TransportObj *)obj, which, dgram_io) < 0) {
        return report_io_error((DgramObj *)obj, which);
    }
    return 0;
}

static PyObject *
Dgram_repr(DgramObj *d)
{
    return cio_transport_repr(&d->base, d->qsize);
}

static int
Dgram_traverse(DgramObj *d, visitproc visit, void *arg)
{
    Py_VISIT(d->address);
    Py_VISIT(d->from);
    for (Py_ssize_t i = 0; i < d->q_len; i++) {
        dgram *g = &d->q[(d->q_head + i) % d->q_cap];
        Py_VISIT(g->data);
        Py_VISIT(g->addr);
    }
    return cio_transport_traverse(&d->base, visit, arg);
}

static int
Dgram_clear(DgramObj *d)
{
    Py_CLEAR(d->address);
    Py_CLEAR(d->from);
    dgram_buffer_clear(&d->base);
    return cio_transport_clear(&d->base);
}

static void
Dgram_finalize(DgramObj *d)
{
    cio_transport_finalize(&d->base);
}

static void
Dgram_dealloc(DgramObj *d)
{
    PyTypeObject *tp = Py_TYPE(d);
    if (PyObject_CallFinalizerFromDealloc((PyObject *)d) < 0) {
        return;
    }
    PyObject_GC_UnTrack(d);
    if (d->base.weakreflist != NULL) {
        PyObject_ClearWeakRefs((PyObject *)d);
    }
    Dgram_clear(d);
    PyMem_Free(d->q);
    tp->tp_free(d);
    Py_DECREF(tp);
}

static PyObject *
Dgram_set_protocol(DgramObj *d, PyObject *protocol)
{
    Py_XSETREF(d->base.protocol, Py_NewRef(protocol));
    d->base.protocol_connected = 1;
    Py_RETURN_NONE;
}

/* loop._make_datagram_transport(sock, protocol, address=None, waiter=None,
 * extra=None), as asyncio's selector loop spells it. */
static PyObject *
Loop_make_datagram_transport(LoopObj *loop, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"sock", "protocol", "address", "waiter", "extra", NULL};
    PyObject *sock, *protocol, *address = Py_None, *waiter = Py_None, *extra = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO|OOO:_make_datagram_transport", kwlist, &sock,
                                     &protocol, &address, &waiter, &extra)) {
        return NULL;
    }
    cio_state *st = loop->st;
    if (cio_loop_check_closed(loop) < 0) {
        return NULL;
    }
    DgramObj *d = (DgramObj *)st->DgramType->tp_alloc(st->DgramType, 0);
    if (d == NULL) {
        return NULL;
    }
    d->base.tag = CIO_W_DGRAM;
    d->base.ops = &dgram_ops;
    d->base.fd = -1;
    if (cio_transport_setup(&d->base, st, loop, sock, protocol, extra, Py_None) < 0) {
        goto error;
    }
    static const char *const io_methods[] = {"recvfrom", "sendto", "send", NULL};
    int via_methods = cio_socket_overrides(st, sock, io_methods);
    if (via_methods < 0) {
        goto error;
    }
    d->via_methods = (char)via_methods;
    if (address != Py_None) {
        d->address = Py_NewRef(address);
    }
    PyObject *peer = PyDict_GetItemWithError(d->base.extra, st->str_peername); /* borrowed */
    if (peer == NULL && PyErr_Occurred()) {
        goto error;
    }
    d->connected = peer != NULL && PyObject_IsTrue(peer) == 1;
    socklen_t flen = sizeof(d->family);
    if (getsockopt(d->base.fd, SOL_SOCKET, SO_DOMAIN, &d->family, &flen) < 0) {
        d->family = 0;
    }
    if (cio_transport_start(&d->base, waiter) < 0) {
        goto error;
    }
    return (PyObject *)d;
error:
    Py_CLEAR(d->base.sock);
    Py_DECREF(d);
    return NULL;
}

/* set_protocol(protocol), also by name, as asyncio's. */
static PyObject *
Dgram_set_protocol_meth(DgramObj *d, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *protocol;
    if (cio_parse_one("set_protocol", args, nargs, kwnames, "protocol", &protocol) < 0) {
        return NULL;
    }
    return Dgram_set_protocol(d, protocol);
}

/* _read_ready() and _sendto_ready(): one readiness of the socket, as the
 * loop runs it, and nothing while the loop is not watching for it
 * (asyncio's transport has the same two methods, and the loop's report of
 * an error from the protocol names them). */
static PyObject *
Dgram_read_ready(DgramObj *d, PyObject *Py_UNUSED(ignored))
{
    int r = d->base.reading ? read_ready(d) : 0;
    return r < 0 ? NULL : Py_NewRef(Py_None);
}

static PyObject *
Dgram_sendto_ready(DgramObj *d, PyObject *Py_UNUSED(ignored))
{
    int r = d->base.writing ? sendto_ready(d) : 0;
    return r < 0 ? NULL : Py_NewRef(Py_None);
}

static PyMethodDef Dgram_methods[] = {
    CIO_TRANSPORT_METHODS,
    {"_read_ready", (PyCFunction)Dgram_read_ready, METH_NOARGS, NULL},
    {"_sendto_ready", (PyCFunction)Dgram_sendto_ready, METH_NOARGS, NULL},
    {"sendto", (PyCFunction)(void (*)(void))Dgram_sendto, METH_FASTCALL | METH_KEYWORDS,
     "sendto(data, addr=None): send a datagram (queued if the socket would block)."},
    {"set_protocol", (PyCFunction)(void (*)(void))Dgram_set_protocol_meth,
     METH_FASTCALL | METH_KEYWORDS, NULL},
    {NULL, NULL},
};

static PyMemberDef Dgram_members[] = {
    CIO_TRANSPORT_MEMBERS,
    {"_address", T_OBJECT, offsetof(DgramObj, address), READONLY, NULL},
    {NULL},
};

static PyType_Slot Dgram_slots[] = {
    {Py_tp_doc, "A datagram socket transport, implemented in C."},
    {Py_tp_dealloc, Dgram_dealloc},
    {Py_tp_finalize, Dgram_finalize},
    {Py_tp_traverse, Dgram_traverse},
    {Py_tp_clear, Dgram_clear},
    {Py_tp_repr, Dgram_repr},
    {Py_tp_methods, Dgram_methods},
    {Py_tp_members, Dgram_members},
    {0, NULL},
};

static PyType_Spec Dgram_spec = {
    .name = "casyncio.DatagramTransport",
    .basicsize = sizeof(DgramObj),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = Dgram_slots,
};

int
cio_dgram_init_type(PyObject *module, cio_state *st)
{
    /* asyncio's own datagram transport is an asyncio.Transport too (code
     * checks for it), as well as a DatagramTransport. */
    static const char *const bases[] = {"Transport", "DatagramTransport", NULL};
    st->DgramType = cio_transport_make_type(module, &Dgram_spec, bases);
    return st->DgramType ? 0 : -1;
}

PyMethodDef cio_dgram_loop_methods[] = {
    {"_make_datagram_transport", (PyCFunction)(void (*)(void))Loop_make_datagram_transport,
     METH_VARARGS | METH_KEYWORDS,
     "_make_datagram_transport(sock, protocol, address=None, waiter=None, extra=None)"},
    {NULL, NULL},
};
