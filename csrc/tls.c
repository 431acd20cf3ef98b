/* tls.c: the steady state of casyncio's TLS protocol, in C.
 *
 * casyncio/_tls.py's TLSProtocol is the running Python's own
 * asyncio.sslproto.SSLProtocol with TLSProtocolBase, from this file, first
 * among its bases; its app transport likewise puts TLSAppTransportBase
 * before asyncio's _SSLProtocolTransport.  The methods here are the ones
 * every record passes through while a connection is up:
 *
 *   read:  get_buffer, buffer_updated, _do_read, _do_read__copied,
 *          _do_read__buffered;
 *   write: the app transport's write, _write_appdata, _do_write,
 *          _process_outgoing;
 *
 * and the flow-control checks that end both.  Each does what asyncio's
 * method of the same name does, and hands the rare cases to that method
 * (SSLProtocol's own, called on the same object): a state other than
 * WRAPPED, a flow-control mark crossed, a read buffer that must grow.  The
 * handshake, the shutdown and everything else stay asyncio's Python.
 *
 * What is saved is the Python frame of each step (about eight per record
 * read and six per record written), not the work: the protocol's fields
 * stay in the instance, where asyncio's methods read and write them, and
 * are looked up here by name each time (nothing is cached in C, so a field
 * asyncio changes is seen at once).  The ssl calls (SSLObject.read/write/
 * pending, MemoryBIO.read/write) are made as asyncio makes them. */

#include "casyncio.h"

/* The slots of st->tls: what _tls_setup() is handed, then the names. */
enum {
    T_PROTOCOL_TYPE,  /* TLSProtocolBase */
    T_TRANSPORT_TYPE, /* TLSAppTransportBase */
    T_STOCK,          /* asyncio.sslproto.SSLProtocol */
    T_WRAPPED,        /* SSLProtocolState members */
    T_FLUSHING,
    T_SHUTDOWN,
    T_UNWRAPPED,
    T_AGAIN,       /* sslproto.SSLAgainErrors: the errors that end a read */
    T_BYTES_TYPES, /* (bytes, bytearray, memoryview) */
    T_EMPTY,       /* b"" */
    T_FATAL_MSG,   /* 'Fatal error on SSL protocol' */
    T_BYTE_FORMAT, /* "B", memoryview.cast()'s format */
    T_FIRST_NAME,
    N_state = T_FIRST_NAME,
    N_ssl_buffer,
    N_ssl_buffer_view,
    N_max_size,
    N_incoming,
    N_outgoing,
    N_sslobj,
    N_transport,
    N_app_protocol,
    N_write_backlog,
    N_write_buffer_size,
    N_app_reading_paused,
    N_app_protocol_is_buffer,
    N_app_writing_paused,
    N_ssl_writing_paused,
    N_ssl_reading_paused,
    N_outgoing_high_water,
    N_outgoing_low_water,
    N_incoming_high_water,
    N_incoming_low_water,
    N_ssl_protocol,
    N_fatal_error,
    N_call_eof_received,
    N_start_shutdown,
    N_app_protocol_get_buffer,
    N_app_protocol_buffer_updated,
    N_loop,
    N_call_soon,
    N_do_read,
    N_cast,
    N_control_app_writing,
    N_control_ssl_reading,
    N_write_appdata,
    N_buffer_updated,
    N_get_buffer,
    N_read,
    N_write,
    N_pending,
    N_append,
    N_join,
    N_data_received,
    T_COUNT
};

_Static_assert(T_COUNT <= CIO_TLS_SLOTS, "raise CIO_TLS_SLOTS in casyncio.h");

static const char *const tls_names[T_COUNT - T_FIRST_NAME] = {
    "_state",
    "_ssl_buffer",
    "_ssl_buffer_view",
    "max_size",
    "_incoming",
    "_outgoing",
    "_sslobj",
    "_transport",
    "_app_protocol",
    "_write_backlog",
    "_write_buffer_size",
    "_app_reading_paused",
    "_app_protocol_is_buffer",
    "_app_writing_paused",
    "_ssl_writing_paused",
    "_ssl_reading_paused",
    "_outgoing_high_water",
    "_outgoing_low_water",
    "_incoming_high_water",
    "_incoming_low_water",
    "_ssl_protocol",
    "_fatal_error",
    "_call_eof_received",
    "_start_shutdown",
    "_app_protocol_get_buffer",
    "_app_protocol_buffer_updated",
    "_loop",
    "call_soon",
    "_do_read",
    "cast",
    "_control_app_writing",
    "_control_ssl_reading",
    "_write_appdata",
    "buffer_updated",
    "get_buffer",
    "read",
    "write",
    "pending",
    "append",
    "join",
    "data_received",
};

#define NAME(st, n) ((st)->tls[n])

static cio_state *
tls_state(PyTypeObject *defining_class)
{
    cio_state *st = PyType_GetModuleState(defining_class);
    if (st != NULL && st->tls[T_STOCK] == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "casyncio._casyncio._tls_setup() was not called");
        return NULL;
    }
    return st;
}

/* obj.<name> as truth: 1, 0, or -1 with an exception. */
static int
attr_truth(cio_state *st, PyObject *obj, int name)
{
    PyObject *v = PyObject_GetAttr(obj, NAME(st, name));
    if (v == NULL) {
        return -1;
    }
    int r = PyObject_IsTrue(v);
    Py_DECREF(v);
    return r;
}

/* Whether self._state is the state in slot `which`: 1, 0 or -1.  asyncio's
 * states are enum members, compared by identity. */
static int
state_is(cio_state *st, PyObject *self, int which)
{
    PyObject *state = PyObject_GetAttr(self, NAME(st, N_state));
    if (state == NULL) {
        return -1;
    }
    int r = state == st->tls[which];
    Py_DECREF(state);
    return r;
}

/* asyncio's SSLProtocol.<name>(self, *args), for the cases handed back. */
static PyObject *
call_stock(cio_state *st, PyObject *self, int name, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *stack[3] = {self, NULL, NULL};
    assert(nargs <= 2);
    for (Py_ssize_t i = 0; i < nargs; i++) {
        stack[i + 1] = args[i];
    }
    PyObject *func = PyObject_GetAttr(st->tls[T_STOCK], NAME(st, name));
    if (func == NULL) {
        return NULL;
    }
    PyObject *r = PyObject_Vectorcall(func, stack, (size_t)nargs + 1, NULL);
    Py_DECREF(func);
    return r;
}

static int
call_stock_void(cio_state *st, PyObject *self, int name)
{
    PyObject *r = call_stock(st, self, name, NULL, 0);
    Py_XDECREF(r);
    return r == NULL ? -1 : 0;
}

static int
call_method_void(cio_state *st, PyObject *obj, int name, PyObject *arg)
{
    PyObject *r = arg == NULL ? PyObject_CallMethodNoArgs(obj, NAME(st, name))
                              : PyObject_CallMethodOneArg(obj, NAME(st, name), arg);
    Py_XDECREF(r);
    return r == NULL ? -1 : 0;
}

/* The end of asyncio's `try: ... except Exception as ex:
 * self._fatal_error(ex, 'Fatal error on SSL protocol')`, entered with an
 * exception set: an Exception goes to _fatal_error() (returns 0), anything
 * else (KeyboardInterrupt, CancelledError...) stays raised (returns -1). */
static int
fatal_unless_base(cio_state *st, PyObject *self)
{
    if (!PyErr_ExceptionMatches(PyExc_Exception)) {
        return -1;
    }
    PyObject *exc = cio_err_take();
    /* As inside the except clause: what _fatal_error raises has exc as its
     * context. */
    PyObject *handled = PyErr_GetHandledException();
    PyErr_SetHandledException(exc);
    PyObject *r =
        PyObject_CallMethodObjArgs(self, NAME(st, N_fatal_error), exc, st->tls[T_FATAL_MSG], NULL);
    PyErr_SetHandledException(handled);
    Py_XDECREF(handled);
    Py_DECREF(exc);
    Py_XDECREF(r);
    return r == NULL ? -1 : 0;
}

/* Runs asyncio's _control_<what>() only when `size` has crossed the mark
 * that changes something: the high-water mark while not paused, the
 * low-water one while paused (otherwise it would do nothing). */
static int
control(cio_state *st, PyObject *self, PyObject *size, int paused_name, int high_name, int low_name,
        int stock_name)
{
    int paused = attr_truth(st, self, paused_name);
    if (paused < 0) {
        return -1;
    }
    PyObject *mark = PyObject_GetAttr(self, NAME(st, paused ? low_name : high_name));
    if (mark == NULL) {
        return -1;
    }
    int crossed = PyObject_RichCompareBool(size, mark, paused ? Py_LE : Py_GE);
    Py_DECREF(mark);
    if (crossed <= 0) {
        return crossed;
    }
    return call_stock_void(st, self, stock_name);
}

/* _control_app_writing(): the app is paused over the write marks of
 * _get_write_buffer_size(), the outgoing BIO plus the backlog. */
static int
control_app_writing(cio_state *st, PyObject *self)
{
    PyObject *outgoing = PyObject_GetAttr(self, NAME(st, N_outgoing));
    PyObject *pending = outgoing ? PyObject_GetAttr(outgoing, NAME(st, N_pending)) : NULL;
    Py_XDECREF(outgoing);
    PyObject *backlog = pending ? PyObject_GetAttr(self, NAME(st, N_write_buffer_size)) : NULL;
    PyObject *size = backlog ? PyNumber_Add(pending, backlog) : NULL;
    Py_XDECREF(pending);
    Py_XDECREF(backlog);
    if (size == NULL) {
        return -1;
    }
    int r = control(st, self, size, N_app_writing_paused, N_outgoing_high_water,
                    N_outgoing_low_water, N_control_app_writing);
    Py_DECREF(size);
    return r;
}

/* _control_ssl_reading(): the socket is paused over the read marks of the
 * incoming BIO. */
static int
control_ssl_reading(cio_state *st, PyObject *self)
{
    PyObject *incoming = PyObject_GetAttr(self, NAME(st, N_incoming));
    PyObject *size = incoming ? PyObject_GetAttr(incoming, NAME(st, N_pending)) : NULL;
    Py_XDECREF(incoming);
    if (size == NULL) {
        return -1;
    }
    int r = control(st, self, size, N_ssl_reading_paused, N_incoming_high_water,
                    N_incoming_low_water, N_control_ssl_reading);
    Py_DECREF(size);
    return r;
}

/* _process_outgoing(): what the SSLObject wrote goes to the socket
 * transport, unless it asked us to pause. */
static int
process_outgoing(cio_state *st, PyObject *self)
{
    int paused = attr_truth(st, self, N_ssl_writing_paused);
    if (paused < 0) {
        return -1;
    }
    if (!paused) {
        PyObject *outgoing = PyObject_GetAttr(self, NAME(st, N_outgoing));
        PyObject *data = outgoing ? PyObject_CallMethodNoArgs(outgoing, NAME(st, N_read)) : NULL;
        Py_XDECREF(outgoing);
        if (data == NULL) {
            return -1;
        }
        Py_ssize_t n = PyObject_Size(data);
        int r = n < 0 ? -1 : 0;
        if (n > 0) {
            PyObject *transport = PyObject_GetAttr(self, NAME(st, N_transport));
            r = transport ? call_method_void(st, transport, N_write, data) : -1;
            Py_XDECREF(transport);
        }
        Py_DECREF(data);
        if (r < 0) {
            return -1;
        }
    }
    return control_app_writing(st, self);
}

/* self._write_buffer_size += delta (or -= when `subtract`). */
static int
add_write_buffer_size(cio_state *st, PyObject *self, PyObject *delta, int subtract)
{
    PyObject *size = PyObject_GetAttr(self, NAME(st, N_write_buffer_size));
    if (size == NULL) {
        return -1;
    }
    PyObject *updated =
        subtract ? PyNumber_InPlaceSubtract(size, delta) : PyNumber_InPlaceAdd(size, delta);
    Py_DECREF(size);
    if (updated == NULL) {
        return -1;
    }
    int r = PyObject_SetAttr(self, NAME(st, N_write_buffer_size), updated);
    Py_DECREF(updated);
    return r;
}

/* _do_write(): the backlog (self._write_backlog, as the caller read it)
 * through SSLObject.write() until it is empty or the SSLObject wants to
 * read first, then _process_outgoing(). */
static int
write_backlog(cio_state *st, PyObject *self, PyObject *backlog)
{
    int r = 0;
    for (;;) {
        int more = PyObject_IsTrue(backlog);
        if (more <= 0) {
            r = more;
            break;
        }
        PyObject *data = PySequence_GetItem(backlog, 0);
        PyObject *sslobj = data ? PyObject_GetAttr(self, NAME(st, N_sslobj)) : NULL;
        PyObject *count =
            sslobj ? PyObject_CallMethodOneArg(sslobj, NAME(st, N_write), data) : NULL;
        Py_XDECREF(sslobj);
        if (count == NULL) {
            Py_XDECREF(data);
            r = -1;
            break;
        }
        Py_ssize_t data_len = PyObject_Size(data);
        int partial = data_len < 0 ? -1 : 0;
        if (partial == 0) {
            PyObject *len_obj = PyLong_FromSsize_t(data_len);
            partial = len_obj ? PyObject_RichCompareBool(count, len_obj, Py_LT) : -1;
            Py_XDECREF(len_obj);
        }
        if (partial > 0) {
            Py_ssize_t sent = PyNumber_AsSsize_t(count, PyExc_OverflowError);
            PyObject *rest = sent < 0 && PyErr_Occurred()
                                 ? NULL
                                 : PySequence_GetSlice(data, sent, PY_SSIZE_T_MAX);
            partial = rest ? PySequence_SetItem(backlog, 0, rest) : -1;
            Py_XDECREF(rest);
            if (partial == 0) {
                partial = add_write_buffer_size(st, self, count, 1);
            }
        }
        else if (partial == 0) {
            PyObject *len_obj = PyLong_FromSsize_t(data_len);
            partial = len_obj ? PySequence_DelItem(backlog, 0) : -1;
            if (partial == 0) {
                partial = add_write_buffer_size(st, self, len_obj, 1);
            }
            Py_XDECREF(len_obj);
        }
        Py_DECREF(count);
        Py_DECREF(data);
        if (partial < 0) {
            r = -1;
            break;
        }
    }
    if (r < 0) {
        if (!PyErr_ExceptionMatches(st->tls[T_AGAIN])) {
            return -1;
        }
        PyErr_Clear();
    }
    return process_outgoing(st, self);
}

static int
do_write(cio_state *st, PyObject *self)
{
    PyObject *backlog = PyObject_GetAttr(self, NAME(st, N_write_backlog));
    if (backlog == NULL) {
        return -1;
    }
    int r = write_backlog(st, self, backlog);
    Py_DECREF(backlog);
    return r;
}

/* One piece of _write_appdata()'s loop: onto the backlog, and counted. */
static int
append_appdata(cio_state *st, PyObject *self, PyObject *backlog, PyObject *data)
{
    if (call_method_void(st, backlog, N_append, data) < 0) {
        return -1;
    }
    Py_ssize_t n = PyObject_Size(data);
    PyObject *len_obj = n < 0 ? NULL : PyLong_FromSsize_t(n);
    int r = len_obj ? add_write_buffer_size(st, self, len_obj, 0) : -1;
    Py_XDECREF(len_obj);
    return r;
}

/* The loop of _write_appdata() over an iterable, which may run code
 * between pieces: the backlog is looked up for each, as asyncio does. */
static int
append_pieces(cio_state *st, PyObject *self, PyObject *pieces)
{
    PyObject *it = PyObject_GetIter(pieces);
    if (it == NULL) {
        return -1;
    }
    PyObject *data;
    while ((data = PyIter_Next(it)) != NULL) {
        PyObject *backlog = PyObject_GetAttr(self, NAME(st, N_write_backlog));
        int r = backlog ? append_appdata(st, self, backlog, data) : -1;
        Py_XDECREF(backlog);
        Py_DECREF(data);
        if (r < 0) {
            break;
        }
    }
    Py_DECREF(it);
    return PyErr_Occurred() ? -1 : 0;
}

/* _write_appdata(): pieces is an iterable, or NULL for the one piece
 * `one` (the app transport's write(), which has checked it is bytes,
 * bytearray or memoryview).  Appending one such piece runs no Python code,
 * so the state and the backlog read before it are still the current ones
 * after it; an iterable's pieces may change them, and both are read again,
 * as asyncio reads them. */
static int
write_appdata(cio_state *st, PyObject *self, PyObject *pieces, PyObject *one)
{
    PyObject *state = PyObject_GetAttr(self, NAME(st, N_state));
    if (state == NULL) {
        return -1;
    }
    int closed = state == st->tls[T_FLUSHING] || state == st->tls[T_SHUTDOWN] ||
                 state == st->tls[T_UNWRAPPED];
    int wrapped = state == st->tls[T_WRAPPED];
    Py_DECREF(state);
    if (closed) {
        /* Counted, and logged past a threshold, by asyncio. */
        PyObject *arg = pieces ? Py_NewRef(pieces) : PyTuple_Pack(1, one);
        PyObject *r = arg ? call_stock(st, self, N_write_appdata, &arg, 1) : NULL;
        Py_XDECREF(arg);
        Py_XDECREF(r);
        return r == NULL ? -1 : 0;
    }
    PyObject *backlog = NULL;
    if (pieces == NULL) {
        backlog = PyObject_GetAttr(self, NAME(st, N_write_backlog));
        if (backlog == NULL || append_appdata(st, self, backlog, one) < 0) {
            Py_XDECREF(backlog);
            return -1;
        }
    }
    else {
        if (append_pieces(st, self, pieces) < 0) {
            return -1;
        }
        wrapped = state_is(st, self, T_WRAPPED);
    }
    if (wrapped > 0) {
        int r = backlog ? write_backlog(st, self, backlog) : do_write(st, self);
        wrapped = r < 0 ? -1 : wrapped;
    }
    Py_XDECREF(backlog);
    if (wrapped < 0) {
        return fatal_unless_base(st, self);
    }
    return 0;
}

/* Whether a read now could only raise SSLWantReadError: the incoming BIO
 * is empty and the SSLObject holds no decrypted bytes.  (pending() is a
 * safeguard: OpenSSL holds decrypted bytes past a read only with read-ahead
 * on, which Python's ssl module leaves off.)  1, 0 or -1. */
static int
nothing_to_decrypt(cio_state *st, PyObject *incoming, PyObject *sslobj)
{
    int more = attr_truth(st, incoming, N_pending);
    if (more != 0) {
        return more < 0 ? -1 : 0;
    }
    PyObject *held = PyObject_CallMethodNoArgs(sslobj, NAME(st, N_pending));
    if (held == NULL) {
        return -1;
    }
    more = PyObject_IsTrue(held);
    Py_DECREF(held);
    return more < 0 ? -1 : !more;
}

/* The end of both reads: a read that returned 0 (or b"") was the peer's
 * close_notify. */
static int
read_closed(cio_state *st, PyObject *self)
{
    int r = call_method_void(st, self, N_call_eof_received, NULL);
    return r < 0 ? -1 : call_method_void(st, self, N_start_shutdown, NULL);
}

/* casyncio's _do_read__copied(): decrypts what the incoming BIO holds, in
 * reads of max_size, and gives it to the app in one data_received() call;
 * stops when nothing is left to decrypt rather than at the
 * SSLWantReadError asyncio's loop waits for (a record that has only partly
 * arrived still ends it that way).  A read that returns b"" is the peer's
 * close_notify. */
static int
read_copied(cio_state *st, PyObject *self)
{
    PyObject *sslobj = PyObject_GetAttr(self, NAME(st, N_sslobj));
    PyObject *incoming = sslobj ? PyObject_GetAttr(self, NAME(st, N_incoming)) : NULL;
    PyObject *read = incoming ? PyObject_GetAttr(sslobj, NAME(st, N_read)) : NULL;
    PyObject *max_size = read ? PyObject_GetAttr(self, NAME(st, N_max_size)) : NULL;
    PyObject *first = NULL, *more = NULL;
    int closed = 0, r = max_size ? 0 : -1;
    while (r == 0) {
        PyObject *chunk = PyObject_CallOneArg(read, max_size);
        if (chunk == NULL) {
            if (PyErr_ExceptionMatches(st->tls[T_AGAIN])) {
                PyErr_Clear();
            }
            else {
                r = -1;
            }
            break;
        }
        int got = PyObject_IsTrue(chunk);
        if (got <= 0) {
            Py_DECREF(chunk);
            closed = got == 0;
            r = got;
            break;
        }
        if (first == NULL) {
            first = chunk;
        }
        else {
            if (more == NULL && (more = PyList_New(0)) == NULL) {
                Py_DECREF(chunk);
                r = -1;
                break;
            }
            r = PyList_Append(more, chunk);
            Py_DECREF(chunk);
            if (r < 0) {
                break;
            }
        }
        int done = nothing_to_decrypt(st, incoming, sslobj);
        if (done != 0) {
            r = done < 0 ? -1 : 0;
            break;
        }
    }
    Py_XDECREF(sslobj);
    Py_XDECREF(incoming);
    Py_XDECREF(read);
    Py_XDECREF(max_size);
    if (r == 0 && first != NULL) {
        PyObject *data = Py_NewRef(first);
        if (more != NULL) {
            Py_SETREF(data,
                      PyList_Insert(more, 0, first) < 0
                          ? NULL
                          : PyObject_CallMethodOneArg(st->tls[T_EMPTY], NAME(st, N_join), more));
        }
        PyObject *app = data ? PyObject_GetAttr(self, NAME(st, N_app_protocol)) : NULL;
        r = app ? call_method_void(st, app, N_data_received, data) : -1;
        Py_XDECREF(app);
        Py_XDECREF(data);
    }
    Py_XDECREF(first);
    Py_XDECREF(more);
    return r == 0 && closed ? read_closed(st, self) : r;
}

/* sslobj.read(n, view): the count, or -1 with an exception. */
static Py_ssize_t
read_into(PyObject *read, Py_ssize_t n, PyObject *view)
{
    PyObject *n_obj = PyLong_FromSsize_t(n);
    if (n_obj == NULL) {
        return -1;
    }
    PyObject *args[2] = {n_obj, view};
    PyObject *count = PyObject_Vectorcall(read, args, 2, NULL);
    Py_DECREF(n_obj);
    if (count == NULL) {
        return -1;
    }
    Py_ssize_t c = PyLong_AsSsize_t(count);
    Py_DECREF(count);
    return c;
}

/* casyncio's _do_read__buffered(), for a BufferedProtocol app: decrypts
 * into the buffer the app's get_buffer() gives, until it is full or
 * nothing is left to decrypt, then tells the app with buffer_updated().
 * Reads go into a byte memoryview of the buffer and its tail slices, so an
 * app's bytearray keeps every byte (stock reads the next record into
 * buf[offset:], a copy of a bytearray: CPython gh-156275) and the count is
 * in bytes (stock counts len(buf): elements, for an array).  A full buffer
 * schedules another _do_read() for the rest, as asyncio's does. */
static int
read_buffered(cio_state *st, PyObject *self)
{
    /* buf = self._app_protocol_get_buffer(self._get_read_buffer_size()) */
    PyObject *incoming = PyObject_GetAttr(self, NAME(st, N_incoming));
    PyObject *size = incoming ? PyObject_GetAttr(incoming, NAME(st, N_pending)) : NULL;
    PyObject *buf =
        size ? PyObject_CallMethodOneArg(self, NAME(st, N_app_protocol_get_buffer), size) : NULL;
    Py_XDECREF(size);
    PyObject *whole = buf ? PyMemoryView_FromObject(buf) : NULL;
    Py_XDECREF(buf);
    PyObject *view =
        whole ? PyObject_CallMethodOneArg(whole, NAME(st, N_cast), st->tls[T_BYTE_FORMAT]) : NULL;
    Py_XDECREF(whole);
    PyObject *sslobj = view ? PyObject_GetAttr(self, NAME(st, N_sslobj)) : NULL;
    PyObject *read = sslobj ? PyObject_GetAttr(sslobj, NAME(st, N_read)) : NULL;
    Py_ssize_t wants = read ? PyObject_Size(view) : -1;
    Py_ssize_t filled = 0, count = 1; /* 0 once a read returns close_notify */
    int r = wants < 0 ? -1 : 0;
    if (r == 0) {
        Py_ssize_t c = read_into(read, wants, view);
        if (c < 0 && PyErr_Occurred()) {
            r = -1;
        }
        else {
            count = c;
            filled = count > 0 ? count : 0;
        }
        while (r == 0 && count > 0 && filled < wants) {
            int done = nothing_to_decrypt(st, incoming, sslobj);
            if (done != 0) {
                r = done < 0 ? -1 : 0;
                break;
            }
            PyObject *rest = PySequence_GetSlice(view, filled, wants);
            c = rest ? read_into(read, wants - filled, rest) : -1;
            Py_XDECREF(rest);
            if (c < 0 && PyErr_Occurred()) {
                r = -1;
                break;
            }
            count = c;
            filled += count > 0 ? count : 0;
        }
        if (r == 0 && count > 0 && filled >= wants) {
            /* The buffer is full: come back for the rest. */
            PyObject *loop = PyObject_GetAttr(self, NAME(st, N_loop));
            PyObject *again = loop ? PyObject_GetAttr(self, NAME(st, N_do_read)) : NULL;
            r = again ? call_method_void(st, loop, N_call_soon, again) : -1;
            Py_XDECREF(again);
            Py_XDECREF(loop);
        }
        if (r < 0 && PyErr_ExceptionMatches(st->tls[T_AGAIN])) {
            PyErr_Clear();
            r = 0;
        }
    }
    Py_XDECREF(incoming);
    Py_XDECREF(sslobj);
    Py_XDECREF(read);
    Py_XDECREF(view); /* the only reference: the buffer is released */
    if (r == 0 && filled > 0) {
        PyObject *n = PyLong_FromSsize_t(filled);
        r = n ? call_method_void(st, self, N_app_protocol_buffer_updated, n) : -1;
        Py_XDECREF(n);
    }
    return r == 0 && count == 0 ? read_closed(st, self) : r;
}

/* The body of _do_read()'s try. */
static int
do_read_body(cio_state *st, PyObject *self)
{
    int paused = attr_truth(st, self, N_app_reading_paused);
    if (paused < 0) {
        return -1;
    }
    if (!paused) {
        int buffered = attr_truth(st, self, N_app_protocol_is_buffer);
        if (buffered < 0) {
            return -1;
        }
        int r = buffered ? read_buffered(st, self) : read_copied(st, self);
        if (r < 0) {
            return -1;
        }
        int backlog = attr_truth(st, self, N_write_backlog);
        if (backlog < 0) {
            return -1;
        }
        r = backlog ? do_write(st, self) : process_outgoing(st, self);
        if (r < 0) {
            return -1;
        }
    }
    return control_ssl_reading(st, self);
}

/* _do_read(): in WRAPPED or FLUSHING, decrypted bytes to the app, what
 * that made the SSLObject write to the socket, and the socket's reading
 * paused or resumed over the incoming BIO's marks. */
static int
do_read(cio_state *st, PyObject *self)
{
    PyObject *state = PyObject_GetAttr(self, NAME(st, N_state));
    if (state == NULL) {
        return -1;
    }
    int reading = state == st->tls[T_WRAPPED] || state == st->tls[T_FLUSHING];
    Py_DECREF(state);
    if (!reading) {
        return 0;
    }
    if (do_read_body(st, self) < 0) {
        return fatal_unless_base(st, self);
    }
    return 0;
}

static PyObject *
none_unless(int r)
{
    return r < 0 ? NULL : Py_NewRef(Py_None);
}

/* ---- TLSProtocolBase ---------------------------------------------------- */

static PyObject *
TLSProtocol_get_buffer(PyObject *self, PyTypeObject *cls, PyObject *const *args, size_t nargs,
                       PyObject *kwnames)
{
    cio_state *st = tls_state(cls);
    PyObject *n;
    if (st == NULL ||
        cio_parse_one("get_buffer", args, PyVectorcall_NARGS(nargs), kwnames, "n", &n) < 0) {
        return NULL;
    }
    /* want = n, or max_size when n is not in 1..max_size (the transports
     * ask with -1); the buffer grows (asyncio's own method) if it is
     * smaller, and asyncio's method also answers an n that is not an int. */
    PyObject *max_obj = PyObject_GetAttr(self, NAME(st, N_max_size));
    Py_ssize_t max_size = max_obj ? PyLong_AsSsize_t(max_obj) : -1;
    Py_XDECREF(max_obj);
    int odd = max_size < 0 || !PyLong_CheckExact(n);
    Py_ssize_t want = odd ? 0 : PyLong_AsSsize_t(n);
    odd = odd || (want == -1 && PyErr_Occurred());
    PyObject *buf = odd ? NULL : PyObject_GetAttr(self, NAME(st, N_ssl_buffer));
    Py_ssize_t have = buf ? PyObject_Size(buf) : -1;
    Py_XDECREF(buf);
    if (want <= 0 || want > max_size) {
        want = max_size;
    }
    if (odd || have < 0 || have < want) {
        PyErr_Clear();
        return call_stock(st, self, N_get_buffer, &n, 1);
    }
    return PyObject_GetAttr(self, NAME(st, N_ssl_buffer_view));
}

static PyObject *
TLSProtocol_buffer_updated(PyObject *self, PyTypeObject *cls, PyObject *const *args, size_t nargs,
                           PyObject *kwnames)
{
    cio_state *st = tls_state(cls);
    PyObject *nbytes;
    if (st == NULL || cio_parse_one("buffer_updated", args, PyVectorcall_NARGS(nargs), kwnames,
                                    "nbytes", &nbytes) < 0) {
        return NULL;
    }
    int wrapped = state_is(st, self, T_WRAPPED);
    if (wrapped <= 0) {
        return wrapped < 0 ? NULL : call_stock(st, self, N_buffer_updated, &nbytes, 1);
    }
    /* self._incoming.write(self._ssl_buffer_view[:nbytes]) */
    PyObject *view = PyObject_GetAttr(self, NAME(st, N_ssl_buffer_view));
    PyObject *upto = view ? PySlice_New(NULL, nbytes, NULL) : NULL;
    PyObject *piece = upto ? PyObject_GetItem(view, upto) : NULL;
    PyObject *incoming = piece ? PyObject_GetAttr(self, NAME(st, N_incoming)) : NULL;
    int r = incoming ? call_method_void(st, incoming, N_write, piece) : -1;
    Py_XDECREF(incoming);
    Py_XDECREF(piece);
    Py_XDECREF(upto);
    Py_XDECREF(view);
    return none_unless(r < 0 ? -1 : do_read(st, self));
}

/* A method of no arguments that runs step(). */
static PyObject *
run_step(PyObject *self, PyTypeObject *cls, size_t nargs, PyObject *kwnames, const char *name,
         int (*step)(cio_state *, PyObject *))
{
    cio_state *st = tls_state(cls);
    if (st == NULL ||
        cio_parse_one(name, NULL, PyVectorcall_NARGS(nargs), kwnames, NULL, NULL) < 0) {
        return NULL;
    }
    return none_unless(step(st, self));
}

static PyObject *
TLSProtocol_do_read(PyObject *self, PyTypeObject *cls, PyObject *const *args, size_t nargs,
                    PyObject *kwnames)
{
    return run_step(self, cls, nargs, kwnames, "_do_read", do_read);
}

static PyObject *
TLSProtocol_do_read_copied(PyObject *self, PyTypeObject *cls, PyObject *const *args, size_t nargs,
                           PyObject *kwnames)
{
    return run_step(self, cls, nargs, kwnames, "_do_read__copied", read_copied);
}

static PyObject *
TLSProtocol_do_read_buffered(PyObject *self, PyTypeObject *cls, PyObject *const *args, size_t nargs,
                             PyObject *kwnames)
{
    return run_step(self, cls, nargs, kwnames, "_do_read__buffered", read_buffered);
}

static PyObject *
TLSProtocol_do_write(PyObject *self, PyTypeObject *cls, PyObject *const *args, size_t nargs,
                     PyObject *kwnames)
{
    return run_step(self, cls, nargs, kwnames, "_do_write", do_write);
}

static PyObject *
TLSProtocol_process_outgoing(PyObject *self, PyTypeObject *cls, PyObject *const *args, size_t nargs,
                             PyObject *kwnames)
{
    return run_step(self, cls, nargs, kwnames, "_process_outgoing", process_outgoing);
}

static PyObject *
TLSProtocol_write_appdata(PyObject *self, PyTypeObject *cls, PyObject *const *args, size_t nargs,
                          PyObject *kwnames)
{
    cio_state *st = tls_state(cls);
    PyObject *pieces;
    if (st == NULL || cio_parse_one("_write_appdata", args, PyVectorcall_NARGS(nargs), kwnames,
                                    "list_of_data", &pieces) < 0) {
        return NULL;
    }
    return none_unless(write_appdata(st, self, pieces, NULL));
}

#define TLS_METHOD(name, func) \
    {name, (PyCFunction)(void (*)(void))func, METH_METHOD | METH_FASTCALL | METH_KEYWORDS, NULL}

static PyMethodDef TLSProtocol_methods[] = {
    TLS_METHOD("get_buffer", TLSProtocol_get_buffer),
    TLS_METHOD("buffer_updated", TLSProtocol_buffer_updated),
    TLS_METHOD("_do_read", TLSProtocol_do_read),
    TLS_METHOD("_do_read__copied", TLSProtocol_do_read_copied),
    TLS_METHOD("_do_read__buffered", TLSProtocol_do_read_buffered),
    TLS_METHOD("_write_appdata", TLSProtocol_write_appdata),
    TLS_METHOD("_do_write", TLSProtocol_do_write),
    TLS_METHOD("_process_outgoing", TLSProtocol_process_outgoing),
    {NULL, NULL, 0, NULL},
};

static PyType_Slot TLSProtocol_slots[] = {
    {Py_tp_doc, "The per-record methods of casyncio's TLS protocol, in C (see csrc/tls.c)."},
    {Py_tp_methods, TLSProtocol_methods},
    {0, NULL},
};

/* No fields of its own: it goes first among the bases of a subclass of
 * asyncio's SSLProtocol, whose fields live in the instance's dict. */
static PyType_Spec TLSProtocol_spec = {
    .name = "casyncio._casyncio.TLSProtocolBase",
    .basicsize = sizeof(PyObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .slots = TLSProtocol_slots,
};

/* ---- TLSAppTransportBase ------------------------------------------------ */

static PyObject *
TLSAppTransport_write(PyObject *self, PyTypeObject *cls, PyObject *const *args, size_t nargs,
                      PyObject *kwnames)
{
    cio_state *st = tls_state(cls);
    PyObject *data;
    if (st == NULL ||
        cio_parse_one("write", args, PyVectorcall_NARGS(nargs), kwnames, "data", &data) < 0) {
        return NULL;
    }
    if (!PyBytes_Check(data) && !PyByteArray_Check(data) && !PyMemoryView_Check(data)) {
        int ok = PyObject_IsInstance(data, st->tls[T_BYTES_TYPES]);
        if (ok <= 0) {
            if (ok == 0) {
                PyObject *name = PyType_GetName(Py_TYPE(data));
                if (name != NULL) {
                    PyErr_Format(PyExc_TypeError, "data: expecting a bytes-like instance, got %U",
                                 name);
                    Py_DECREF(name);
                }
            }
            return NULL;
        }
    }
    int some = PyObject_IsTrue(data);
    if (some <= 0) {
        return some < 0 ? NULL : Py_NewRef(Py_None);
    }
    PyObject *protocol = PyObject_GetAttr(self, NAME(st, N_ssl_protocol));
    if (protocol == NULL) {
        return NULL;
    }
    int r;
    if (PyObject_TypeCheck(protocol, (PyTypeObject *)st->tls[T_PROTOCOL_TYPE])) {
        r = write_appdata(st, protocol, NULL, data);
    }
    else {
        PyObject *pieces = PyTuple_Pack(1, data);
        r = pieces ? call_method_void(st, protocol, N_write_appdata, pieces) : -1;
        Py_XDECREF(pieces);
    }
    Py_DECREF(protocol);
    return none_unless(r);
}

static PyMethodDef TLSAppTransport_methods[] = {
    TLS_METHOD("write", TLSAppTransport_write),
    {NULL, NULL, 0, NULL},
};

static PyType_Slot TLSAppTransport_slots[] = {
    {Py_tp_doc, "The write() of casyncio's TLS app transport, in C (see csrc/tls.c)."},
    {Py_tp_methods, TLSAppTransport_methods},
    {0, NULL},
};

static PyType_Spec TLSAppTransport_spec = {
    .name = "casyncio._casyncio.TLSAppTransportBase",
    .basicsize = sizeof(PyObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .slots = TLSAppTransport_slots,
};

/* ---- setup -------------------------------------------------------------- */

/* _tls_setup(SSLProtocol, SSLProtocolState, SSLAgainErrors), called by
 * casyncio/_tls.py when it is imported: what the methods above compare
 * with and hand back to. */
static PyObject *
tls_setup(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError,
                        "_tls_setup(SSLProtocol, SSLProtocolState, SSLAgainErrors)");
        return NULL;
    }
    cio_state *st = PyModule_GetState(module);
    static const char *const states[] = {"WRAPPED", "FLUSHING", "SHUTDOWN", "UNWRAPPED"};
    PyObject *got[4];
    for (int i = 0; i < 4; i++) {
        got[i] = PyObject_GetAttrString(args[1], states[i]);
        if (got[i] == NULL) {
            while (--i >= 0) {
                Py_DECREF(got[i]);
            }
            return NULL;
        }
    }
    Py_XSETREF(st->tls[T_STOCK], Py_NewRef(args[0]));
    for (int i = 0; i < 4; i++) {
        Py_XSETREF(st->tls[T_WRAPPED + i], got[i]);
    }
    Py_XSETREF(st->tls[T_AGAIN], Py_NewRef(args[2]));
    Py_RETURN_NONE;
}

static PyMethodDef tls_functions[] = {
    {"_tls_setup", (PyCFunction)(void (*)(void))tls_setup, METH_FASTCALL, NULL},
    {NULL, NULL, 0, NULL},
};

int
cio_tls_init(PyObject *module, cio_state *st)
{
    for (int i = T_FIRST_NAME; i < T_COUNT; i++) {
        st->tls[i] = PyUnicode_InternFromString(tls_names[i - T_FIRST_NAME]);
        if (st->tls[i] == NULL) {
            return -1;
        }
    }
    st->tls[T_BYTES_TYPES] =
        PyTuple_Pack(3, (PyObject *)&PyBytes_Type, (PyObject *)&PyByteArray_Type,
                     (PyObject *)&PyMemoryView_Type);
    st->tls[T_EMPTY] = PyBytes_FromStringAndSize(NULL, 0);
    st->tls[T_FATAL_MSG] = PyUnicode_FromString("Fatal error on SSL protocol");
    st->tls[T_BYTE_FORMAT] = PyUnicode_InternFromString("B");
    if (st->tls[T_BYTES_TYPES] == NULL || st->tls[T_EMPTY] == NULL ||
        st->tls[T_FATAL_MSG] == NULL || st->tls[T_BYTE_FORMAT] == NULL) {
        return -1;
    }
    st->tls[T_PROTOCOL_TYPE] = PyType_FromModuleAndSpec(module, &TLSProtocol_spec, NULL);
    st->tls[T_TRANSPORT_TYPE] = PyType_FromModuleAndSpec(module, &TLSAppTransport_spec, NULL);
    if (st->tls[T_PROTOCOL_TYPE] == NULL || st->tls[T_TRANSPORT_TYPE] == NULL ||
        PyModule_AddObjectRef(module, "TLSProtocolBase", st->tls[T_PROTOCOL_TYPE]) < 0 ||
        PyModule_AddObjectRef(module, "TLSAppTransportBase", st->tls[T_TRANSPORT_TYPE]) < 0) {
        return -1;
    }
    return PyModule_AddFunctions(module, tls_functions);
}
