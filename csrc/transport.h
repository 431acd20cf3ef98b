/* transport.h: what the stream and datagram transports share.
 *
 * Both are C types whose Python base is asyncio's own transport class
 * (asyncio.Transport, asyncio.DatagramTransport), so isinstance() checks in
 * user code and libraries hold.  Those bases are Python classes with
 * __slots__ = ('_extra',): their instances are a PyObject header followed
 * by that one slot, so our structs start with the same two fields and the
 * inherited `_extra` descriptor and get_extra_info() find the dict where
 * they expect it (checked against the base's __basicsize__ at import).
 *
 * Lifecycle, as asyncio's selector transports: made with the socket and
 * protocol, connection_made() and then reading start on the next loop
 * iterations; close() stops reading and, once the write buffer is empty,
 * schedules connection_lost(); abort() and fatal errors drop the buffer and
 * do the same at once.  `conn_lost` counts writes after the end, like
 * asyncio, to warn about programs that keep writing to a dead peer. */
#ifndef CIO_TRANSPORT_H
#define CIO_TRANSPORT_H

#include "casyncio.h"

#include <errno.h>

typedef struct {
    PyObject_HEAD
    PyObject *extra; /* asyncio.BaseTransport's `_extra` slot: keep first */
    cio_state *st;
    LoopObj *loop;  /* NULL once connection_lost() has run */
    PyObject *sock; /* NULL once the socket is closed */
    PyObject *protocol;
    PyObject *server; /* asyncio Server to detach from, or NULL */
    PyObject *dict;
    PyObject *weakreflist;
    /* The contexts read (ctx[CIO_READ]) and write events run in: copies of
     * the one current when watching for them began, as asyncio's
     * add_reader()/add_writer() Handles copy theirs; NULL before that. */
    PyObject *ctx[2];
    /* The one context every event of the transport runs in, when it was
     * given one (3.15's stream transports, gh-140947), else NULL. */
    PyObject *context;
    /* Flow control marks, as sizes (clamped), and as the objects
     * set_write_buffer_limits() got or made, (low, high), NULL for the
     * defaults: get_write_buffer_limits() gives those back, as asyncio's. */
    Py_ssize_t high_water;
    Py_ssize_t low_water;
    PyObject *limits;
    int fd;
    int conn_lost;
    char closing;
    char paused;          /* reading paused by pause_reading() */
    char protocol_paused; /* we called protocol.pause_writing() */
    char protocol_connected;
    char reading; /* the fd's reader is this transport */
    char writing; /* the fd's writer is this transport */
    char corked;  /* holds writes of the running callback (see cio_loop_cork) */
    uint16_t tag; /* CIO_W_STREAM or CIO_W_DGRAM */
    const struct cio_transport_ops *ops;
} TransportObj;

/* What differs between transports, for the shared code. */
typedef struct cio_transport_ops {
    Py_ssize_t (*buffer_size)(TransportObj *t);
    void (*buffer_clear)(TransportObj *t);
    /* Called once the protocol has its connection_lost(), or NULL.
     * Returns 0 or -1. */
    int (*connection_lost)(TransportObj *t);
    /* Sends the writes held while `corked`, and clears it; NULL for a
     * transport that never corks.  Returns 0 or -1. */
    int (*uncork)(TransportObj *t);
} cio_transport_ops;

/* The socket object, to call its methods (borrowed), or NULL with
 * OSError(EBADF) once it is gone: closed by connection_lost(), or by the
 * finalizer the GC may run before a coroutine's `finally` that still uses
 * the transport (stock's closed socket raises the same). */
static inline PyObject *
cio_transport_sock(TransportObj *t)
{
    if (t->sock == NULL) {
        errno = EBADF;
        PyErr_SetFromErrno(PyExc_OSError);
    }
    return t->sock;
}

/* Sets up the common fields: extra info (socket, sockname, peername), fd
 * ownership, protocol, server attachment.  Returns 0 or -1. */
int cio_transport_setup(TransportObj *t, cio_state *st, LoopObj *loop, PyObject *sock,
                        PyObject *protocol, PyObject *extra, PyObject *server);
/* Schedules connection_made(), the start of reading, and the waiter. */
int cio_transport_start(TransportObj *t, PyObject *waiter);

/* asyncio's transports call their socket's methods (recv(), send()...);
 * ours make the system calls on its fd.  The two differ only for a
 * socket.socket subclass that overrides those methods (to count traffic,
 * say), or an object that is no socket.socket but has such methods (a
 * wrapper, a mock), whose transport then calls them.  Whether sock's class
 * overrides one of `names` (NULL-terminated), or sock is no socket.socket:
 * 1, 0, or -1 with an error set. */
int cio_socket_overrides(cio_state *st, PyObject *sock, const char *const *names);

/* Starts or stops watching the fd for reading / writing. */
int cio_transport_watch(TransportObj *t, int which, int on);
/* Runs io(t, which) -- a transport's handling of one readiness direction --
 * in the contextvars context of that direction's events (a copy of the
 * current one if watching began without one).  Returns io's result, or -1
 * if the context could not be entered. */
int cio_transport_run_io(TransportObj *t, int which, int (*io)(TransportObj *, int));

/* Write flow control: pause/resume the protocol around the water marks,
 * given the current buffer size. */
int cio_transport_maybe_pause(TransportObj *t, Py_ssize_t size);
int cio_transport_maybe_resume(TransportObj *t, Py_ssize_t size);

/* Reports an error that ends the connection; consumes the current
 * exception.  Returns 0, or -1 for SystemExit/KeyboardInterrupt. */
int cio_transport_fatal_error(TransportObj *t, const char *message);
/* Ends the connection now (exc may be NULL).  Returns 0 or -1. */
int cio_transport_force_close(TransportObj *t, PyObject *exc);
/* Schedules connection_lost(exc) through call_soon(). */
int cio_transport_schedule_connection_lost(TransportObj *t, PyObject *exc);
/* Runs protocol.connection_lost(exc) and releases the socket. */
int cio_transport_connection_lost(TransportObj *t, PyObject *exc);

/* Calls protocol.<name>(args...), name being one of the module's interned
 * strings (st->str_pause_writing...); on an exception other than SystemExit
 * and KeyboardInterrupt, reports it as fatal with `message` (or, when
 * message is NULL, through the exception handler without closing).
 * Returns 0, or -1 only for SystemExit/KeyboardInterrupt. */
int cio_transport_call_protocol(TransportObj *t, PyObject *name, PyObject *const *args,
                                size_t nargs, const char *message, PyObject **result);

int cio_transport_traverse(TransportObj *t, visitproc visit, void *arg);
int cio_transport_clear(TransportObj *t);
void cio_transport_finalize(TransportObj *t);
PyObject *cio_transport_repr(TransportObj *t, Py_ssize_t bufsize);
/* Methods every transport has, implemented in transport.c. */
PyObject *cio_transport_close(TransportObj *t, PyObject *ignored);
PyObject *cio_transport_abort(TransportObj *t, PyObject *ignored);
PyObject *cio_transport_force_close_meth(TransportObj *t, PyObject *exc);
PyObject *cio_transport_is_closing(TransportObj *t, PyObject *ignored);
PyObject *cio_transport_get_protocol(TransportObj *t, PyObject *ignored);
PyObject *cio_transport_pause_reading(TransportObj *t, PyObject *ignored);
PyObject *cio_transport_resume_reading(TransportObj *t, PyObject *ignored);
PyObject *cio_transport_is_reading(TransportObj *t, PyObject *ignored);
PyObject *cio_transport_get_write_buffer_size(TransportObj *t, PyObject *ignored);
PyObject *cio_transport_get_write_buffer_limits(TransportObj *t, PyObject *ignored);
PyObject *cio_transport_set_write_buffer_limits(TransportObj *t, PyObject *args, PyObject *kwds);
PyObject *cio_transport_call_connection_lost_meth(TransportObj *t, PyObject *exc);
PyObject *cio_transport_start_reading_meth(TransportObj *t, PyObject *ignored);

#define CIO_TRANSPORT_METHODS                                                                    \
    {"close", (PyCFunction)cio_transport_close, METH_NOARGS,                                     \
     "Close the transport once the write buffer is flushed."},                                   \
        {"abort", (PyCFunction)cio_transport_abort, METH_NOARGS,                                 \
         "Close the transport at once, dropping buffered data."},                                \
        {"_force_close", (PyCFunction)cio_transport_force_close_meth, METH_O, NULL},             \
        {"is_closing", (PyCFunction)cio_transport_is_closing, METH_NOARGS, NULL},                \
        {"get_protocol", (PyCFunction)cio_transport_get_protocol, METH_NOARGS, NULL},            \
        {"pause_reading", (PyCFunction)cio_transport_pause_reading, METH_NOARGS, NULL},          \
        {"resume_reading", (PyCFunction)cio_transport_resume_reading, METH_NOARGS, NULL},        \
        {"is_reading", (PyCFunction)cio_transport_is_reading, METH_NOARGS, NULL},                \
        {"get_write_buffer_size", (PyCFunction)cio_transport_get_write_buffer_size, METH_NOARGS, \
         NULL},                                                                                  \
        {"get_write_buffer_limits", (PyCFunction)cio_transport_get_write_buffer_limits,          \
         METH_NOARGS, NULL},                                                                     \
        {"set_write_buffer_limits",                                                              \
         (PyCFunction)(void (*)(void))cio_transport_set_write_buffer_limits,                     \
         METH_VARARGS | METH_KEYWORDS, NULL},                                                    \
        {"_call_connection_lost", (PyCFunction)cio_transport_call_connection_lost_meth, METH_O,  \
         NULL},                                                                                  \
    {                                                                                            \
        "_start_reading", (PyCFunction)cio_transport_start_reading_meth, METH_NOARGS, NULL       \
    }

#define CIO_TRANSPORT_MEMBERS                                                                  \
    {"_sock_fd", T_INT, offsetof(TransportObj, fd), READONLY, NULL},                           \
        {"_conn_lost", T_INT, offsetof(TransportObj, conn_lost), READONLY, NULL},              \
        {"_closing", T_BOOL, offsetof(TransportObj, closing), READONLY, NULL},                 \
        {"_paused", T_BOOL, offsetof(TransportObj, paused), READONLY, NULL},                   \
        {"_protocol_paused", T_BOOL, offsetof(TransportObj, protocol_paused), READONLY, NULL}, \
        {"_sock", T_OBJECT, offsetof(TransportObj, sock), READONLY, NULL},                     \
        {"_protocol", T_OBJECT, offsetof(TransportObj, protocol), READONLY, NULL},             \
        {"_loop", T_OBJECT, offsetof(TransportObj, loop), READONLY, NULL},                     \
        {"_server", T_OBJECT, offsetof(TransportObj, server), READONLY, NULL},                 \
        {"_high_water", T_PYSSIZET, offsetof(TransportObj, high_water), READONLY, NULL},       \
        {"_low_water", T_PYSSIZET, offsetof(TransportObj, low_water), READONLY, NULL},         \
        {"__dictoffset__", T_PYSSIZET, offsetof(TransportObj, dict), READONLY, NULL},          \
    {                                                                                          \
        "__weaklistoffset__", T_PYSSIZET, offsetof(TransportObj, weakreflist), READONLY, NULL  \
    }

/* Type creation with an asyncio transport class as the Python base. */
/* base_names: NULL-terminated names of classes in asyncio.transports. */
PyTypeObject *cio_transport_make_type(PyObject *module, PyType_Spec *spec,
                                      const char *const *base_names);

#endif
