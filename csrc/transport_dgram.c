/* transport_dgram.c: the datagram (UDP, Unix datagram) transport, as
 * asyncio's _SelectorDatagramTransport.
 *
 * sendto() tries to send at once and queues (a copy of) the datagram only
 * when the socket would block; the queue drains when the fd is writable.
 * Addresses are converted by the socket object's own sendto()/recvfrom(),
 * which know every address family.  OSErrors of single datagrams go to
 * protocol.error_received(), as in asyncio; they do not end the transport. */
#include "transport.h"

typedef struct {
    PyObject *data; /* bytes */
    PyObject *addr; /* or NULL for a connected socket */
} dgram;

typedef struct {
    TransportObj base;
    PyObject *address; /* the connected peer, or NULL */
    dgram *q;
    Py_ssize_t q_head, q_len, q_cap;
    Py_ssize_t qsize; /* bytes queued */
    char connected;   /* extra['peername'] is set: use send() */
} DgramObj;

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

static const cio_transport_ops dgram_ops = {dgram_buffer_size, dgram_buffer_clear, NULL};

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
    d->qsize += PyBytes_GET_SIZE(data);
    return 0;
}

/* Sends one datagram.  Returns 1 sent, 0 would block, -1 error set. */
static int
send_one(DgramObj *d, PyObject *data, PyObject *addr)
{
    PyObject *res;
    if (d->connected) {
        res = PyObject_CallMethod(d->base.sock, "send", "O", data);
    }
    else {
        res = PyObject_CallMethod(d->base.sock, "sendto", "OO", data, addr ? addr : Py_None);
    }
    if (res != NULL) {
        Py_DECREF(res);
        return 1;
    }
    if (PyErr_ExceptionMatches(PyExc_BlockingIOError) ||
        PyErr_ExceptionMatches(PyExc_InterruptedError)) {
        PyErr_Clear();
        return 0;
    }
    return -1;
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
    PyObject *exc = cio_err_take();
    PyObject *res = PyObject_CallMethod(t->protocol, "error_received", "O", exc);
    Py_DECREF(exc);
    Py_XDECREF(res);
    return res ? 0 : -1;
}

static PyObject *
Dgram_sendto(DgramObj *d, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"data", "addr", NULL};
    PyObject *data, *addr = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|O:sendto", kwlist, &data, &addr)) {
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
    if (len == 0) {
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
    if (t->conn_lost && d->address != NULL) {
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
        d->qsize -= PyBytes_GET_SIZE(g.data);
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

static int
read_ready(DgramObj *d)
{
    TransportObj *t = &d->base;
    if (t->conn_lost) {
        return 0;
    }
    PyObject *pair = PyObject_CallMethod(t->sock, "recvfrom", "i", CIO_READ_BUFFER_SIZE);
    if (pair == NULL) {
        if (PyErr_ExceptionMatches(PyExc_BlockingIOError) ||
            PyErr_ExceptionMatches(PyExc_InterruptedError)) {
            PyErr_Clear();
            return 0;
        }
        if (PyErr_ExceptionMatches(PyExc_OSError)) {
            PyObject *exc = cio_err_take();
            PyObject *res = PyObject_CallMethod(t->protocol, "error_received", "O", exc);
            Py_DECREF(exc);
            Py_XDECREF(res);
            return res ? 0 : -1;
        }
        return cio_transport_fatal_error(t, "Fatal read error on datagram transport");
    }
    if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2) {
        Py_DECREF(pair);
        PyErr_SetString(PyExc_TypeError, "recvfrom() did not return (data, address)");
        return -1;
    }
    PyObject *res = PyObject_CallMethod(t->protocol, "datagram_received", "OO",
                                        PyTuple_GET_ITEM(pair, 0), PyTuple_GET_ITEM(pair, 1));
    Py_DECREF(pair);
    Py_XDECREF(res);
    return res ? 0 : -1;
}

int
cio_dgram_io(PyObject *obj, int which)
{
    DgramObj *d = (DgramObj *)obj;
    int rc;
    if (which == CIO_READ) {
        rc = d->base.reading ? read_ready(d) : 0;
    }
    else {
        rc = d->base.writing ? sendto_ready(d) : 0;
    }
    if (rc < 0) {
        /* The protocol's callback raised: report it like a failing callback
         * (as asyncio, whose callbacks run from Handles) and keep going; the
         * transport stays open. */
        PyObject *exc = cio_err_take();
        if (cio_exception_is_fatal(exc)) {
            cio_err_restore(exc);
            return -1;
        }
        PyObject *name = PyType_GetName(Py_TYPE(obj));
        PyObject *ctx =
            name ? Py_BuildValue(
                       "{sNsOsOsO}", "message",
                       PyUnicode_FromFormat("Exception in callback %U.%s()", name,
                                            which == CIO_READ ? "_read_ready" : "_sendto_ready"),
                       "exception", exc, "transport", obj, "protocol",
                       d->base.protocol ? d->base.protocol : Py_None)
                 : NULL;
        Py_XDECREF(name);
        Py_DECREF(exc);
        if (ctx == NULL) {
            PyErr_WriteUnraisable(obj);
            return 0;
        }
        int r = d->base.loop ? cio_call_exception_handler(d->base.st, (PyObject *)d->base.loop, ctx)
                             : 0;
        Py_DECREF(ctx);
        return r;
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
    if (address != Py_None) {
        d->address = Py_NewRef(address);
    }
    PyObject *peer = PyDict_GetItemString(d->base.extra, "peername"); /* borrowed */
    d->connected = peer != NULL && PyObject_IsTrue(peer) == 1;
    if (cio_transport_start(&d->base, waiter) < 0) {
        goto error;
    }
    return (PyObject *)d;
error:
    Py_CLEAR(d->base.sock);
    Py_DECREF(d);
    return NULL;
}

static PyMethodDef Dgram_methods[] = {
    CIO_TRANSPORT_METHODS,
    {"sendto", (PyCFunction)(void (*)(void))Dgram_sendto, METH_VARARGS | METH_KEYWORDS,
     "sendto(data, addr=None): send a datagram (queued if the socket would block)."},
    {"set_protocol", (PyCFunction)Dgram_set_protocol, METH_O, NULL},
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
