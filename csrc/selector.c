/* selector.c: loop._selector, the loop's poller seen as asyncio's selector.
 *
 * asyncio's selector loops keep a selectors.BaseSelector in loop._selector
 * and call its select(timeout) once an iteration.  Fake-clock test tools
 * (aiotools' VirtualClock, looptime) replace that select() on the instance
 * with one that moves their clock on by the timeout and polls with 0, so
 * that a test's sleeps end at once.  The C loop polls its backend directly;
 * this object exists for those tools:
 *   - its own select(timeout) polls the loop's backend and answers as a
 *     selector does, a list of (SelectorKey, events);
 *   - once select is replaced on the instance, each iteration calls the
 *     replacement with the timeout asyncio passes and hands the events it
 *     returns to the watchers, as asyncio's _process_events() does
 *     (cio_selector_poll()); the flag is the loop's select_replaced, kept
 *     by this type's setattr and at each run's start;
 *   - get_map() and get_key() describe what the loop watches.  Registering
 *     stays the loop's business (add_reader(), the transports): there is no
 *     register(), modify() or unregister().
 *
 * The loop owns the selector, made when first asked for; the selector's
 * pointer back is borrowed and cut when the loop closes (stock's loop sets
 * _selector to None then) or dies. */
#include "casyncio.h"

#include <math.h>

typedef struct {
    PyObject_HEAD
    LoopObj *loop; /* borrowed; NULL once the loop closed */
    PyObject *dict;
} SelectorObj;

/* ---- the loop's side ---- */

PyObject *
cio_selector_get(LoopObj *loop, void *Py_UNUSED(closure))
{
    if (loop->closed) {
        Py_RETURN_NONE;
    }
    if (loop->selector == NULL) {
        SelectorObj *sel = PyObject_GC_New(SelectorObj, loop->st->SelectorType);
        if (sel == NULL) {
            return NULL;
        }
        sel->loop = loop;
        sel->dict = NULL;
        PyObject_GC_Track(sel);
        loop->selector = (PyObject *)sel;
    }
    return Py_NewRef(loop->selector);
}

int
cio_selector_update(LoopObj *loop)
{
    SelectorObj *sel = (SelectorObj *)loop->selector;
    int replaced = 0;
    if (sel != NULL && sel->dict != NULL) {
        replaced = PyDict_Contains(sel->dict, loop->st->str_select);
        if (replaced < 0) {
            return -1;
        }
    }
    loop->select_replaced = (char)replaced;
    return 0;
}

void
cio_selector_detach(LoopObj *loop)
{
    SelectorObj *sel = (SelectorObj *)loop->selector;
    loop->select_replaced = 0;
    if (sel != NULL) {
        sel->loop = NULL;
        loop->selector = NULL;
        Py_DECREF(sel);
    }
}

/* The fd and events of one (key, events) pair a select() returned: the key
 * a SelectorKey (its fd is read) or a bare fd.  Returns 0 or -1. */
static int
parse_event(PyObject *item, cio_poll_event *out)
{
    PyObject *pair = PySequence_Fast(item, "select() must return (key, events) pairs");
    if (pair == NULL) {
        return -1;
    }
    int rc = -1;
    if (PySequence_Fast_GET_SIZE(pair) != 2) {
        PyErr_Format(PyExc_ValueError, "select() must return (key, events) pairs, not %R", item);
        goto error;
    }
    PyObject *key = PySequence_Fast_GET_ITEM(pair, 0); /* borrowed */
    PyObject *fdobj = PyLong_Check(key) ? Py_NewRef(key) : PyObject_GetAttrString(key, "fd");
    if (fdobj == NULL) {
        goto error;
    }
    long fd = PyLong_AsLong(fdobj);
    Py_DECREF(fdobj);
    long events =
        fd == -1 && PyErr_Occurred() ? -1 : PyLong_AsLong(PySequence_Fast_GET_ITEM(pair, 1));
    if (events == -1 && PyErr_Occurred()) {
        goto error;
    }
    /* An fd the loop does not watch is skipped at dispatch. */
    out->fd = fd < 0 || fd > INT32_MAX ? -1 : (int)fd;
    out->events = (uint32_t)events & (CIO_POLL_IN | CIO_POLL_OUT);
    rc = 0;
error:
    Py_DECREF(pair);
    return rc;
}

/* Hands select()'s events to the watchers, CIO_FIRED_CAP at a time. */
static int
dispatch_events(LoopObj *loop, PyObject *events)
{
    PyObject *iter = PyObject_GetIter(events);
    if (iter == NULL) {
        return -1;
    }
    /* As poll_io() decides it, once the poll has returned. */
    if (cio_loop_decide_inline(loop) < 0) {
        Py_DECREF(iter);
        return -1;
    }
    int n = 0, rc = 0;
    PyObject *item;
    while (rc == 0 && (item = PyIter_Next(iter)) != NULL) {
        rc = parse_event(item, &loop->fired[n]);
        Py_DECREF(item);
        if (rc == 0 && ++n == CIO_FIRED_CAP) {
            rc = cio_loop_dispatch_fd_events(loop, n);
            n = 0;
        }
    }
    Py_DECREF(iter);
    if (rc < 0 || PyErr_Occurred()) {
        return -1;
    }
    return n > 0 ? cio_loop_dispatch_fd_events(loop, n) : 0;
}

int
cio_selector_poll(LoopObj *loop)
{
    /* asyncio's timeout: 0 with callbacks ready or stop() called, the delay
     * to the earliest timer (capped at a day), or None with nothing
     * scheduled. */
    PyObject *timeout;
    if (cio_ring_len(&loop->ready) > 0 || loop->stopping) {
        timeout = PyLong_FromLong(0);
    }
    else if (cio_heap_len(&loop->timers) > 0) {
        double now;
        if (cio_loop_now(loop, &now) < 0) {
            return -1;
        }
        double delay = cio_heap_peek_when(&loop->timers) - now;
        timeout = PyFloat_FromDouble(fmin(fmax(0.0, delay), CIO_MAX_POLL_MS / 1e3));
    }
    else {
        timeout = Py_NewRef(Py_None);
    }
    if (timeout == NULL) {
        return -1;
    }
    /* The replacement may do anything, dropping the selector included. */
    PyObject *sel = Py_NewRef(loop->selector);
    PyObject *events = PyObject_CallMethodOneArg(sel, loop->st->str_select, timeout);
    Py_DECREF(timeout);
    Py_DECREF(sel);
    if (events == NULL) {
        return -1;
    }
    int rc = dispatch_events(loop, events);
    Py_DECREF(events);
    return rc;
}

/* ---- the selector ---- */

static LoopObj *
open_loop(SelectorObj *self)
{
    if (self->loop == NULL) {
        PyErr_SetString(PyExc_ValueError, "the event loop's selector is closed");
    }
    return self->loop;
}

/* The SelectorKey for fd: fileobj is what the fd was given as (or the fd),
 * events what the poller watches, and data, as in asyncio, the reader's
 * and the writer's Handle (None for a transport's or the loop's own). */
static PyObject *
make_key(LoopObj *loop, PyObject *key_type, int fd)
{
    const cio_fd_entry *e = cio_fdtable_get(&loop->fds, fd);
    PyObject *fileobj =
        e != NULL && e->fileobj != NULL ? Py_NewRef((PyObject *)e->fileobj) : PyLong_FromLong(fd);
    if (fileobj == NULL) {
        return NULL;
    }
    PyObject *reader = e != NULL && e->reader_tag == CIO_W_HANDLE ? e->reader : Py_None;
    PyObject *writer = e != NULL && e->writer_tag == CIO_W_HANDLE ? e->writer : Py_None;
    PyObject *key = PyObject_CallFunction(key_type, "OiI(OO)", fileobj, fd,
                                          e != NULL ? (unsigned int)e->events : 0u, reader, writer);
    Py_DECREF(fileobj);
    return key;
}

static PyObject *
key_type(void)
{
    PyObject *selectors = PyImport_ImportModule("selectors");
    if (selectors == NULL) {
        return NULL;
    }
    PyObject *type = PyObject_GetAttrString(selectors, "SelectorKey");
    Py_DECREF(selectors);
    return type;
}

static PyObject *
Selector_select(SelectorObj *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"timeout", NULL};
    PyObject *timeout = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|O:select", kwlist, &timeout)) {
        return NULL;
    }
    int timeout_ms = -1;
    double deadline = 0.0;
    if (timeout != Py_None) {
        double t = PyFloat_AsDouble(timeout);
        if (t == -1.0 && PyErr_Occurred()) {
            return NULL;
        }
        if (!isfinite(t) && t > 0.0) {
            /* selectors' math.ceil(timeout * 1e3) */
            PyErr_SetString(PyExc_OverflowError, "cannot convert float infinity to integer");
            return NULL;
        }
        if (isnan(t)) {
            PyErr_SetString(PyExc_ValueError, "cannot convert float NaN to integer");
            return NULL;
        }
        timeout_ms = cio_clock_delay_to_ms(t, CIO_MAX_POLL_MS);
        deadline = cio_clock_now() + t;
    }
    LoopObj *loop = open_loop(self);
    if (loop == NULL) {
        return NULL;
    }
    /* Its own array: another thread may be polling into the loop's. */
    cio_poll_event *fired = PyMem_New(cio_poll_event, CIO_FIRED_CAP);
    PyObject *type = NULL, *result = NULL;
    if (fired == NULL) {
        return PyErr_NoMemory();
    }
    Py_INCREF(loop);
    int own = loop->running && loop->thread_ident == PyThread_get_thread_ident();
    int n = cio_loop_wait(loop, fired, timeout_ms, own);
    /* Nothing before the timeout means a signal came (and its handlers ran):
     * wait out the rest, as Python's own selectors do (PEP 475). */
    while (n == 0 && timeout_ms != 0) {
        if (timeout_ms > 0) {
            timeout_ms = cio_clock_delay_to_ms(deadline - cio_clock_now(), CIO_MAX_POLL_MS);
            if (timeout_ms == 0) {
                break;
            }
        }
        if (open_loop(self) == NULL) { /* a handler closed it */
            n = -1;
            break;
        }
        n = cio_loop_wait(loop, fired, timeout_ms, own);
    }
    if (n < 0 || (type = key_type()) == NULL || (result = PyList_New(n)) == NULL) {
        goto error;
    }
    for (int i = 0; i < n; i++) {
        PyObject *key = make_key(loop, type, fired[i].fd);
        PyObject *pair = key != NULL ? Py_BuildValue("(NI)", key, fired[i].events) : NULL;
        if (pair == NULL) {
            Py_CLEAR(result);
            goto error;
        }
        PyList_SET_ITEM(result, i, pair);
    }
error:
    Py_XDECREF(type);
    Py_DECREF(loop);
    PyMem_Free(fired);
    return result;
}

static PyObject *
Selector_get_map(SelectorObj *self, PyObject *Py_UNUSED(ignored))
{
    LoopObj *loop = self->loop;
    if (loop == NULL) {
        Py_RETURN_NONE; /* as a closed selector's */
    }
    PyObject *type = key_type();
    PyObject *map = type != NULL ? PyDict_New() : NULL;
    for (int fd = 0; map != NULL && fd < loop->fds.cap; fd++) {
        if (loop->fds.entries[fd].events == 0) {
            continue;
        }
        PyObject *key = make_key(loop, type, fd);
        PyObject *num = key != NULL ? PyLong_FromLong(fd) : NULL;
        if (num == NULL || PyDict_SetItem(map, num, key) < 0) {
            Py_CLEAR(map);
        }
        Py_XDECREF(num);
        Py_XDECREF(key);
    }
    Py_XDECREF(type);
    return map;
}

static PyObject *
Selector_get_key(SelectorObj *self, PyObject *fileobj)
{
    LoopObj *loop = self->loop;
    if (loop == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Selector is closed");
        return NULL;
    }
    int fd = cio_fileobj_to_fd(loop->st, fileobj);
    if (fd < 0) {
        return NULL;
    }
    const cio_fd_entry *e = cio_fdtable_get(&loop->fds, fd);
    if (e == NULL || e->events == 0) {
        PyErr_Format(PyExc_KeyError, "%R is not registered", fileobj);
        return NULL;
    }
    PyObject *type = key_type();
    if (type == NULL) {
        return NULL;
    }
    PyObject *key = make_key(loop, type, fd);
    Py_DECREF(type);
    return key;
}

/* Replacing select (or putting back the original) on the instance switches
 * the loop's polls to it and back. */
static int
Selector_setattro(SelectorObj *self, PyObject *name, PyObject *value)
{
    if (PyObject_GenericSetAttr((PyObject *)self, name, value) < 0) {
        return -1;
    }
    return self->loop != NULL ? cio_selector_update(self->loop) : 0;
}

static int
Selector_traverse(SelectorObj *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->dict);
    return 0;
}

static int
Selector_clear(SelectorObj *self)
{
    Py_CLEAR(self->dict);
    return 0;
}

static void
Selector_dealloc(SelectorObj *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    Selector_clear(self);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyMethodDef Selector_methods[] = {
    {"select", (PyCFunction)(void (*)(void))Selector_select, METH_VARARGS | METH_KEYWORDS,
     "select(timeout=None) -> [(SelectorKey, events)]: polls the loop's fds, as a selector's "
     "select() does (the loop's own iterations do not call it unless it is replaced)."},
    {"get_map", (PyCFunction)Selector_get_map, METH_NOARGS,
     "get_map() -> {fd: SelectorKey} of what the loop watches (None once the loop is closed)."},
    {"get_key", (PyCFunction)Selector_get_key, METH_O,
     "get_key(fileobj) -> SelectorKey, or KeyError if the loop does not watch it."},
    {NULL},
};

static PyMemberDef Selector_members[] = {
    {"__dictoffset__", T_PYSSIZET, offsetof(SelectorObj, dict), READONLY},
    {NULL},
};

static PyGetSetDef Selector_getset[] = {
    {"__dict__", PyObject_GenericGetDict, PyObject_GenericSetDict, NULL, NULL},
    {NULL},
};

static PyType_Slot Selector_slots[] = {
    {Py_tp_doc, "loop._selector: the loop's poller, as asyncio's selector."},
    {Py_tp_dealloc, Selector_dealloc},
    {Py_tp_traverse, Selector_traverse},
    {Py_tp_clear, Selector_clear},
    {Py_tp_setattro, Selector_setattro},
    {Py_tp_methods, Selector_methods},
    {Py_tp_members, Selector_members},
    {Py_tp_getset, Selector_getset},
    {0, NULL},
};

static PyType_Spec Selector_spec = {
    .name = "casyncio._casyncio.LoopSelector",
    .basicsize = sizeof(SelectorObj),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = Selector_slots,
};

int
cio_selector_init_type(PyObject *module, cio_state *st)
{
    st->SelectorType = (PyTypeObject *)PyType_FromModuleAndSpec(module, &Selector_spec, NULL);
    return st->SelectorType ? 0 : -1;
}
