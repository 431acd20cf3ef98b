/* sockops.c: the loop's sock_*() operations on non-blocking sockets.
 *
 * Each operation tries its syscall at once; only if the socket would block
 * does it become a pending SockOp: the fd's reader (or writer) in the fd
 * table until the syscall succeeds, fails, or the caller gives up (the
 * operation's future is cancelled, e.g. by asyncio.wait_for()).  That last
 * case is seen through a callback the op puts on its own future, which
 * unregisters the fd at once.  The operations are:
 *   recv, recv_into, sendall     -- raw syscalls on the fd, MSG_DONTWAIT;
 *   recvfrom, recvfrom_into, sendto -- the socket object's methods (they
 *   convert addresses for every family), with MSG_DONTWAIT;
 *   sendfile -- sendfile(2) from a file's fd until EAGAIN, the count or the
 *   file's end; the op counts what went, which sock_sendfile() needs even
 *   when it fails or is cancelled (to move the file's position).
 * MSG_DONTWAIT means a socket left in blocking mode cannot block the loop;
 * in debug mode such a socket is refused with ValueError, as asyncio does.
 *
 * A second operation of the same direction on the same fd replaces the
 * first (whose future then stays pending), as asyncio's add_reader() does. */
#include "casyncio.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

enum {
    OP_RECV,
    OP_RECV_INTO,
    OP_RECVFROM,
    OP_RECVFROM_INTO,
    OP_SENDALL,
    OP_SENDTO,
    OP_ACCEPT,
    OP_CONNECT,
    OP_SENDFILE,
};

/* The most one sendfile(2) call moves on Linux. */
#define SENDFILE_MAX 0x7FFFF000

typedef struct {
    PyObject_HEAD
    cio_state *st;
    LoopObj *loop;
    PyObject *sock;
    PyObject *future;
    PyObject *data;     /* the buffer object (recv_into, sendall, sendto) */
    PyObject *addr;     /* sendto, connect */
    PyObject *size;     /* recvfrom, recvfrom_into: the size as passed, which the
                           socket's method checks */
    Py_buffer view;     /* of `data`, held while pending (recv_into, sendall) */
    Py_ssize_t n;       /* bytes to receive (recv); to send (sendfile, 0: up to
                           the file's end) */
    Py_ssize_t offset;  /* bytes sent so far (sendall, sendfile) */
    long long file_pos; /* sendfile: where in the file it starts */
    int in_fd;          /* sendfile: the file's fd */
    int fd;
    int kind;
    int which; /* CIO_READ or CIO_WRITE */
    char has_view;
    char watching;
    char started; /* connect: the connect() call was made */
} SockOpObj;

/* ---- the syscalls ---- */

/* Runs a socket method; turns BlockingIOError into "would block" (0).
 * Returns 1 with *result set, 0, or -1 with an exception. */
static int
call_method(PyObject **result, PyObject *sock, PyObject *name, const char *fmt, ...)
{
    va_list va;
    va_start(va, fmt);
    PyObject *meth = PyObject_GetAttr(sock, name);
    PyObject *args = meth ? Py_VaBuildValue(fmt, va) : NULL;
    va_end(va);
    *result = args ? PyObject_CallObject(meth, args) : NULL;
    Py_XDECREF(meth);
    Py_XDECREF(args);
    return *result != NULL ? 1 : cio_err_would_block();
}

/* A failed system call: 0 to wait for readiness and try again (EAGAIN, and
 * EINTR too: the poller reports a still-ready fd at once), -1 with OSError
 * set. */
static int
os_error(void)
{
    return errno == EINTR ? 0 : cio_os_error_unless_eagain();
}

/* Whether the last sock_recv() on fd was a big read (CIO_BIG_READ). */
static int
last_recv_was_big(LoopObj *loop, int fd)
{
    cio_fd_entry *e = cio_fdtable_get(&loop->fds, fd);
    return e != NULL && e->big_read;
}

/* Records in the loop's fd table whether a sock_recv() on fd was big.  Only a
 * hint: if the table cannot grow, the fd's reads go through the loop's
 * buffer, as small ones do.  An fd closed and reused keeps the old flag,
 * which costs its first read one FIONREAD call at most. */
static void
note_recv_size(LoopObj *loop, int fd, int big)
{
    cio_fd_entry *e = cio_fdtable_get(&loop->fds, fd);
    if (e == NULL && (!big || cio_fdtable_ensure(&loop->fds, fd, &e) < 0)) {
        return;
    }
    e->big_read = (uint8_t)big;
}

/* sock_recv(sock, n) for n up to the loop's buffer, read as a stream
 * transport reads (cio_recv_bytes()): after a big read on the fd, straight
 * into its bytes object.  Returns 1 with *result set, 0 would block, -1
 * failed. */
static int
recv_bytes(SockOpObj *op, PyObject **result)
{
    int big = last_recv_was_big(op->loop, op->fd);
    Py_ssize_t n = cio_recv_bytes(op->loop, op->fd, op->n, big, result);
    if (n < 0) {
        return n == -2 ? 0 : -1;
    }
    note_recv_size(op->loop, op->fd, n >= CIO_BIG_READ);
    return 1;
}

/* Tries the operation once.  Returns 1 done (*result set), 0 would block,
 * -1 failed (exception set). */
static int
attempt(SockOpObj *op, PyObject **result)
{
    *result = NULL;
    switch (op->kind) {
    case OP_RECV:
        if (op->n == 0) {
            /* socket.recv(0) returns b'' without a syscall (which, on a
             * stream socket with nothing queued, would say EAGAIN). */
            *result = PyBytes_FromStringAndSize(NULL, 0);
            return *result ? 1 : -1;
        }
        if (op->n > CIO_READ_BUFFER_SIZE) {
            return call_method(result, op->sock, op->st->str_recv, "(ni)", op->n, MSG_DONTWAIT);
        }
        return recv_bytes(op, result);
    case OP_RECV_INTO: {
        if (op->view.len == 0) { /* as socket.recv_into() of an empty buffer */
            *result = PyLong_FromLong(0);
            return *result ? 1 : -1;
        }
        ssize_t r = recv(op->fd, op->view.buf, (size_t)op->view.len, MSG_DONTWAIT);
        if (r < 0) {
            return os_error();
        }
        *result = PyLong_FromSsize_t(r);
        return *result ? 1 : -1;
    }
    case OP_RECVFROM:
        return call_method(result, op->sock, op->st->str_recvfrom, "(Oi)", op->size, MSG_DONTWAIT);
    case OP_RECVFROM_INTO:
        return call_method(result, op->sock, op->st->str_recvfrom_into, "(OOi)", op->data, op->size,
                           MSG_DONTWAIT);
    case OP_SENDTO:
        return call_method(result, op->sock, op->st->str_sendto, "(OiO)", op->data, MSG_DONTWAIT,
                           op->addr);
    case OP_ACCEPT: {
        int r = call_method(result, op->sock, op->st->str_accept, "()");
        if (r > 0) {
            PyObject *conn = PyTuple_Check(*result) && PyTuple_GET_SIZE(*result) == 2
                                 ? PyTuple_GET_ITEM(*result, 0)
                                 : NULL;
            PyObject *res =
                conn ? PyObject_CallMethodOneArg(conn, op->st->str_setblocking, Py_False) : NULL;
            if (res == NULL) {
                if (conn != NULL) {
                    PyObject *exc = cio_err_take();
                    PyObject *closed = PyObject_CallMethodNoArgs(conn, op->st->str_close);
                    Py_XDECREF(closed);
                    PyErr_Clear();
                    cio_err_restore(exc);
                }
                else {
                    PyErr_SetString(PyExc_TypeError, "accept() did not return (conn, address)");
                }
                Py_CLEAR(*result);
                return -1;
            }
            Py_DECREF(res);
        }
        return r;
    }
    case OP_CONNECT: {
        if (!op->started) {
            op->started = 1;
            int r = call_method(result, op->sock, op->st->str_connect, "(O)", op->addr);
            if (r > 0) {
                Py_SETREF(*result, Py_NewRef(Py_None));
            }
            return r;
        }
        /* Writable after a connect() in progress: did it work? */
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(op->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) {
            return os_error();
        }
        if (err != 0) {
            PyObject *msg = PyUnicode_FromFormat("Connect call failed %S", op->addr);
            PyObject *exc = msg ? PyObject_CallFunction(PyExc_OSError, "iO", err, msg) : NULL;
            Py_XDECREF(msg);
            if (exc != NULL) {
                PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
                Py_DECREF(exc);
            }
            return -1;
        }
        *result = Py_NewRef(Py_None);
        return 1;
    }
    case OP_SENDALL:
        /* At least one send(), as socket.send(b"") makes one: sending
         * nothing on an unconnected socket fails, as on stock asyncio. */
        for (;;) {
            ssize_t r = send(op->fd, (char *)op->view.buf + op->offset,
                             (size_t)(op->view.len - op->offset), MSG_DONTWAIT | MSG_NOSIGNAL);
            if (r < 0) {
                if (errno == EINTR) {
                    continue;
                }
                return os_error();
            }
            op->offset += r;
            if (op->offset >= op->view.len) {
                break;
            }
        }
        *result = Py_NewRef(Py_None);
        return 1;
    case OP_SENDFILE:
        for (;;) {
            size_t want = SENDFILE_MAX;
            if (op->n > 0) {
                Py_ssize_t left = op->n - op->offset;
                if (left <= 0) {
                    break;
                }
                if ((size_t)left < want) {
                    want = (size_t)left;
                }
            }
            off_t pos = (off_t)(op->file_pos + op->offset);
            ssize_t r = sendfile(op->fd, op->in_fd, &pos, want);
            op->st->totals.sendfile_calls++;
            if (r < 0) {
                if (errno == EINTR) {
                    continue;
                }
                return os_error();
            }
            if (r == 0) {
                break; /* the file's end */
            }
            op->offset += r;
        }
        *result = PyLong_FromSsize_t(op->offset);
        return *result ? 1 : -1;
    }
    PyErr_SetString(PyExc_SystemError, "unknown socket operation");
    return -1;
}

/* ---- completion ---- */

static void
stop_watching(SockOpObj *op)
{
    if (!op->watching) {
        return;
    }
    op->watching = 0;
    cio_fd_entry *e = op->loop ? cio_fdtable_get(&op->loop->fds, op->fd) : NULL;
    void *current = e ? (op->which == CIO_READ ? e->reader : e->writer) : NULL;
    if (current == (void *)op) {
        PyObject *old;
        uint16_t old_tag;
        cio_loop_unwatch(op->loop, op->fd, op->which, &old, &old_tag);
        Py_XDECREF(old);
    }
}

static void
release_view(SockOpObj *op)
{
    if (op->has_view) {
        op->has_view = 0;
        PyBuffer_Release(&op->view);
    }
}

/* Finishes with a result (stolen) or, when result is NULL, the current
 * exception.  Returns 0, or -1 if the future could not be completed. */
static int
finish(SockOpObj *op, PyObject *result)
{
    stop_watching(op);
    release_view(op);
    FutureObj *fut = (FutureObj *)op->future;
    int rc;
    if (result == NULL) {
        PyObject *exc = cio_err_take();
        rc = fut->state == CIO_PENDING ? cio_future_set_exception(fut, exc) : 0;
        Py_DECREF(exc);
    }
    else {
        rc = fut->state == CIO_PENDING ? cio_future_set_result(fut, result) : 0;
        Py_DECREF(result);
    }
    return rc;
}

/* The op's future is done (cancelled, usually): stop watching at once. */
void
cio_sockop_future_done(PyObject *obj)
{
    SockOpObj *op = (SockOpObj *)obj;
    stop_watching(op);
    release_view(op);
}

int
cio_sockop_io(PyObject *obj, int which)
{
    SockOpObj *op = (SockOpObj *)obj;
    if (!op->watching) {
        return 0;
    }
    if (((FutureObj *)op->future)->state != CIO_PENDING) {
        cio_sockop_future_done(obj);
        return 0;
    }
    PyObject *result;
    int r = attempt(op, &result);
    if (r == 0) {
        return 0; /* spurious wakeup: keep waiting */
    }
    if (r < 0 && (PyErr_ExceptionMatches(PyExc_SystemExit) ||
                  PyErr_ExceptionMatches(PyExc_KeyboardInterrupt))) {
        return -1;
    }
    if (finish(op, r > 0 ? result : NULL) < 0) {
        PyErr_WriteUnraisable(obj);
    }
    return 0;
}

/* ---- starting an operation ---- */

/* TypeError for an ssl.SSLSocket, as asyncio.  A socket.socket itself is
 * none (SSLSocket derives from it); for another type, ssl is only consulted
 * if something imported it already: otherwise no socket can be an
 * SSLSocket. */
static int
check_plain_socket(cio_state *st, PyObject *sock)
{
    if (Py_IS_TYPE(sock, (PyTypeObject *)st->socket_socket)) {
        return 0;
    }
    PyObject *name = PyUnicode_FromString("ssl");
    if (name == NULL) {
        return -1;
    }
    PyObject *ssl = PyImport_GetModule(name);
    Py_DECREF(name);
    if (ssl == NULL) {
        return PyErr_Occurred() ? -1 : 0;
    }
    PyObject *cls = PyObject_GetAttrString(ssl, "SSLSocket");
    Py_DECREF(ssl);
    if (cls == NULL) {
        PyErr_Clear();
        return 0;
    }
    int is_ssl = PyObject_IsInstance(sock, cls);
    Py_DECREF(cls);
    if (is_ssl < 0) {
        return -1;
    }
    if (is_ssl) {
        PyErr_SetString(PyExc_TypeError, "Socket cannot be of type SSLSocket");
        return -1;
    }
    return 0;
}

static int
check_socket(LoopObj *loop, PyObject *sock)
{
    if (cio_loop_check_closed(loop) < 0 || check_plain_socket(loop->st, sock) < 0) {
        return -1;
    }
    if (loop->debug) {
        PyObject *timeout = PyObject_CallMethod(sock, "gettimeout", NULL);
        if (timeout == NULL) {
            return -1;
        }
        int blocking = timeout != Py_None && PyFloat_AsDouble(timeout) != 0.0;
        blocking = blocking || timeout == Py_None;
        Py_DECREF(timeout);
        if (blocking) {
            PyErr_SetString(PyExc_ValueError, "the socket must be non-blocking");
            return -1;
        }
    }
    return 0;
}

/* Starts an operation: a future that is done already if the syscall went
 * through, or pending with the op watching the fd. */
static PyObject *
start(SockOpObj *op)
{
    LoopObj *loop = op->loop;
    op->future = cio_future_new(op->st, (PyObject *)loop);
    if (op->future == NULL) {
        return NULL;
    }
    PyObject *result;
    int r = attempt(op, &result);
    if (r != 0) {
        if (r < 0 && (PyErr_ExceptionMatches(PyExc_SystemExit) ||
                      PyErr_ExceptionMatches(PyExc_KeyboardInterrupt))) {
            return NULL;
        }
        if (finish(op, r > 0 ? result : NULL) < 0) {
            return NULL;
        }
        return Py_NewRef(op->future);
    }
    if (op->fd < 0) {
        /* A socket-like object without an fd whose method would block: the
         * error stock's selector gives when asked to watch it. */
        PyErr_SetString(PyExc_ValueError, "Invalid file descriptor: -1");
        return NULL;
    }
    if (cio_loop_ensure_fd_no_transport(loop, op->fd) < 0) {
        return NULL;
    }
    PyObject *old;
    uint16_t old_tag;
    if (cio_loop_watch(loop, op->fd, op->which, (PyObject *)op, CIO_W_SOCKOP, &old, &old_tag) < 0) {
        return NULL;
    }
    op->watching = 1;
    if (old != NULL) {
        if (old_tag == CIO_W_SOCKOP) {
            ((SockOpObj *)old)->watching = 0;
        }
        else if (old_tag == CIO_W_HANDLE && cio_handle_cancel((HandleObj *)old) < 0) {
            Py_DECREF(old);
            return NULL;
        }
        Py_DECREF(old);
    }
    if (cio_future_add_callback((FutureObj *)op->future, (PyObject *)op, NULL, CIO_CB_SOCKOP) < 0) {
        stop_watching(op);
        return NULL;
    }
    return Py_NewRef(op->future);
}

/* The method of the socket object that stock asyncio calls for each op: an
 * object without it fails with the AttributeError stock gives, before any
 * other argument is looked at.  sendfile calls none (os.sendfile() on the
 * fd; send() only in its fallback). */
static const char *const op_methods[] = {
    [OP_RECV] = "recv",         [OP_RECV_INTO] = "recv_into",
    [OP_RECVFROM] = "recvfrom", [OP_RECVFROM_INTO] = "recvfrom_into",
    [OP_SENDALL] = "send",      [OP_SENDTO] = "sendto",
    [OP_ACCEPT] = "accept",     [OP_CONNECT] = "connect",
    [OP_SENDFILE] = NULL,
};

static int
check_has_method(cio_state *st, PyObject *sock, int kind)
{
    if (op_methods[kind] == NULL || PyObject_TypeCheck(sock, (PyTypeObject *)st->socket_socket)) {
        return 0;
    }
    PyObject *meth = PyObject_GetAttrString(sock, op_methods[kind]);
    if (meth == NULL) {
        return -1;
    }
    Py_DECREF(meth);
    return 0;
}

/* Sets *fd to the socket's fd, or to -1 for a closed (or detached) socket:
 * the op's first syscall on -1 then fails with EBADF, after the op's other
 * arguments were checked, as a socket method checks its arguments before
 * its syscall. */
static int
socket_fd(cio_state *st, PyObject *sock, int *fd)
{
    PyObject *res = PyObject_CallMethodNoArgs(sock, st->str_fileno);
    if (res == NULL) {
        return -1;
    }
    long n = PyLong_AsLong(res);
    Py_DECREF(res);
    if (n == -1 && PyErr_Occurred()) {
        return -1;
    }
    *fd = n < 0 || n > INT_MAX ? -1 : (int)n;
    return 0;
}

static SockOpObj *
new_op(LoopObj *loop, PyObject *sock, int kind, int which)
{
    if (check_socket(loop, sock) < 0 || check_has_method(loop->st, sock, kind) < 0) {
        return NULL;
    }
    int fd;
    if (socket_fd(loop->st, sock, &fd) < 0) {
        return NULL;
    }
    SockOpObj *op = PyObject_GC_New(SockOpObj, loop->st->SockOpType);
    if (op == NULL) {
        return NULL;
    }
    op->st = loop->st;
    op->loop = (LoopObj *)Py_NewRef(loop);
    op->sock = Py_NewRef(sock);
    op->future = op->data = op->addr = op->size = NULL;
    op->n = op->offset = 0;
    op->file_pos = 0;
    op->in_fd = -1;
    op->fd = fd;
    op->kind = kind;
    op->which = which;
    op->has_view = 0;
    op->watching = 0;
    op->started = 0;
    PyObject_GC_Track(op);
    return op;
}

static int
get_view(SockOpObj *op, PyObject *data, int writable)
{
    if (PyObject_GetBuffer(data, &op->view, writable ? PyBUF_WRITABLE : PyBUF_SIMPLE) < 0) {
        if (writable) {
            /* The TypeError socket.recv_into() gives for any object it cannot
             * write into (bytes, a released memoryview). */
            PyErr_Clear();
            PyErr_Format(PyExc_TypeError,
                         "recv_into() argument 'buffer' must be read-write bytes-like "
                         "object, not %.200s",
                         Py_TYPE(data)->tp_name);
        }
        return -1;
    }
    op->has_view = 1;
    op->data = Py_NewRef(data);
    return 0;
}

static PyObject *
run_op(SockOpObj *op)
{
    if (op == NULL) {
        return NULL;
    }
    PyObject *fut = start(op);
    Py_DECREF(op);
    return fut;
}

static int
get_size(PyObject *obj, Py_ssize_t *n)
{
    *n = PyNumber_AsSsize_t(obj, PyExc_OverflowError);
    if (*n == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (*n < 0) {
        PyErr_SetString(PyExc_ValueError, "negative buffersize in recv");
        return -1;
    }
    return 0;
}

static PyObject *
Loop__sock_recv(LoopObj *loop, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "sock_recv() takes 2 arguments (sock, n)");
        return NULL;
    }
    SockOpObj *op = new_op(loop, args[0], OP_RECV, CIO_READ);
    if (op != NULL && get_size(args[1], &op->n) < 0) {
        Py_CLEAR(op);
    }
    return run_op(op);
}

static PyObject *
Loop__sock_recv_into(LoopObj *loop, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "sock_recv_into() takes 2 arguments (sock, buf)");
        return NULL;
    }
    SockOpObj *op = new_op(loop, args[0], OP_RECV_INTO, CIO_READ);
    if (op != NULL && get_view(op, args[1], 1) < 0) {
        Py_CLEAR(op);
    }
    return run_op(op);
}

static PyObject *
Loop__sock_recvfrom(LoopObj *loop, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "sock_recvfrom() takes 2 arguments (sock, bufsize)");
        return NULL;
    }
    SockOpObj *op = new_op(loop, args[0], OP_RECVFROM, CIO_READ);
    if (op != NULL) {
        op->size = Py_NewRef(args[1]);
    }
    return run_op(op);
}

static PyObject *
Loop__sock_recvfrom_into(LoopObj *loop, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError,
                        "sock_recvfrom_into() takes 3 arguments (sock, buf, nbytes)");
        return NULL;
    }
    SockOpObj *op = new_op(loop, args[0], OP_RECVFROM_INTO, CIO_READ);
    if (op != NULL) {
        op->data = Py_NewRef(args[1]);
        op->size = Py_NewRef(args[2]);
    }
    return run_op(op);
}

static PyObject *
Loop__sock_sendall(LoopObj *loop, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "sock_sendall() takes 2 arguments (sock, data)");
        return NULL;
    }
    SockOpObj *op = new_op(loop, args[0], OP_SENDALL, CIO_WRITE);
    if (op != NULL && get_view(op, args[1], 0) < 0) {
        Py_CLEAR(op);
    }
    return run_op(op);
}

static PyObject *
Loop__sock_sendto(LoopObj *loop, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "sock_sendto() takes 3 arguments (sock, data, address)");
        return NULL;
    }
    SockOpObj *op = new_op(loop, args[0], OP_SENDTO, CIO_WRITE);
    if (op != NULL) {
        op->data = Py_NewRef(args[1]);
        op->addr = Py_NewRef(args[2]);
    }
    return run_op(op);
}

static PyObject *
Loop__sock_accept(LoopObj *loop, PyObject *sock)
{
    return run_op(new_op(loop, sock, OP_ACCEPT, CIO_READ));
}

static PyObject *
Loop__sock_connect(LoopObj *loop, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "sock_connect() takes 2 arguments (sock, address)");
        return NULL;
    }
    SockOpObj *op = new_op(loop, args[0], OP_CONNECT, CIO_WRITE);
    if (op != NULL) {
        op->addr = Py_NewRef(args[1]);
    }
    return run_op(op);
}

/* _sock_sendfile(sock, in_fd, offset, count): the op itself, whose future
 * gives the bytes sent and whose `sent` counts them as they go (also after
 * a failure or a cancellation).  count 0 sends up to the file's end. */
static PyObject *
Loop__sock_sendfile(LoopObj *loop, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError,
                        "_sock_sendfile() takes 4 arguments (sock, in_fd, offset, count)");
        return NULL;
    }
    long in_fd = PyLong_AsLong(args[1]);
    long long file_pos = in_fd == -1 && PyErr_Occurred() ? -1 : PyLong_AsLongLong(args[2]);
    Py_ssize_t count = file_pos == -1 && PyErr_Occurred() ? -1 : PyLong_AsSsize_t(args[3]);
    if (count == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (in_fd < 0 || in_fd > INT_MAX || file_pos < 0 || count < 0) {
        PyErr_SetString(PyExc_ValueError, "negative fd, offset or count");
        return NULL;
    }
    SockOpObj *op = new_op(loop, args[0], OP_SENDFILE, CIO_WRITE);
    if (op == NULL) {
        return NULL;
    }
    op->in_fd = (int)in_fd;
    op->file_pos = file_pos;
    op->n = count;
    PyObject *fut = start(op);
    if (fut == NULL) {
        Py_DECREF(op);
        return NULL;
    }
    Py_DECREF(fut);
    return (PyObject *)op;
}

/* ---- type ---- */

static PyObject *
SockOp_get_future(SockOpObj *op, void *Py_UNUSED(closure))
{
    return Py_NewRef(op->future ? op->future : Py_None);
}

static PyObject *
SockOp_get_sent(SockOpObj *op, void *Py_UNUSED(closure))
{
    return PyLong_FromSsize_t(op->offset);
}

static PyGetSetDef SockOp_getset[] = {
    {"future", (getter)SockOp_get_future, NULL, "The operation's future.", NULL},
    {"sent", (getter)SockOp_get_sent, NULL, "Bytes sent so far (sendall, sendfile).", NULL},
    {NULL},
};

static int
SockOp_traverse(SockOpObj *op, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(op));
    Py_VISIT(op->loop);
    Py_VISIT(op->sock);
    Py_VISIT(op->future);
    Py_VISIT(op->data);
    Py_VISIT(op->addr);
    Py_VISIT(op->size);
    return 0;
}

static int
SockOp_clear(SockOpObj *op)
{
    release_view(op);
    Py_CLEAR(op->loop);
    Py_CLEAR(op->sock);
    Py_CLEAR(op->future);
    Py_CLEAR(op->data);
    Py_CLEAR(op->addr);
    Py_CLEAR(op->size);
    return 0;
}

static void
SockOp_dealloc(SockOpObj *op)
{
    PyTypeObject *tp = Py_TYPE(op);
    PyObject_GC_UnTrack(op);
    SockOp_clear(op);
    tp->tp_free(op);
    Py_DECREF(tp);
}

static PyObject *
SockOp_repr(SockOpObj *op)
{
    static const char *names[] = {"recv",   "recv_into", "recvfrom", "recvfrom_into", "sendall",
                                  "sendto", "accept",    "connect",  "sendfile"};
    return PyUnicode_FromFormat("<sock_%s fd=%d%s>", names[op->kind], op->fd,
                                op->watching ? " waiting" : "");
}

static PyType_Slot SockOp_slots[] = {
    {Py_tp_doc, "A sock_*() operation: the fd's watcher until its syscall goes through."},
    {Py_tp_dealloc, SockOp_dealloc},
    {Py_tp_traverse, SockOp_traverse},
    {Py_tp_clear, SockOp_clear},
    {Py_tp_repr, SockOp_repr},
    {Py_tp_getset, SockOp_getset},
    {0, NULL},
};

static PyType_Spec SockOp_spec = {
    .name = "casyncio._casyncio.SockOp",
    .basicsize = sizeof(SockOpObj),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = SockOp_slots,
};

int
cio_sockops_init(PyObject *module, cio_state *st)
{
    st->SockOpType = (PyTypeObject *)PyType_FromModuleAndSpec(module, &SockOp_spec, NULL);
    return st->SockOpType ? 0 : -1;
}

/* An address as the socket module gives it (recvfrom(), accept()), for
 * AF_INET ((host, port)), AF_INET6 ((host, port, flowinfo, scope_id)) and
 * AF_UNIX (a str path, bytes for Linux's abstract names; None, as for any
 * family, when the kernel gives no address). */
PyObject *
cio_sockaddr_to_python(const struct sockaddr_storage *ss, socklen_t len)
{
    char host[INET6_ADDRSTRLEN];
    if (len == 0) {
        Py_RETURN_NONE;
    }
    switch (ss->ss_family) {
    case AF_INET: {
        /* Dotted decimal by hand: glibc's inet_ntop() goes through sprintf(),
         * a fair part of a small datagram's cost. */
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        const unsigned char *b = (const unsigned char *)&a->sin_addr;
        char *p = host;
        for (int i = 0; i < 4; i++) {
            if (b[i] >= 100) {
                *p++ = (char)('0' + b[i] / 100);
            }
            if (b[i] >= 10) {
                *p++ = (char)('0' + b[i] / 10 % 10);
            }
            *p++ = (char)('0' + b[i] % 10);
            *p++ = '.';
        }
        return Py_BuildValue("(s#i)", host, (Py_ssize_t)(p - host - 1), ntohs(a->sin_port));
    }
    case AF_INET6: {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
        return Py_BuildValue("(siII)", host, ntohs(a->sin6_port),
                             (unsigned int)ntohl(a->sin6_flowinfo), (unsigned int)a->sin6_scope_id);
    }
    case AF_UNIX: {
        const struct sockaddr_un *a = (const struct sockaddr_un *)ss;
        size_t offset = offsetof(struct sockaddr_un, sun_path);
        size_t n = (size_t)len > offset ? (size_t)len - offset : 0;
        if (n > 0 && a->sun_path[0] == '\0') {
            return PyBytes_FromStringAndSize(a->sun_path, (Py_ssize_t)n);
        }
        return PyUnicode_DecodeFSDefaultAndSize(a->sun_path, (Py_ssize_t)strnlen(a->sun_path, n));
    }
    default:
        PyErr_Format(PyExc_RuntimeError, "unexpected address family %d", (int)ss->ss_family);
        return NULL;
    }
}

/* One of a socket.socket's ints (0 family, 1 type, 2 proto) as
 * _socket.socket keeps it, under the properties that make enums of them;
 * 0, or -1 with an error set. */
int
cio_socket_field(cio_state *st, PyObject *sock, Py_ssize_t i, long *out)
{
    PyObject *descr = PyTuple_GET_ITEM(st->socket_fields, i);
    PyObject *value = Py_TYPE(descr)->tp_descr_get(descr, sock, NULL);
    if (value == NULL) {
        return -1;
    }
    *out = PyLong_AsLong(value);
    Py_DECREF(value);
    return (*out == -1 && PyErr_Occurred()) ? -1 : 0;
}

/* loop._accept_plain(listener): what listener.accept() then
 * conn.setblocking(False) give, (conn, address), for a plain socket.socket
 * listener, in one accept4() with SOCK_NONBLOCK: no ioctl() after it, and
 * no enums built from the listener's family and type.  Raises as
 * socket.accept() does (BlockingIOError when no connection waits). */
static PyObject *
Loop__accept_plain(LoopObj *loop, PyObject *listener)
{
    cio_state *st = loop->st;
    long family, type, proto;
    int fd = cio_fileobj_to_fd(st, listener);
    if (fd < 0 || cio_socket_field(st, listener, 0, &family) < 0 ||
        cio_socket_field(st, listener, 1, &type) < 0 ||
        cio_socket_field(st, listener, 2, &proto) < 0) {
        return NULL;
    }
    struct sockaddr_storage ss;
    socklen_t len;
    int conn_fd;
    do {
        memset(&ss, 0, sizeof(ss));
        len = sizeof(ss);
        conn_fd = accept4(fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    } while (conn_fd < 0 && errno == EINTR && PyErr_CheckSignals() == 0);
    if (conn_fd < 0) {
        return PyErr_Occurred() ? NULL : PyErr_SetFromErrno(PyExc_OSError);
    }
    PyObject *addr = cio_sockaddr_to_python(&ss, len);
    /* The type's SOCK_NONBLOCK tells the socket object it is non-blocking
     * (timeout 0) without another syscall; sock.type leaves the flag out. */
    PyObject *args = addr ? Py_BuildValue("(lll)", family, type | SOCK_NONBLOCK, proto) : NULL;
    PyObject *kwargs = args ? Py_BuildValue("{s:i}", "fileno", conn_fd) : NULL;
    PyObject *conn = kwargs ? PyObject_Call(st->socket_socket, args, kwargs) : NULL;
    Py_XDECREF(args);
    Py_XDECREF(kwargs);
    if (conn == NULL) {
        close(conn_fd); /* no socket object owns it */
        Py_XDECREF(addr);
        return NULL;
    }
    PyObject *pair = PyTuple_Pack(2, conn, addr);
    Py_DECREF(conn); /* on failure, its finalizer closes conn_fd */
    Py_DECREF(addr);
    return pair;
}

#define FAST(name, fn, doc) {name, (PyCFunction)(void (*)(void))fn, METH_FASTCALL, doc}

PyMethodDef cio_sockops_loop_methods[] = {
    FAST("_sock_recv", Loop__sock_recv, "Future of sock.recv(n), done if data was there."),
    FAST("_sock_recv_into", Loop__sock_recv_into, NULL),
    FAST("_sock_recvfrom", Loop__sock_recvfrom, NULL),
    FAST("_sock_recvfrom_into", Loop__sock_recvfrom_into, NULL),
    FAST("_sock_sendall", Loop__sock_sendall, NULL),
    FAST("_sock_sendto", Loop__sock_sendto, NULL),
    FAST("_sock_connect", Loop__sock_connect, NULL),
    FAST("_sock_sendfile", Loop__sock_sendfile, NULL),
    {"_sock_accept", (PyCFunction)Loop__sock_accept, METH_O, NULL},
    {"_accept_plain", (PyCFunction)Loop__accept_plain, METH_O,
     "listener.accept() of a plain socket.socket, the connection non-blocking from accept4()."},
    {NULL, NULL},
};
