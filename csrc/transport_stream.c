/* transport_stream.c: the TCP/Unix stream transport, as asyncio's
 * _SelectorSocketTransport.
 *
 * write() tries the send() syscall at once and buffers only what the kernel
 * did not take; writelines() does the same with one sendmsg() over all the
 * pieces; buffered data is flushed with sendmsg() over the queued chunks
 * when the fd becomes writable.  The queue holds references to the caller's
 * bytes objects (immutable, so no copy) and copies of anything mutable.
 * Reading receives into the loop's shared buffer and hands the protocol a
 * bytes object of exactly the received size; a BufferedProtocol gets data
 * straight into its own buffer (get_buffer/buffer_updated).
 *
 * Corking: a write() of bytes that a callback makes while nothing is queued
 * is queued instead of sent, and the loop sends it when the callback
 * returns (cio_loop_uncork()), together with whatever else the callback
 * wrote to the transport meanwhile: uvicorn's headers-then-body response is
 * one sendmsg() instead of two send()s.  asyncio and uvloop send at
 * write().  Here the data leaves before any other callback runs, and the
 * transport does not let the writing callback tell either:
 * get_write_buffer_size(), close(), abort(), write_eof(),
 * set_write_buffer_limits() and sendfile send it first, and a write that
 * would pass the high-water mark goes out with it.  What differs is only
 * the moment of the system call: a callback that blocks (without
 * returning to the loop) until the peer has the data waits forever.
 *
 * Invariants: the queue is not empty exactly while `writing` (watching for
 * writability) or `corked` is set, never both; wsize is the number of
 * unsent bytes in the queue. */
#include "transport.h"

#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#ifndef IOV_MAX
#define IOV_MAX 1024
#endif
#define MAX_IOV (IOV_MAX < 512 ? IOV_MAX : 512)

typedef struct {
    PyObject *obj;     /* a bytes object */
    Py_ssize_t offset; /* how much of it was sent already */
} wchunk;

typedef struct {
    TransportObj base;
    PyObject *empty_waiter; /* sendfile waits for an empty buffer */
    wchunk *wq;             /* ring of queued chunks */
    Py_ssize_t wq_head, wq_len, wq_cap;
    Py_ssize_t wsize;
    char eof;         /* write_eof() was called */
    char buffered;    /* the protocol is a BufferedProtocol */
    char big_reads;   /* the last read was big (see read_ready()) */
    char via_methods; /* the socket's class has its own recv/recv_into/send:
                         call them, as asyncio's transports do (see below) */
} StreamObj;

/* ---- the write queue ---- */

static Py_ssize_t
stream_buffer_size(TransportObj *t)
{
    return ((StreamObj *)t)->wsize;
}

static void
stream_buffer_clear(TransportObj *t)
{
    StreamObj *s = (StreamObj *)t;
    while (s->wq_len > 0) {
        wchunk *c = &s->wq[s->wq_head];
        s->wq_head = (s->wq_head + 1) % s->wq_cap;
        s->wq_len--;
        Py_DECREF(c->obj);
    }
    s->wsize = 0;
}

/* Ends a sendfile() waiting for the buffer to drain (loop.sendfile):
 * with None, or with exc. Returns 0 or -1. */
static int
empty_waiter_finish(StreamObj *s, PyObject *exc)
{
    FutureObj *waiter = (FutureObj *)s->empty_waiter;
    if (waiter == NULL || waiter->state != CIO_PENDING) {
        return 0;
    }
    return exc ? cio_future_set_exception(waiter, exc) : cio_future_set_result(waiter, Py_None);
}

static int
stream_connection_lost(TransportObj *t)
{
    StreamObj *s = (StreamObj *)t;
    if (s->empty_waiter == NULL) {
        return 0;
    }
    PyObject *exc =
        PyObject_CallFunction(PyExc_ConnectionError, "s", "Connection is closed by peer");
    if (exc == NULL) {
        return -1;
    }
    int rc = empty_waiter_finish(s, exc);
    Py_DECREF(exc);
    return rc;
}

static int stream_uncork(TransportObj *t);

static const cio_transport_ops stream_ops = {stream_buffer_size, stream_buffer_clear,
                                             stream_connection_lost, stream_uncork};

/* Appends data[offset:] (a buffer view) to the queue, keeping a reference
 * to bytes and copying anything else. */
static int
queue_append(StreamObj *s, PyObject *obj, Py_buffer *view, Py_ssize_t offset)
{
    if (s->wq_len == s->wq_cap) {
        Py_ssize_t cap = s->wq_cap ? s->wq_cap * 2 : 16;
        wchunk *wq = PyMem_Malloc(cap * sizeof(wchunk));
        if (wq == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        for (Py_ssize_t i = 0; i < s->wq_len; i++) {
            wq[i] = s->wq[(s->wq_head + i) % s->wq_cap];
        }
        PyMem_Free(s->wq);
        s->wq = wq;
        s->wq_head = 0;
        s->wq_cap = cap;
    }
    PyObject *data;
    if (PyBytes_CheckExact(obj)) {
        data = Py_NewRef(obj);
    }
    else {
        /* The caller may change a bytearray after write() returns. */
        data = PyBytes_FromStringAndSize((char *)view->buf + offset, view->len - offset);
        if (data == NULL) {
            return -1;
        }
        offset = 0;
    }
    wchunk *c = &s->wq[(s->wq_head + s->wq_len) % s->wq_cap];
    c->obj = data;
    c->offset = offset;
    s->wq_len++;
    s->wsize += PyBytes_GET_SIZE(data) - offset;
    return 0;
}

/* Drops n sent bytes from the front of the queue. */
static void
queue_consume(StreamObj *s, Py_ssize_t n)
{
    s->wsize -= n;
    while (n > 0 && s->wq_len > 0) {
        wchunk *c = &s->wq[s->wq_head];
        Py_ssize_t left = PyBytes_GET_SIZE(c->obj) - c->offset;
        if (n < left) {
            c->offset += n;
            return;
        }
        n -= left;
        Py_DECREF(c->obj);
        s->wq_head = (s->wq_head + 1) % s->wq_cap;
        s->wq_len--;
    }
}

/* ---- a socket class with its own recv()/send() ----
 *
 * Such a socket's transport calls its recv(), recv_into(), send() (and from
 * 3.12 on sendmsg()) as asyncio's transports do, through the slower paths
 * below (see cio_socket_overrides()). */

#if PY_VERSION_HEX >= 0x030C0000
/* From 3.12 on, asyncio flushes its buffer and sends writelines() with one
 * sock.sendmsg() of every piece; returns what send_iov_by_method() does. */
static Py_ssize_t
sendmsg_by_method(cio_state *st, PyObject *sock, struct iovec *iov, int n)
{
    PyObject *pieces = PyList_New(n);
    if (pieces == NULL) {
        return -1;
    }
    Py_ssize_t total = 0;
    for (int i = 0; i < n; i++) {
        PyObject *piece = PyBytes_FromStringAndSize(iov[i].iov_base, (Py_ssize_t)iov[i].iov_len);
        if (piece == NULL) {
            Py_DECREF(pieces);
            return -1;
        }
        PyList_SET_ITEM(pieces, i, piece);
        total += (Py_ssize_t)iov[i].iov_len;
    }
    PyObject *res = PyObject_CallMethodOneArg(sock, st->str_sendmsg, pieces);
    Py_DECREF(pieces);
    if (res == NULL) {
        return cio_err_would_block() == 0 ? 0 : -1;
    }
    Py_ssize_t sent = PyLong_AsSsize_t(res);
    Py_DECREF(res);
    if (sent == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (sent < 0 || sent > total) {
        PyErr_Format(PyExc_ValueError, "sendmsg() returned %zd for %zd bytes", sent, total);
        return -1;
    }
    return sent;
}
#endif

/* sock.send() for each piece (a copy: the method may keep what it gets)
 * until one is short, or one sendmsg() where asyncio gathers (see above);
 * returns bytes sent, 0 if the first would block, or -1 with the method's
 * exception set. */
static Py_ssize_t
send_iov_by_method(cio_state *st, PyObject *sock, struct iovec *iov, int n, int gather)
{
#if PY_VERSION_HEX >= 0x030C0000
    if (gather) {
        return sendmsg_by_method(st, sock, iov, n);
    }
#else
    (void)gather;
#endif
    Py_ssize_t total = 0;
    for (int i = 0; i < n; i++) {
        PyObject *piece = PyBytes_FromStringAndSize(iov[i].iov_base, (Py_ssize_t)iov[i].iov_len);
        if (piece == NULL) {
            return -1;
        }
        PyObject *res = PyObject_CallMethodOneArg(sock, st->str_send, piece);
        Py_DECREF(piece);
        if (res == NULL) {
            return cio_err_would_block() == 0 ? total : -1;
        }
        Py_ssize_t sent = PyLong_AsSsize_t(res);
        Py_DECREF(res);
        if (sent == -1 && PyErr_Occurred()) {
            return -1;
        }
        if (sent < 0 || (size_t)sent > iov[i].iov_len) {
            PyErr_Format(PyExc_ValueError, "send() returned %zd for %zu bytes", sent,
                         iov[i].iov_len);
            return -1;
        }
        total += sent;
        if ((size_t)sent < iov[i].iov_len) {
            break;
        }
    }
    return total;
}

/* sendmsg() over up to MAX_IOV iovecs (send() for one: the kernel then has
 * no message header and vector to copy in, ~1.5% of a 1 KiB echo round
 * trip); returns bytes sent, 0 for EAGAIN, or -1 with OSError set.  `gather`
 * says a flush or writelines() is sending, for a socket's own methods. */
static Py_ssize_t
send_iov(StreamObj *s, struct iovec *iov, int n, int gather)
{
    if (s->via_methods) {
        PyObject *sock = cio_transport_sock(&s->base);
        return sock ? send_iov_by_method(s->base.st, sock, iov, n, gather) : -1;
    }
    int fd = s->base.fd;
    struct msghdr msg = {0};
    msg.msg_iov = iov;
    msg.msg_iovlen = (size_t)n;
    s->base.st->totals.stream_sends++;
    for (;;) {
        ssize_t r = n == 1 ? send(fd, iov[0].iov_base, iov[0].iov_len, MSG_NOSIGNAL)
                           : sendmsg(fd, &msg, MSG_NOSIGNAL);
        if (r >= 0) {
            return r;
        }
        if (errno == EINTR) {
            continue;
        }
        return cio_os_error_unless_eagain();
    }
}

/* ---- writing ---- */

static int
check_writable(StreamObj *s)
{
    if (s->eof) {
        PyErr_SetString(PyExc_RuntimeError, "Cannot call write() after write_eof()");
        return -1;
    }
    if (s->empty_waiter != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "unable to write; sendfile is in progress");
        return -1;
    }
    return 0;
}

static int
get_data_buffer(PyObject *data, Py_buffer *view)
{
    if (!PyBytes_Check(data) && !PyByteArray_Check(data) && !PyMemoryView_Check(data)) {
        PyErr_Format(PyExc_TypeError, "data argument must be a bytes-like object, not '%.200s'",
                     Py_TYPE(data)->tp_name);
        return -1;
    }
    return PyObject_GetBuffer(data, view, PyBUF_SIMPLE);
}

/* One piece of writelines(): any bytes-like object, as asyncio's
 * writelines() joins them (3.11) or takes a memoryview of each (3.12+),
 * where write() takes only bytes, bytearray and memoryview.  From 3.15 on
 * (CPython gh-155888), a false piece (b"", and also None or 0) is skipped
 * before it is looked at: it gets an empty view. */
static int
get_piece_buffer(PyObject *piece, Py_ssize_t index, Py_buffer *view)
{
#if PY_VERSION_HEX >= 0x030F0000
    int empty = PyObject_Not(piece);
    if (empty != 0) {
        return empty < 0 ? -1 : PyBuffer_FillInfo(view, NULL, (void *)"", 0, 1, PyBUF_SIMPLE);
    }
#endif
    if (PyObject_GetBuffer(piece, view, PyBUF_SIMPLE) == 0) {
        return 0;
    }
#if PY_VERSION_HEX < 0x030C0000
    /* b"".join()'s TypeError, for any piece it cannot read. */
    PyErr_Clear();
    PyErr_Format(PyExc_TypeError, "sequence item %zd: expected a bytes-like object, %.80s found",
                 index, Py_TYPE(piece)->tp_name);
#endif
    return -1;
}

/* Counts a write after the connection was lost, warning like asyncio. */
static int
write_after_lost(StreamObj *s)
{
    TransportObj *t = &s->base;
    if (t->conn_lost >= 5) {
        PyObject *res =
            PyObject_CallMethod(t->st->logger, "warning", "s", "socket.send() raised exception.");
        if (res == NULL) {
            return -1;
        }
        Py_DECREF(res);
    }
    t->conn_lost++;
    return 0;
}

/* Whether write(data) may be corked rather than sent at once (see the top
 * of the file): the loop is running a callback, data is bytes (kept by
 * reference; anything else would be copied, which costs more than the
 * system call saved), and under the high-water mark, so asyncio would not
 * have paused the protocol for it either.  A socket with its own send()
 * does not cork: it must see the calls asyncio makes. */
static int
may_cork(StreamObj *s, PyObject *data, Py_ssize_t len)
{
    TransportObj *t = &s->base;
    return t->loop != NULL && t->loop->corking && PyBytes_CheckExact(data) &&
           len <= t->high_water && !s->via_methods;
}

/* Writes the pieces (views[i] of objs[i]): sends what the kernel takes now
 * if nothing is queued, queues the rest, watches for writability.  `gather`:
 * writelines() is writing (see send_iov()).  A one-piece write() from a
 * callback may be corked instead. */
static int
write_pieces(StreamObj *s, PyObject **objs, Py_buffer *views, Py_ssize_t n, int gather)
{
    TransportObj *t = &s->base;
    if (t->corked) {
        /* Behind what this callback wrote already: with it, in one send. */
        for (Py_ssize_t i = 0; i < n; i++) {
            if (views[i].len > 0 && queue_append(s, objs[i], &views[i], 0) < 0) {
                return -1;
            }
        }
        if (!gather && may_cork(s, objs[0], s->wsize)) {
            return 0;
        }
        if (stream_uncork(t) < 0) {
            return -1;
        }
        return cio_transport_maybe_pause(t, s->wsize);
    }
    /* Not while `writing`: write_ready() is running resume_writing(), and
     * sends what the protocol writes there at once, as before. */
    if (s->wsize == 0 && !t->writing && !gather && may_cork(s, objs[0], views[0].len)) {
        if (cio_loop_cork(t->loop, (PyObject *)s) < 0) {
            return -1;
        }
        t->corked = 1;
        return queue_append(s, objs[0], &views[0], 0);
    }
    Py_ssize_t first = 0, offset = 0;
    if (s->wsize == 0) {
        Py_ssize_t done = 0;
        while (done < n) {
            struct iovec iov[MAX_IOV];
            int k = 0;
            Py_ssize_t total = 0;
            for (Py_ssize_t i = done; i < n && k < MAX_IOV; i++) {
                if (views[i].len == 0) {
                    continue;
                }
                iov[k].iov_base = views[i].buf;
                iov[k].iov_len = (size_t)views[i].len;
                total += views[i].len;
                k++;
            }
            if (k == 0) {
                return 0;
            }
            Py_ssize_t sent = send_iov(s, iov, k, gather);
            if (sent < 0) {
                return cio_transport_fatal_error(t, "Fatal write error on socket transport");
            }
            /* Find where the unsent part starts. */
            Py_ssize_t left = sent;
            while (done < n && left >= views[done].len) {
                left -= views[done].len;
                done++;
            }
            if (sent < total) {
                first = done;
                offset = left;
                break;
            }
            if (done >= n) {
                return 0;
            }
        }
        if (cio_transport_watch(t, CIO_WRITE, 1) < 0) {
            return -1;
        }
    }
    for (Py_ssize_t i = first; i < n; i++) {
        Py_ssize_t off = i == first ? offset : 0;
        if (views[i].len - off > 0 && queue_append(s, objs[i], &views[i], off) < 0) {
            return -1;
        }
    }
    return cio_transport_maybe_pause(t, s->wsize);
}

static PyObject *
Stream_write(StreamObj *s, PyObject *data)
{
    Py_buffer view;
    if (get_data_buffer(data, &view) < 0) {
        return NULL;
    }
    int rc = 0;
    if (check_writable(s) < 0) {
        rc = -1;
    }
    else if (view.len == 0) {
        rc = 0;
    }
    else if (s->base.conn_lost) {
        rc = write_after_lost(s);
    }
    else {
        rc = write_pieces(s, &data, &view, 1, 0);
    }
    PyBuffer_Release(&view);
    if (rc < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
Stream_writelines(StreamObj *s, PyObject *list_of_data)
{
#if PY_VERSION_HEX >= 0x030C0000
    /* asyncio's order from 3.12 on: the transport's state, then an empty
     * (false) argument returns before any piece is looked at.  So does a
     * lost connection in 3.13.10 and 3.14 on (CPython gh-136234); 3.12 to
     * 3.13.9 look at the pieces and then fail on the lost connection (see
     * tests/test_net_faults.py), so every 3.12+ takes the fixed order here.
     * 3.11's writelines() joins the pieces first. */
    if (check_writable(s) < 0) {
        return NULL;
    }
    int any = PyObject_IsTrue(list_of_data);
    if (any <= 0) {
        return any < 0 ? NULL : Py_NewRef(Py_None);
    }
    if (s->base.conn_lost) {
        return write_after_lost(s) < 0 ? NULL : Py_NewRef(Py_None);
    }
#endif
    PyObject *seq = PySequence_Fast(list_of_data, "writelines() argument must be iterable");
    if (seq == NULL) {
        return NULL;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject **objs = PySequence_Fast_ITEMS(seq);
    Py_buffer *views = PyMem_Calloc(n ? n : 1, sizeof(Py_buffer));
    Py_ssize_t got = 0, total = 0;
    int rc = views ? 0 : -1;
    if (views == NULL) {
        PyErr_NoMemory();
    }
    for (; rc == 0 && got < n; got++) {
        if (get_piece_buffer(objs[got], got, &views[got]) < 0) {
            rc = -1;
            break;
        }
        total += views[got].len;
    }
    if (rc == 0 && check_writable(s) < 0) {
        rc = -1;
    }
    if (rc == 0 && total > 0) {
        rc = s->base.conn_lost ? write_after_lost(s) : write_pieces(s, objs, views, n, 1);
    }
    for (Py_ssize_t i = 0; i < got; i++) {
        PyBuffer_Release(&views[i]);
    }
    PyMem_Free(views);
    Py_DECREF(seq);
    if (rc < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static int
shutdown_write(StreamObj *s)
{
    PyObject *sock = cio_transport_sock(&s->base);
    PyObject *how = sock ? PyLong_FromLong(SHUT_WR) : NULL;
    PyObject *res = how ? PyObject_CallMethodOneArg(sock, s->base.st->str_shutdown, how) : NULL;
    Py_XDECREF(how);
    Py_XDECREF(res);
    return res ? 0 : -1;
}

/* Sends what the kernel takes of the queue, and drops that from it.  A
 * send that fails ends the connection (fatal error): *failed is set then,
 * and what is returned is the fatal error path's result. */
static int
send_queue(StreamObj *s, int *failed)
{
    TransportObj *t = &s->base;
    struct iovec iov[MAX_IOV];
    int k = 0;
    for (Py_ssize_t i = 0; i < s->wq_len && k < MAX_IOV; i++, k++) {
        wchunk *c = &s->wq[(s->wq_head + i) % s->wq_cap];
        iov[k].iov_base = PyBytes_AS_STRING(c->obj) + c->offset;
        iov[k].iov_len = (size_t)(PyBytes_GET_SIZE(c->obj) - c->offset);
    }
    Py_ssize_t sent = send_iov(s, iov, k, 1);
    if (sent < 0) {
        *failed = 1;
        PyObject *exc = cio_err_take();
        cio_transport_watch(t, CIO_WRITE, 0);
        stream_buffer_clear(t);
        cio_err_restore(Py_NewRef(exc));
        int rc = cio_transport_fatal_error(t, "Fatal write error on socket transport");
        if (empty_waiter_finish(s, exc) < 0) {
            rc = -1;
        }
        Py_DECREF(exc);
        return rc;
    }
    queue_consume(s, sent);
    return 0;
}

/* Sends the writes corked by the callback that has just returned: what
 * the kernel does not take waits for writability, as after write(). */
static int
stream_uncork(TransportObj *t)
{
    StreamObj *s = (StreamObj *)t;
    t->corked = 0;
    if (t->conn_lost || s->wq_len == 0) {
        return 0;
    }
    int failed = 0;
    int rc = send_queue(s, &failed);
    if (rc < 0 || failed || s->wsize == 0) {
        return rc;
    }
    return cio_transport_watch(t, CIO_WRITE, 1);
}

/* The fd is writable: flush what we can. */
static int
write_ready(StreamObj *s)
{
    TransportObj *t = &s->base;
    if (t->conn_lost || s->wq_len == 0) {
        return 0;
    }
    int failed = 0;
    int rc = send_queue(s, &failed);
    if (rc < 0 || failed) {
        return rc;
    }
    if (cio_transport_maybe_resume(t, s->wsize) < 0) { /* may write more */
        return -1;
    }
    if (s->wsize == 0) {
        if (cio_transport_watch(t, CIO_WRITE, 0) < 0) {
            return -1;
        }
        if (empty_waiter_finish(s, NULL) < 0) {
            return -1;
        }
        if (t->closing) {
            return cio_transport_connection_lost(t, NULL);
        }
        if (s->eof) {
            return shutdown_write(s);
        }
    }
    return 0;
}

static PyObject *
Stream_write_eof(StreamObj *s, PyObject *Py_UNUSED(ignored))
{
    if (s->base.closing || s->eof) {
        Py_RETURN_NONE;
    }
    if (s->base.corked) {
        if (stream_uncork(&s->base) < 0) {
            return NULL;
        }
        if (s->base.closing) {
            Py_RETURN_NONE; /* the send failed: the connection is over */
        }
    }
    s->eof = 1;
    if (s->wsize == 0 && shutdown_write(s) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
Stream_can_write_eof(StreamObj *s, PyObject *Py_UNUSED(ignored))
{
    Py_RETURN_TRUE;
}

/* ---- reading ---- */

static int
on_eof(StreamObj *s)
{
    TransportObj *t = &s->base;
    if (t->loop->debug) {
        PyObject *res =
            PyObject_CallMethod(t->st->logger, "debug", "sO", "%r received EOF", (PyObject *)t);
        Py_XDECREF(res);
        if (res == NULL) {
            return -1;
        }
    }
    PyObject *keep_open = NULL;
    if (cio_transport_call_protocol(t, t->st->str_eof_received, NULL, 0,
                                    "Fatal error: protocol.eof_received() call failed.",
                                    &keep_open) < 0) {
        return -1;
    }
    if (keep_open == NULL) {
        return 0; /* reported as fatal */
    }
    int keep = PyObject_IsTrue(keep_open);
    Py_DECREF(keep_open);
    if (keep < 0) {
        return -1;
    }
    if (keep) {
        /* The protocol may still write, but nothing more can be read. */
        return cio_transport_watch(t, CIO_READ, 0);
    }
    PyObject *res = cio_transport_close(t, NULL);
    Py_XDECREF(res);
    return res ? 0 : -1;
}

/* recv() once; returns bytes received, 0 at EOF, -2 for EAGAIN, or -1 with
 * OSError set. */
static Py_ssize_t
recv_once(int fd, char *buf, size_t len)
{
    for (;;) {
        ssize_t n = recv(fd, buf, len, 0);
        if (n >= 0) {
            return n;
        }
        if (errno == EINTR) {
            continue;
        }
        return cio_os_error_unless_eagain() == 0 ? -2 : -1;
    }
}

/* sock.recv_into(buf); returns as recv_once() does. */
static Py_ssize_t
recv_into_by_method(cio_state *st, PyObject *sock, PyObject *buf)
{
    PyObject *res = PyObject_CallMethodOneArg(sock, st->str_recv_into, buf);
    if (res == NULL) {
        return cio_err_would_block() == 0 ? -2 : -1;
    }
    Py_ssize_t n = PyLong_AsSsize_t(res);
    Py_DECREF(res);
    if (n < 0 && !PyErr_Occurred()) {
        PyErr_Format(PyExc_ValueError, "recv_into() returned %zd", n);
    }
    return n < 0 ? -1 : n;
}

/* sock.recv(CIO_READ_BUFFER_SIZE) into *data; returns as recv_once() does. */
static Py_ssize_t
recv_by_method(cio_state *st, PyObject *sock, PyObject **data)
{
    PyObject *size = PyLong_FromSsize_t(CIO_READ_BUFFER_SIZE);
    *data = size ? PyObject_CallMethodOneArg(sock, st->str_recv, size) : NULL;
    Py_XDECREF(size);
    if (*data == NULL) {
        return cio_err_would_block() == 0 ? -2 : -1;
    }
    if (!PyBytes_Check(*data)) {
        PyErr_Format(PyExc_TypeError, "recv() returned %.200s, not bytes", Py_TYPE(*data)->tp_name);
        Py_CLEAR(*data);
        return -1;
    }
    Py_ssize_t n = PyBytes_GET_SIZE(*data);
    if (n == 0) {
        Py_CLEAR(*data);
    }
    return n;
}

static int
read_ready_buffered(StreamObj *s)
{
    TransportObj *t = &s->base;
    PyObject *hint = PyLong_FromLong(-1);
    if (hint == NULL) {
        return -1;
    }
    /* The protocol's methods are looked up at each call, as asyncio does:
     * a protocol may replace them, or lack them until data comes. */
    PyObject *args[] = {Py_NewRef(t->protocol), hint};
    PyObject *buf = PyObject_VectorcallMethod(t->st->str_get_buffer, args,
                                              2 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    Py_DECREF(args[0]);
    Py_DECREF(hint);
    /* asyncio's checks in its order: len(buf) (an empty buffer is the
     * protocol's error), then recv_into(buf), whose argument parsing makes
     * a TypeError of any buffer it cannot write into. */
    Py_ssize_t len = buf != NULL ? PyObject_Length(buf) : -1;
    if (len == 0) {
        PyErr_SetString(PyExc_RuntimeError, "get_buffer() returned an empty buffer");
    }
    if (len <= 0) {
        Py_XDECREF(buf);
        return cio_transport_fatal_error(t, "Fatal error: protocol.get_buffer() call failed.");
    }
    Py_buffer view;
    int rc = PyObject_GetBuffer(buf, &view, PyBUF_WRITABLE);
    if (rc < 0) {
        PyErr_Clear();
        PyErr_Format(PyExc_TypeError,
                     "recv_into() argument 'buffer' must be read-write bytes-like object, "
                     "not %.200s",
                     Py_TYPE(buf)->tp_name);
    }
    Py_DECREF(buf);
    if (rc < 0) {
        return cio_transport_fatal_error(t, "Fatal read error on socket transport");
    }
    Py_ssize_t n;
    if (s->via_methods) {
        n = cio_transport_sock(t) ? recv_into_by_method(t->st, t->sock, view.obj) : -1;
    }
    else {
        n = recv_once(t->fd, view.buf, (size_t)view.len);
    }
    PyBuffer_Release(&view);
    if (n == -2) {
        return 0;
    }
    if (n < 0) {
        return cio_transport_fatal_error(t, "Fatal read error on socket transport");
    }
    if (n == 0) {
        return on_eof(s);
    }
    if (t->protocol == NULL) {
        return 0; /* connection_lost() ran inside get_buffer() */
    }
    PyObject *nbytes = PyLong_FromSsize_t(n);
    if (nbytes == NULL) {
        return -1;
    }
    PyObject *uargs[] = {Py_NewRef(t->protocol), nbytes};
    PyObject *res = PyObject_VectorcallMethod(t->st->str_buffer_updated, uargs,
                                              2 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    Py_DECREF(uargs[0]);
    Py_DECREF(nbytes);
    if (res == NULL) {
        return cio_transport_fatal_error(t, "Fatal error: protocol.buffer_updated() call failed.");
    }
    Py_DECREF(res);
    return 0;
}

static int
read_ready(StreamObj *s)
{
    TransportObj *t = &s->base;
    if (t->conn_lost || t->protocol == NULL) {
        return 0;
    }
    if (s->buffered) {
        return read_ready_buffered(s);
    }
    /* After a big read (32 KiB or more) the next one goes straight into its
     * bytes object, sized by FIONREAD: for 100 KiB messages the copy out of
     * the loop's buffer cost more than the call (echo_protocol_100k +7%). */
    PyObject *data = NULL;
    Py_ssize_t n;
    if (s->via_methods) {
        n = cio_transport_sock(t) ? recv_by_method(t->st, t->sock, &data) : -1;
    }
    else {
        n = cio_recv_bytes(t->loop, t->fd, CIO_READ_BUFFER_SIZE, s->big_reads, &data);
    }
    if (n == -2) {
        return 0;
    }
    if (n < 0) {
        return cio_transport_fatal_error(t, "Fatal read error on socket transport");
    }
    if (n == 0) {
        Py_XDECREF(data);
        return on_eof(s);
    }
    s->big_reads = n >= CIO_BIG_READ;
    /* Hold the protocol: it may swap itself out inside data_received(). */
    PyObject *args[] = {Py_NewRef(t->protocol), data};
    PyObject *res = PyObject_VectorcallMethod(t->st->str_data_received, args,
                                              2 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    Py_DECREF(args[0]);
    Py_DECREF(data);
    if (res == NULL) {
        return cio_transport_fatal_error(t, "Fatal error: protocol.data_received() call failed.");
    }
    Py_DECREF(res);
    return 0;
}

static int
stream_io(TransportObj *t, int which)
{
    StreamObj *s = (StreamObj *)t;
    int rc;
    if (which == CIO_READ) {
        rc = s->base.reading ? read_ready(s) : 0;
    }
    else {
        rc = s->base.writing ? write_ready(s) : 0;
    }
    if (rc < 0) {
        PyObject *exc = cio_err_take();
        if (cio_exception_is_fatal(exc)) {
            cio_err_restore(exc);
            return -1;
        }
        /* A failure in our own bookkeeping, not the protocol's: report it
         * like a failing callback and end the connection. */
        cio_err_restore(exc);
        if (cio_transport_fatal_error(&s->base, "Fatal error on transport") < 0) {
            return -1;
        }
    }
    return 0;
}

int
cio_stream_io(PyObject *obj, int which)
{
    return cio_transport_run_io((TransportObj *)obj, which, stream_io);
}

/* ---- protocol ---- */

static int
set_protocol(StreamObj *s, PyObject *protocol)
{
    cio_state *st = s->base.st;
    int buffered = PyObject_IsInstance(protocol, st->BufferedProtocol);
    if (buffered < 0) {
        return -1;
    }
    s->buffered = (char)buffered;
    Py_XSETREF(s->base.protocol, Py_NewRef(protocol));
    s->base.protocol_connected = 1;
    return 0;
}

static PyObject *
Stream_set_protocol(StreamObj *s, PyObject *protocol)
{
    if (set_protocol(s, protocol) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* ---- sendfile support (asyncio's loop.sendfile uses these) ---- */

static PyObject *
Stream_make_empty_waiter(StreamObj *s, PyObject *Py_UNUSED(ignored))
{
    if (s->empty_waiter != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Empty waiter is already set");
        return NULL;
    }
    if (s->base.loop == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "transport is closed");
        return NULL;
    }
    if (s->base.corked && stream_uncork(&s->base) < 0) {
        return NULL;
    }
    s->empty_waiter = cio_future_new(s->base.st, (PyObject *)s->base.loop);
    if (s->empty_waiter == NULL) {
        return NULL;
    }
    if (s->wsize == 0 && cio_future_set_result((FutureObj *)s->empty_waiter, Py_None) < 0) {
        return NULL;
    }
    return Py_NewRef(s->empty_waiter);
}

static PyObject *
Stream_reset_empty_waiter(StreamObj *s, PyObject *Py_UNUSED(ignored))
{
    Py_CLEAR(s->empty_waiter);
    Py_RETURN_NONE;
}

/* ---- construction and type ---- */

static PyObject *
Stream_repr(StreamObj *s)
{
    return cio_transport_repr(&s->base, s->wsize);
}

static int
Stream_traverse(StreamObj *s, visitproc visit, void *arg)
{
    Py_VISIT(s->empty_waiter);
    for (Py_ssize_t i = 0; i < s->wq_len; i++) {
        Py_VISIT(s->wq[(s->wq_head + i) % s->wq_cap].obj);
    }
    return cio_transport_traverse(&s->base, visit, arg);
}

static int
Stream_clear(StreamObj *s)
{
    Py_CLEAR(s->empty_waiter);
    stream_buffer_clear(&s->base);
    return cio_transport_clear(&s->base);
}

static void
Stream_finalize(StreamObj *s)
{
    cio_transport_finalize(&s->base);
}

static void
Stream_dealloc(StreamObj *s)
{
    PyTypeObject *tp = Py_TYPE(s);
    if (PyObject_CallFinalizerFromDealloc((PyObject *)s) < 0) {
        return;
    }
    PyObject_GC_UnTrack(s);
    if (s->base.weakreflist != NULL) {
        PyObject_ClearWeakRefs((PyObject *)s);
    }
    Stream_clear(s);
    PyMem_Free(s->wq);
    tp->tp_free(s);
    Py_DECREF(tp);
}

/* Nagle off for TCP, as asyncio's _set_nodelay(): small writes go out
 * without waiting for ACKs.  For a plain socket.socket, the test reads the
 * ints under its family and type properties (each of which builds an enum)
 * and the option is set on the fd; any other socket object is handed to
 * asyncio's function, which asks the object. */
static int
set_nodelay(cio_state *st, PyObject *sock, int fd)
{
    if ((PyObject *)Py_TYPE(sock) != st->socket_socket) {
        PyObject *res = PyObject_CallOneArg(st->set_nodelay, sock);
        Py_XDECREF(res);
        return res ? 0 : -1;
    }
    long family, type, proto;
    if (cio_socket_field(st, sock, 0, &family) < 0 || cio_socket_field(st, sock, 1, &type) < 0 ||
        cio_socket_field(st, sock, 2, &proto) < 0) {
        return -1;
    }
    if ((family != AF_INET && family != AF_INET6) || type != SOCK_STREAM || proto != IPPROTO_TCP) {
        return 0;
    }
    int on = 1;
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on)) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    return 0;
}

/* loop._make_socket_transport(sock, protocol, waiter=None, *, extra=None,
 * server=None, context=None), as asyncio's selector loop spells it.  Given
 * a context (3.15's asyncio gives one), every event of the transport runs
 * in it. */
static PyObject *
Loop_make_socket_transport(LoopObj *loop, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"sock", "protocol", "waiter", "extra", "server", "context", NULL};
    PyObject *sock, *protocol, *waiter = Py_None, *extra = Py_None, *server = Py_None;
    PyObject *context = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO|O$OOO:_make_socket_transport", kwlist, &sock,
                                     &protocol, &waiter, &extra, &server, &context)) {
        return NULL;
    }
    if (context != Py_None && cio_check_context(context) < 0) {
        return NULL;
    }
    cio_state *st = loop->st;
    if (cio_loop_check_closed(loop) < 0) {
        return NULL;
    }
    StreamObj *s = (StreamObj *)st->StreamType->tp_alloc(st->StreamType, 0);
    if (s == NULL) {
        return NULL;
    }
    s->base.tag = CIO_W_STREAM;
    s->base.ops = &stream_ops;
    s->base.fd = -1;
    if (context != Py_None) {
        s->base.context = Py_NewRef(context);
    }
    if (cio_transport_setup(&s->base, st, loop, sock, protocol, extra, server) < 0 ||
        set_protocol(s, protocol) < 0) {
        goto error;
    }
    static const char *const io_methods[] = {"recv", "recv_into", "send",
#if PY_VERSION_HEX >= 0x030C0000
                                             "sendmsg",
#endif
                                             NULL};
    int via_methods = cio_socket_overrides(st, sock, io_methods);
    if (via_methods < 0) {
        goto error;
    }
    s->via_methods = (char)via_methods;
    if (set_nodelay(st, sock, s->base.fd) < 0) {
        goto error;
    }
    if (cio_transport_start(&s->base, waiter) < 0) {
        goto error;
    }
    return (PyObject *)s;
error:
    /* Not handed out: forget the socket without closing it (the caller owns
     * it still) and without the unclosed-transport warning. */
    Py_CLEAR(s->base.sock);
    Py_DECREF(s);
    return NULL;
}

/* write(data), writelines(list_of_data) and set_protocol(protocol), whose
 * argument may be passed by name, as to asyncio's transports. */
static PyObject *
Stream_write_meth(StreamObj *s, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *data;
    if (cio_parse_one("write", args, nargs, kwnames, "data", &data) < 0) {
        return NULL;
    }
    return Stream_write(s, data);
}

static PyObject *
Stream_writelines_meth(StreamObj *s, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *list_of_data;
    if (cio_parse_one("writelines", args, nargs, kwnames, "list_of_data", &list_of_data) < 0) {
        return NULL;
    }
    return Stream_writelines(s, list_of_data);
}

static PyObject *
Stream_set_protocol_meth(StreamObj *s, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *protocol;
    if (cio_parse_one("set_protocol", args, nargs, kwnames, "protocol", &protocol) < 0) {
        return NULL;
    }
    return Stream_set_protocol(s, protocol);
}

#define STREAM_METHOD(name, func, doc) \
    {name, (PyCFunction)(void (*)(void))func, METH_FASTCALL | METH_KEYWORDS, doc}

static PyMethodDef Stream_methods[] = {
    CIO_TRANSPORT_METHODS,
    STREAM_METHOD("write", Stream_write_meth,
                  "Write bytes: sent at once when possible, buffered otherwise."),
    STREAM_METHOD("writelines", Stream_writelines_meth,
                  "Write a sequence of bytes-like objects with one sendmsg()."),
    {"write_eof", (PyCFunction)Stream_write_eof, METH_NOARGS,
     "Shut down the write side once the buffer is flushed."},
    {"can_write_eof", (PyCFunction)Stream_can_write_eof, METH_NOARGS, NULL},
    STREAM_METHOD("set_protocol", Stream_set_protocol_meth, NULL),
    {"_make_empty_waiter", (PyCFunction)Stream_make_empty_waiter, METH_NOARGS, NULL},
    {"_reset_empty_waiter", (PyCFunction)Stream_reset_empty_waiter, METH_NOARGS, NULL},
    {NULL, NULL},
};

static PyMemberDef Stream_members[] = {
    CIO_TRANSPORT_MEMBERS,
    {"_eof", T_BOOL, offsetof(StreamObj, eof), READONLY, NULL},
    {"_empty_waiter", T_OBJECT, offsetof(StreamObj, empty_waiter), READONLY, NULL},
    {NULL},
};

static PyType_Slot Stream_slots[] = {
    {Py_tp_doc, "A stream (TCP or Unix) socket transport, implemented in C."},
    {Py_tp_dealloc, Stream_dealloc},
    {Py_tp_finalize, Stream_finalize},
    {Py_tp_traverse, Stream_traverse},
    {Py_tp_clear, Stream_clear},
    {Py_tp_repr, Stream_repr},
    {Py_tp_methods, Stream_methods},
    {Py_tp_members, Stream_members},
    {0, NULL},
};

static PyType_Spec Stream_spec = {
    .name = "casyncio.SocketTransport",
    .basicsize = sizeof(StreamObj),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = Stream_slots,
};

int cio_dgram_init_type(PyObject *module, cio_state *st);
extern PyMethodDef cio_dgram_loop_methods[];

int
cio_transport_init_types(PyObject *module, cio_state *st)
{
    static const char *const bases[] = {"Transport", NULL};
    st->StreamType = cio_transport_make_type(module, &Stream_spec, bases);
    if (st->StreamType == NULL) {
        return -1;
    }
    /* asyncio's loop.sendfile() and start_tls() look for these. */
    PyObject *consts = PyImport_ImportModule("asyncio.constants");
    PyObject *mode = consts ? PyObject_GetAttrString(consts, "_SendfileMode") : NULL;
    PyObject *try_native = mode ? PyObject_GetAttrString(mode, "TRY_NATIVE") : NULL;
    Py_XDECREF(consts);
    Py_XDECREF(mode);
    if (try_native == NULL ||
        PyObject_SetAttrString((PyObject *)st->StreamType, "_sendfile_compatible", try_native) <
            0 ||
        PyObject_SetAttrString((PyObject *)st->StreamType, "_start_tls_compatible", Py_True) < 0) {
        Py_XDECREF(try_native);
        return -1;
    }
    Py_DECREF(try_native);
    return cio_dgram_init_type(module, st);
}

PyMethodDef cio_stream_loop_methods[] = {
    {"_make_socket_transport", (PyCFunction)(void (*)(void))Loop_make_socket_transport,
     METH_VARARGS | METH_KEYWORDS,
     "_make_socket_transport(sock, protocol, waiter=None, *, extra=None, server=None, "
     "context=None)"},
    {NULL, NULL},
};
