/* transport.c: the machinery the stream and datagram transports share --
 * set-up, watching the fd, write flow control, fatal errors and the close
 * path, the repr and the methods of asyncio.BaseTransport.  See
 * transport.h for the lifecycle. */
#include "transport.h"

#include <sys/ioctl.h>
#include <sys/socket.h>

/* asyncio.constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES */
#define DEFAULT_HIGH_WATER (64 * 1024)

int
cio_loop_call_soon(LoopObj *loop, PyObject *callable, PyObject *args, PyObject *context)
{
    if (cio_loop_check_closed(loop) < 0) {
        return -1;
    }
    HandleObj *h = cio_handle_new(loop->st, callable, args, (PyObject *)loop, context);
    if (h == NULL) {
        return -1;
    }
    /* The queue takes the reference. */
    if (cio_loop_push(loop, CIO_READY_HANDLE, h, NULL, NULL) < 0) {
        Py_DECREF(h);
        return -1;
    }
    return 0;
}

char *
cio_loop_read_buffer(LoopObj *loop)
{
    if (loop->rbuf == NULL) {
#ifdef __GLIBC__
        /* glibc maps blocks of 128 KiB and more with mmap() until the
         * program frees such a block; then it raises that threshold to the
         * block's size, and the one for trimming the heap top to twice that.
         * A loop that reads into one buffer it keeps never frees such a
         * block, and with the thresholds low, the bytes objects it hands out
         * for big messages are mapped afresh, or carved from a heap top that
         * the previous messages' free() just gave back to the kernel: page
         * faults for every page, every time.  (With a 256 KiB block here,
         * four connections echoing 100 KiB messages still took ~12 page
         * faults per round trip, and ran at half the speed.)  Freeing one
         * block of a little over 1 MiB is what glibc's own heuristic waits
         * for: from then on blocks up to 1 MiB are recycled from the heap,
         * which keeps up to 2 MiB free at its top. */
        void *probe = PyMem_RawMalloc(1024 * 1024 + 4096);
        PyMem_RawFree(probe);
#endif
        loop->rbuf = PyMem_RawMalloc(CIO_READ_BUFFER_SIZE);
        if (loop->rbuf == NULL) {
            PyErr_NoMemory();
        }
    }
    return loop->rbuf;
}

Py_ssize_t
cio_recv_bytes(LoopObj *loop, int fd, Py_ssize_t max, int sized, PyObject **data)
{
    *data = NULL;
    int avail = 0;
    char *into;
    Py_ssize_t want = max;
    if (sized && ioctl(fd, FIONREAD, &avail) == 0 && avail > 0) {
        want = avail < max ? avail : max;
        *data = PyBytes_FromStringAndSize(NULL, want);
        into = *data ? PyBytes_AS_STRING(*data) : NULL;
    }
    else {
        into = cio_loop_read_buffer(loop);
    }
    if (into == NULL) {
        return -1;
    }
    ssize_t n;
    do {
        n = recv(fd, into, (size_t)want, MSG_DONTWAIT);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        int err = errno;
        Py_CLEAR(*data);
        errno = err;
        return cio_os_error_unless_eagain() == 0 ? -2 : -1;
    }
    if (*data == NULL) {
        *data = PyBytes_FromStringAndSize(into, n);
    }
    else if (n != want) { /* not what FIONREAD said was there: keep what came */
        Py_SETREF(*data, PyBytes_FromStringAndSize(into, n));
    }
    return *data ? n : -1;
}

/* Calls a method of the transport's own through call_soon (cold paths). */
static int
call_soon_method(TransportObj *t, PyObject *name, PyObject *arg)
{
    PyObject *meth = PyObject_GetAttr((PyObject *)t, name);
    if (meth == NULL) {
        return -1;
    }
    PyObject *args = arg ? PyTuple_Pack(1, arg) : NULL;
    int rc = (arg && args == NULL) ? -1 : cio_loop_call_soon(t->loop, meth, args, t->context);
    Py_XDECREF(args);
    Py_DECREF(meth);
    return rc;
}

static int
debug_log(TransportObj *t, const char *fmt, PyObject *arg)
{
    if (t->loop == NULL || !t->loop->debug) {
        return 0;
    }
    PyObject *res =
        PyObject_CallMethod(t->st->logger, "debug", "sOO", fmt, (PyObject *)t, arg ? arg : Py_None);
    Py_XDECREF(res);
    return res ? 0 : -1;
}

/* ---- set-up ---- */

/* A server's connections all have one local address, and many come from
 * one host, so the sockname tuple and the peername's host string are often
 * equal from one transport to the next.  Sharing them saves about 200 bytes
 * per idle connection: an address equal to the last one of its kind
 * becomes that one, and one with the same host is rebuilt around the last
 * one's host string.  Both are immutable, so only `is` tells the
 * difference.  Takes and returns a reference (NULL with an error set). */
static PyObject *
shared_address(PyObject **last, PyObject *addr)
{
    /* Only addresses as the socket module makes them, (host, port, ...) of
     * a str and ints, which compare without running Python code. */
    Py_ssize_t n = PyTuple_CheckExact(addr) ? PyTuple_GET_SIZE(addr) : 0;
    if (n < 2 || !PyUnicode_CheckExact(PyTuple_GET_ITEM(addr, 0))) {
        return addr;
    }
    for (Py_ssize_t i = 1; i < n; i++) {
        if (!PyLong_CheckExact(PyTuple_GET_ITEM(addr, i))) {
            return addr;
        }
    }
    PyObject *prev = *last;
    if (prev != NULL && PyTuple_GET_SIZE(prev) == n &&
        PyUnicode_Compare(PyTuple_GET_ITEM(addr, 0), PyTuple_GET_ITEM(prev, 0)) == 0) {
        int same = PyObject_RichCompareBool(addr, prev, Py_EQ);
        if (same < 0) {
            Py_DECREF(addr);
            return NULL;
        }
        if (same) {
            Py_DECREF(addr);
            return Py_NewRef(prev);
        }
        PyObject *rebuilt = PyTuple_New(n);
        if (rebuilt == NULL) {
            Py_DECREF(addr);
            return NULL;
        }
        PyTuple_SET_ITEM(rebuilt, 0, Py_NewRef(PyTuple_GET_ITEM(prev, 0)));
        for (Py_ssize_t i = 1; i < n; i++) {
            PyTuple_SET_ITEM(rebuilt, i, Py_NewRef(PyTuple_GET_ITEM(addr, i)));
        }
        Py_SETREF(addr, rebuilt);
    }
    Py_XSETREF(*last, Py_NewRef(addr));
    return addr;
}

/* extra[key] = the address sock.<method>() gives (None when that fails with
 * an OSError), or, with `keep`, the one extra already has if it has one;
 * shared as above. */
static int
extra_address(PyObject *extra, PyObject *key, int keep, PyObject *sock, PyObject *method,
              PyObject **last)
{
    PyObject *value = keep ? PyDict_GetItemWithError(extra, key) : NULL;
    if (value != NULL) {
        Py_INCREF(value);
    }
    else if (PyErr_Occurred()) {
        return -1;
    }
    else {
        value = PyObject_CallMethodNoArgs(sock, method);
        if (value == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_OSError)) {
                return -1;
            }
            PyErr_Clear();
            value = Py_NewRef(Py_None);
        }
    }
    value = shared_address(last, value);
    int rc = value ? PyDict_SetItem(extra, key, value) : -1;
    Py_XDECREF(value);
    return rc;
}

/* server._attach() or _detach(): since 3.13 they take the transport, which
 * the Server keeps for close_clients()/abort_clients(). */
static PyObject *
call_server(PyObject *server, PyObject *method, TransportObj *t)
{
#if PY_VERSION_HEX >= 0x030D0000
    return PyObject_CallMethodOneArg(server, method, (PyObject *)t);
#else
    (void)t;
    return PyObject_CallMethodNoArgs(server, method);
#endif
}

int
cio_transport_setup(TransportObj *t, cio_state *st, LoopObj *loop, PyObject *sock,
                    PyObject *protocol, PyObject *extra, PyObject *server)
{
    t->st = st;
    t->loop = (LoopObj *)Py_NewRef(loop);
    t->sock = Py_NewRef(sock);
    t->extra = (extra == NULL || extra == Py_None) ? PyDict_New() : PyDict_Copy(extra);
    if (t->extra == NULL) {
        return -1;
    }
    PyObject *trsock = PyObject_CallOneArg(st->TransportSocket, sock);
    if (trsock == NULL || PyDict_SetItem(t->extra, st->str_socket, trsock) < 0) {
        Py_XDECREF(trsock);
        return -1;
    }
    Py_DECREF(trsock);
    if (extra_address(t->extra, st->str_sockname, 0, sock, st->str_getsockname,
                      &st->last_sockname) < 0 ||
        extra_address(t->extra, st->str_peername, 1, sock, st->str_getpeername,
                      &st->last_peername) < 0) {
        return -1;
    }
    t->fd = cio_fileobj_to_fd(st, sock);
    if (t->fd < 0) {
        return -1;
    }
    if (cio_loop_set_fd_owner(loop, t->fd, (PyObject *)t) < 0) {
        return -1;
    }
    t->protocol = Py_NewRef(protocol);
    t->protocol_connected = 1;
    t->high_water = DEFAULT_HIGH_WATER;
    t->low_water = DEFAULT_HIGH_WATER / 4;
    if (server != NULL && server != Py_None) {
        t->server = Py_NewRef(server);
        PyObject *res = call_server(server, st->str_attach, t);
        if (res == NULL) {
            return -1;
        }
        Py_DECREF(res);
    }
    return 0;
}

int
cio_socket_overrides(cio_state *st, PyObject *sock, const char *const *names)
{
    if ((PyObject *)Py_TYPE(sock) == st->socket_socket) {
        return 0;
    }
    if (!PyObject_TypeCheck(sock, (PyTypeObject *)st->socket_socket)) {
        /* A socket-like object (a wrapper, a mock): asyncio calls whatever
         * methods it has, and so does its transport here. */
        return 1;
    }
    for (; *names != NULL; names++) {
        PyObject *theirs = PyObject_GetAttrString((PyObject *)Py_TYPE(sock), *names);
        PyObject *ours = theirs ? PyObject_GetAttrString(st->socket_socket, *names) : NULL;
        int differ = ours != NULL && theirs != ours;
        Py_XDECREF(theirs);
        Py_XDECREF(ours);
        if (ours == NULL) {
            return -1;
        }
        if (differ) {
            return 1;
        }
    }
    return 0;
}

int
cio_transport_start(TransportObj *t, PyObject *waiter)
{
    /* As asyncio: connection_made() first, then reading (so that data never
     * reaches a protocol before it knows its transport), then the waiter. */
    PyObject *made = PyObject_GetAttr(t->protocol, t->st->str_connection_made);
    PyObject *args = made ? PyTuple_Pack(1, (PyObject *)t) : NULL;
    int rc = args ? cio_loop_call_soon(t->loop, made, args, t->context) : -1;
    Py_XDECREF(made);
    Py_XDECREF(args);
    if (rc < 0 || call_soon_method(t, t->st->str_start_reading, NULL) < 0) {
        return -1;
    }
    if (waiter != NULL && waiter != Py_None) {
        args = PyTuple_Pack(2, waiter, Py_None);
        rc = args
                 ? cio_loop_call_soon(t->loop, t->st->set_result_unless_cancelled, args, t->context)
                 : -1;
        Py_XDECREF(args);
        return rc;
    }
    return 0;
}

PyObject *
cio_transport_start_reading_meth(TransportObj *t, PyObject *Py_UNUSED(ignored))
{
    if (!t->closing && !t->paused && t->loop != NULL && cio_transport_watch(t, CIO_READ, 1) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

int
cio_transport_watch(TransportObj *t, int which, int on)
{
    char *flag = which == CIO_READ ? &t->reading : &t->writing;
    if (t->loop == NULL || *flag == on) {
        return 0;
    }
    PyObject *old;
    uint16_t old_tag;
    if (on) {
        PyObject *ctx = t->context ? Py_NewRef(t->context) : PyContext_CopyCurrent();
        if (ctx == NULL) {
            return -1;
        }
        if (cio_loop_watch(t->loop, t->fd, which, (PyObject *)t, t->tag, &old, &old_tag) < 0) {
            Py_DECREF(ctx);
            return -1;
        }
        Py_XSETREF(t->ctx[which], ctx);
    }
    else {
        cio_loop_unwatch(t->loop, t->fd, which, &old, &old_tag);
    }
    *flag = (char)on;
    Py_XDECREF(old);
    return 0;
}

int
cio_transport_run_io(TransportObj *t, int which, int (*io)(TransportObj *, int))
{
    PyObject *ctx = t->ctx[which] ? Py_NewRef(t->ctx[which]) : PyContext_CopyCurrent();
    if (ctx == NULL) {
        return -1;
    }
    if (PyContext_Enter(ctx) < 0) {
        Py_DECREF(ctx);
        return -1;
    }
    int rc = io(t, which);
    /* Cannot fail: the context is the one entered last, by us. */
    (void)PyContext_Exit(ctx);
    Py_DECREF(ctx);
    return rc;
}

PyObject *
cio_transport_event_context(cio_state *st, PyObject *w, int which)
{
    if (!PyObject_TypeCheck(w, st->StreamType) && !PyObject_TypeCheck(w, st->DgramType)) {
        return NULL; /* a sock_*() operation's: no callback of its own runs */
    }
    return ((TransportObj *)w)->ctx[which];
}

/* ---- flow control ---- */

static int
report_protocol_error(TransportObj *t, const char *message, PyObject *exc)
{
    PyObject *ctx = Py_BuildValue("{sssOsOsO}", "message", message, "exception", exc, "transport",
                                  (PyObject *)t, "protocol", t->protocol ? t->protocol : Py_None);
    if (ctx == NULL) {
        return -1;
    }
    int rc = cio_call_exception_handler(t->st, (PyObject *)t->loop, ctx);
    Py_DECREF(ctx);
    return rc;
}

int
cio_transport_call_protocol(TransportObj *t, PyObject *name, PyObject *const *args, size_t nargs,
                            const char *message, PyObject **result)
{
    PyObject *res = NULL;
    PyObject *meth = PyObject_GetAttr(t->protocol, name);
    if (meth != NULL) {
        res = PyObject_Vectorcall(meth, args, nargs, NULL);
        Py_DECREF(meth);
    }
    if (result != NULL) {
        *result = res;
    }
    else {
        Py_XDECREF(res);
    }
    if (res != NULL) {
        return 0;
    }
    if (message == NULL) {
        PyObject *exc = cio_err_take();
        if (cio_exception_is_fatal(exc)) {
            cio_err_restore(exc);
            return -1;
        }
        /* name is one of the module's ASCII strings: PyUnicode_AsUTF8()
         * returns its characters and cannot fail. */
        char buf[128];
        PyOS_snprintf(buf, sizeof(buf), "protocol.%s() failed", PyUnicode_AsUTF8(name));
        int rc = report_protocol_error(t, buf, exc);
        Py_DECREF(exc);
        return rc;
    }
    return cio_transport_fatal_error(t, message);
}

int
cio_transport_maybe_pause(TransportObj *t, Py_ssize_t size)
{
    if (size <= t->high_water || t->protocol_paused) {
        return 0;
    }
    t->protocol_paused = 1;
    return cio_transport_call_protocol(t, t->st->str_pause_writing, NULL, 0, NULL, NULL);
}

int
cio_transport_maybe_resume(TransportObj *t, Py_ssize_t size)
{
    if (!t->protocol_paused || size > t->low_water) {
        return 0;
    }
    t->protocol_paused = 0;
    return cio_transport_call_protocol(t, t->st->str_resume_writing, NULL, 0, NULL, NULL);
}

/* ---- ending the connection ---- */

/* Drops the loop's note that this transport owns its fd (set up in
 * cio_transport_setup), unless the loop is gone or the fd has a new owner. */
static void
release_fd(TransportObj *t)
{
    if (t->loop != NULL && cio_loop_fd_owner(t->loop, t->fd) == (PyObject *)t) {
        cio_loop_set_fd_owner(t->loop, t->fd, NULL);
    }
}

/* Corked writes were sent at write() as far as anyone can tell: whatever
 * reads or changes the write buffer's state sends them first. */
static int
uncork(TransportObj *t)
{
    return t->corked ? t->ops->uncork(t) : 0;
}

int
cio_transport_uncork(PyObject *transport)
{
    return uncork((TransportObj *)transport);
}

int
cio_transport_schedule_connection_lost(TransportObj *t, PyObject *exc)
{
    return call_soon_method(t, t->st->str_call_connection_lost, exc ? exc : Py_None);
}

int
cio_transport_force_close(TransportObj *t, PyObject *exc)
{
    if (t->conn_lost) {
        return 0;
    }
    /* What write() took before an abort() went out, as with asyncio; a
     * send that fails ends the connection itself, with its own error. */
    if (uncork(t) < 0) {
        return -1;
    }
    if (t->conn_lost) {
        return 0;
    }
    if (t->ops->buffer_size(t) > 0) {
        t->ops->buffer_clear(t);
        cio_transport_watch(t, CIO_WRITE, 0);
    }
    if (!t->closing) {
        t->closing = 1;
        cio_transport_watch(t, CIO_READ, 0);
    }
    t->conn_lost++;
    return cio_transport_schedule_connection_lost(t, exc);
}

int
cio_transport_fatal_error(TransportObj *t, const char *message)
{
    PyObject *exc = cio_err_take();
    if (cio_exception_is_fatal(exc)) {
        cio_err_restore(exc);
        return -1;
    }
    int rc = 0;
    if (PyErr_GivenExceptionMatches(exc, PyExc_OSError)) {
        /* Expected at the end of a connection: a debug message only. */
        if (t->loop != NULL && t->loop->debug) {
            PyObject *kw = Py_BuildValue("{sO}", "exc_info", Py_True);
            PyObject *fn = PyObject_GetAttrString(t->st->logger, "debug");
            PyObject *args = Py_BuildValue("(sOs)", "%r: %s", (PyObject *)t, message);
            PyObject *res = (kw && fn && args) ? PyObject_Call(fn, args, kw) : NULL;
            if (res == NULL) {
                PyErr_Clear();
            }
            Py_XDECREF(res);
            Py_XDECREF(kw);
            Py_XDECREF(fn);
            Py_XDECREF(args);
        }
    }
    else if (t->loop != NULL) {
        rc = report_protocol_error(t, message, exc);
    }
    if (rc == 0 && cio_transport_force_close(t, exc) < 0) {
        rc = -1;
    }
    Py_DECREF(exc);
    return rc;
}

int
cio_transport_connection_lost(TransportObj *t, PyObject *exc)
{
    int rc = 0;
    /* Lost, whichever way it came here (a close() that flushed its buffer
     * comes straight from the write path): from now on writes are counted
     * and dropped, and abort() has nothing left to do. */
    if (t->conn_lost == 0) {
        t->conn_lost = 1;
    }
    if (t->protocol_connected && t->protocol != NULL) {
        PyObject *arg = exc ? exc : Py_None;
        PyObject *res = PyObject_CallMethodOneArg(t->protocol, t->st->str_connection_lost, arg);
        rc = res ? 0 : -1;
        Py_XDECREF(res);
    }
    /* Whatever connection_lost() did, the socket goes (as asyncio's
     * `finally:`), keeping its exception if it raised. */
    PyObject *pending = rc < 0 ? cio_err_take() : NULL;
    cio_transport_watch(t, CIO_READ, 0);
    cio_transport_watch(t, CIO_WRITE, 0);
    release_fd(t);
    if (t->sock != NULL) {
        PyObject *res = PyObject_CallMethodNoArgs(t->sock, t->st->str_close);
        if (res == NULL) {
            if (pending == NULL) {
                pending = cio_err_take();
            }
            else {
                PyErr_Clear();
            }
        }
        Py_XDECREF(res);
        Py_CLEAR(t->sock);
    }
    Py_CLEAR(t->protocol);
    Py_CLEAR(t->loop);
    PyObject *server = t->server;
    t->server = NULL;
    if (server != NULL) {
        PyObject *res = call_server(server, t->st->str_detach, t);
        if (res == NULL && pending == NULL) {
            pending = cio_err_take();
        }
        else if (res == NULL) {
            PyErr_Clear();
        }
        Py_XDECREF(res);
        Py_DECREF(server);
    }
    if (t->ops->connection_lost != NULL && t->ops->connection_lost(t) < 0) {
        if (pending == NULL) {
            pending = cio_err_take();
        }
        else {
            PyErr_Clear();
        }
    }
    if (pending != NULL) {
        cio_err_restore(pending);
        return -1;
    }
    return 0;
}

/* ---- methods ---- */

PyObject *
cio_transport_call_connection_lost_meth(TransportObj *t, PyObject *exc)
{
    if (cio_transport_connection_lost(t, exc == Py_None ? NULL : exc) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

PyObject *
cio_transport_force_close_meth(TransportObj *t, PyObject *exc)
{
    /* asyncio's SSLProtocol ends a failed handshake with this. */
    if (cio_transport_force_close(t, exc == Py_None ? NULL : exc) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

PyObject *
cio_transport_close(TransportObj *t, PyObject *Py_UNUSED(ignored))
{
    if (t->closing) {
        Py_RETURN_NONE;
    }
    if (uncork(t) < 0) {
        return NULL;
    }
    if (t->closing) {
        return Py_NewRef(Py_None); /* the send failed: the connection is over */
    }
    t->closing = 1;
    if (cio_transport_watch(t, CIO_READ, 0) < 0) {
        return NULL;
    }
    if (t->ops->buffer_size(t) == 0) {
        t->conn_lost++;
        if (cio_transport_watch(t, CIO_WRITE, 0) < 0 ||
            cio_transport_schedule_connection_lost(t, NULL) < 0) {
            return NULL;
        }
    }
    Py_RETURN_NONE;
}

PyObject *
cio_transport_abort(TransportObj *t, PyObject *Py_UNUSED(ignored))
{
    if (cio_transport_force_close(t, NULL) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

PyObject *
cio_transport_is_closing(TransportObj *t, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(t->closing);
}

PyObject *
cio_transport_get_protocol(TransportObj *t, PyObject *Py_UNUSED(ignored))
{
    return Py_NewRef(t->protocol ? t->protocol : Py_None);
}

PyObject *
cio_transport_is_reading(TransportObj *t, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(!t->closing && !t->paused);
}

/* pause_reading() and resume_reading(): no-ops on a closing transport or
 * when already in that state. */
static PyObject *
set_paused(TransportObj *t, char paused)
{
    if (t->closing || t->paused == paused) {
        Py_RETURN_NONE;
    }
    t->paused = paused;
    if (cio_transport_watch(t, CIO_READ, !paused) < 0 ||
        debug_log(t, paused ? "%r pauses reading" : "%r resumes reading", NULL) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

PyObject *
cio_transport_pause_reading(TransportObj *t, PyObject *Py_UNUSED(ignored))
{
    return set_paused(t, 1);
}

PyObject *
cio_transport_resume_reading(TransportObj *t, PyObject *Py_UNUSED(ignored))
{
    return set_paused(t, 0);
}

PyObject *
cio_transport_get_write_buffer_size(TransportObj *t, PyObject *Py_UNUSED(ignored))
{
    if (uncork(t) < 0) {
        return NULL;
    }
    return PyLong_FromSsize_t(t->ops->buffer_size(t));
}

PyObject *
cio_transport_get_write_buffer_limits(TransportObj *t, PyObject *Py_UNUSED(ignored))
{
    if (t->limits != NULL) {
        return Py_NewRef(t->limits);
    }
    return Py_BuildValue("(nn)", t->low_water, t->high_water);
}

/* A flow control mark (a number asyncio compared >= 0) as a size the
 * buffer's is compared with: floored, and clamped to PY_SSIZE_T_MAX.  It
 * must convert to an int (__index__) or a float; asyncio would also keep a
 * number type that does neither, and compare the buffer's size with it. */
static int
water_mark(PyObject *v, Py_ssize_t *out)
{
    if (PyIndex_Check(v)) {
        *out = PyNumber_AsSsize_t(v, NULL); /* NULL: clamps instead of raising */
        return *out == -1 && PyErr_Occurred() ? -1 : 0;
    }
    double d = PyFloat_AsDouble(v);
    if (d == -1.0 && PyErr_Occurred()) {
        return -1;
    }
    *out = d >= (double)PY_SSIZE_T_MAX ? PY_SSIZE_T_MAX : (Py_ssize_t)d;
    return 0;
}

/* asyncio's arithmetic and checks, on whatever numbers it is given: high
 * defaults to 64 KiB (or 4 * low), low to high // 4, and high >= low >= 0
 * must hold. */
PyObject *
cio_transport_set_write_buffer_limits(TransportObj *t, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"high", "low", NULL};
    PyObject *high_obj = Py_None, *low_obj = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|OO:set_write_buffer_limits", kwlist, &high_obj,
                                     &low_obj)) {
        return NULL;
    }
    PyObject *high = NULL, *low = NULL, *four = NULL, *zero = NULL;
    PyObject *result = NULL;
    if ((four = PyLong_FromLong(4)) == NULL || (zero = PyLong_FromLong(0)) == NULL) {
        goto done;
    }
    if (high_obj != Py_None) {
        high = Py_NewRef(high_obj);
    }
    else if (low_obj == Py_None) {
        high = PyLong_FromSsize_t(DEFAULT_HIGH_WATER);
    }
    else {
        high = PyNumber_Multiply(four, low_obj);
    }
    if (high == NULL) {
        goto done;
    }
    low = low_obj != Py_None ? Py_NewRef(low_obj) : PyNumber_FloorDivide(high, four);
    if (low == NULL) {
        goto done;
    }
    int ok = PyObject_RichCompareBool(high, low, Py_GE);
    if (ok > 0) {
        ok = PyObject_RichCompareBool(low, zero, Py_GE);
    }
    if (ok < 0) {
        goto done;
    }
    if (!ok) {
        PyErr_Format(PyExc_ValueError, "high (%R) must be >= low (%R) must be >= 0", high, low);
        goto done;
    }
    Py_ssize_t high_size, low_size;
    PyObject *limits;
    if (water_mark(high, &high_size) < 0 || water_mark(low, &low_size) < 0 ||
        (limits = PyTuple_Pack(2, low, high)) == NULL) {
        goto done;
    }
    Py_XSETREF(t->limits, limits);
    t->high_water = high_size;
    t->low_water = low_size;
    if (uncork(t) < 0 || cio_transport_maybe_pause(t, t->ops->buffer_size(t)) < 0) {
        goto done;
    }
    result = Py_NewRef(Py_None);
done:
    Py_XDECREF(high);
    Py_XDECREF(low);
    Py_XDECREF(four);
    Py_XDECREF(zero);
    return result;
}

/* ---- GC, finalization, repr ---- */

int
cio_transport_traverse(TransportObj *t, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(t));
    Py_VISIT(t->extra);
    Py_VISIT(t->loop);
    Py_VISIT(t->sock);
    Py_VISIT(t->protocol);
    Py_VISIT(t->server);
    Py_VISIT(t->dict);
    Py_VISIT(t->ctx[CIO_READ]);
    Py_VISIT(t->ctx[CIO_WRITE]);
    Py_VISIT(t->context);
    Py_VISIT(t->limits);
    return 0;
}

int
cio_transport_clear(TransportObj *t)
{
    release_fd(t);
    t->fd = -1; /* the socket may go with it (see cio_transport_finalize) */
    Py_CLEAR(t->extra);
    Py_CLEAR(t->loop);
    Py_CLEAR(t->sock);
    Py_CLEAR(t->protocol);
    Py_CLEAR(t->server);
    Py_CLEAR(t->dict);
    Py_CLEAR(t->ctx[CIO_READ]);
    Py_CLEAR(t->ctx[CIO_WRITE]);
    Py_CLEAR(t->context);
    Py_CLEAR(t->limits);
    return 0;
}

void
cio_transport_finalize(TransportObj *t)
{
    if (t->sock == NULL) {
        return;
    }
    PyObject *saved = cio_err_take();
    if (PyErr_ResourceWarning((PyObject *)t, 1, "unclosed transport %R", t) < 0) {
        PyErr_WriteUnraisable((PyObject *)t);
    }
    cio_transport_watch(t, CIO_READ, 0);
    cio_transport_watch(t, CIO_WRITE, 0);
    release_fd(t);
    PyObject *res = PyObject_CallMethodNoArgs(t->sock, t->st->str_close);
    if (res == NULL) {
        PyErr_WriteUnraisable((PyObject *)t);
    }
    Py_XDECREF(res);
    Py_CLEAR(t->sock);
    /* The number may be another socket's by the time anything uses it: a
     * write from a `finally` the GC runs next gets EBADF, as on stock. */
    t->fd = -1;
    if (saved != NULL) {
        cio_err_restore(saved);
    }
}

PyObject *
cio_transport_repr(TransportObj *t, Py_ssize_t bufsize)
{
    PyObject *name = PyType_GetName(Py_TYPE(t));
    if (name == NULL) {
        return NULL;
    }
    const char *state = t->sock == NULL ? " closed" : t->closing ? " closing" : "";
    PyObject *repr;
    if (t->loop != NULL && !t->loop->closed) {
        repr = PyUnicode_FromFormat("<%U%s fd=%d read=%s write=<%s, bufsize=%zd>>", name, state,
                                    t->fd, t->reading ? "polling" : "idle",
                                    t->writing ? "polling" : "idle", bufsize);
    }
    else {
        repr = PyUnicode_FromFormat("<%U%s fd=%d>", name, state, t->fd);
    }
    Py_DECREF(name);
    return repr;
}

PyTypeObject *
cio_transport_make_type(PyObject *module, PyType_Spec *spec, const char *const *base_names)
{
    Py_ssize_t n = 0;
    while (base_names[n] != NULL) {
        n++;
    }
    PyObject *mod = PyImport_ImportModule("asyncio.transports");
    PyObject *bases = mod ? PyTuple_New(n) : NULL;
    for (Py_ssize_t i = 0; bases != NULL && i < n; i++) {
        PyObject *base = PyObject_GetAttrString(mod, base_names[i]);
        /* Our struct must continue the base's layout: header, then
         * `_extra`. */
        if (base != NULL && (!PyType_Check(base) || ((PyTypeObject *)base)->tp_basicsize !=
                                                        (Py_ssize_t)offsetof(TransportObj, st))) {
            PyErr_Format(PyExc_ImportError,
                         "asyncio.%s has an unexpected layout; casyncio cannot subclass it",
                         base_names[i]);
            Py_CLEAR(base);
        }
        if (base == NULL) {
            Py_CLEAR(bases);
            break;
        }
        PyTuple_SET_ITEM(bases, i, base);
    }
    Py_XDECREF(mod);
    if (bases == NULL) {
        return NULL;
    }
    PyObject *type = PyType_FromModuleAndSpec(module, spec, bases);
    Py_DECREF(bases);
    return (PyTypeObject *)type;
}
