/* handle.c: Handle and TimerHandle, what call_soon() and call_later() return.
 *
 * A Handle is a callback, its arguments and the contextvars.Context to run
 * it in.  Both types come from per-module free lists, because a program that
 * schedules callbacks in a loop would otherwise pay an allocation for each.
 * A free-listed object is dead: untracked, fields cleared, type reference
 * dropped; `callback` links the list.
 *
 * A TimerHandle carries its heap node inside it, so scheduling a timer
 * allocates no node, and cancelling one removes it from the loop's heap at
 * once (stock asyncio leaves it there until it would have fired). */
#include "casyncio.h"

#include <stddef.h>

/* The free list for exactly `type`; subclasses get none. */
static cio_freelist *
freelist_for(cio_state *st, PyTypeObject *type)
{
    if (type == st->HandleType) {
        return &st->handle_freelist;
    }
    if (type == st->TimerHandleType) {
        return &st->timer_freelist;
    }
    return NULL;
}

static HandleObj *
handle_alloc(cio_state *st, PyTypeObject *type)
{
    cio_freelist *fl = freelist_for(st, type);
    HandleObj *h = fl ? (HandleObj *)cio_freelist_pop(fl, type) : NULL;
    if (h == NULL) {
        h = PyObject_GC_New(HandleObj, type);
        if (h == NULL) {
            return NULL;
        }
    }
    h->st = st;
    h->callback = NULL;
    h->args = NULL;
    h->context = NULL;
    h->loop = NULL;
    h->repr = NULL;
    h->source_traceback = NULL;
    h->weakreflist = NULL;
    h->cancelled = 0;
    h->ctx_copied = 0;
    h->ctx_untracked = 0;
    if (type == st->TimerHandleType || PyType_IsSubtype(type, st->TimerHandleType)) {
        TimerHandleObj *t = (TimerHandleObj *)h;
        cio_heap_node_init(&t->node);
        t->when = 0.0;
        t->when_is_int = 0;
    }
    st->live.handles++;
    return h;
}

/* Fills in a freshly allocated handle.  Returns 0 or -1 (the caller
 * releases the handle). */
static int
handle_setup(HandleObj *h, PyObject *callback, PyObject *args, PyObject *loop, PyObject *context)
{
    cio_state *st = h->st;
    h->callback = Py_NewRef(callback);
    if (args != NULL && PyTuple_GET_SIZE(args) > 0) {
        h->args = Py_NewRef(args);
    }
    h->loop = Py_NewRef(loop);
    if (context == NULL || context == Py_None) {
        h->context = PyContext_CopyCurrent();
        if (h->context == NULL) {
            return -1;
        }
        h->ctx_copied = 1;
    }
    else {
        h->context = Py_NewRef(context);
    }
    if (cio_source_traceback(st, loop, &h->source_traceback) < 0) {
        return -1;
    }
    PyObject_GC_Track(h);
    return 0;
}

/* A new handle of `type` (a Handle or TimerHandle type), set up; NULL on
 * error. */
static HandleObj *
handle_make(cio_state *st, PyTypeObject *type, PyObject *callback, PyObject *args, PyObject *loop,
            PyObject *context)
{
    HandleObj *h = handle_alloc(st, type);
    if (h != NULL && handle_setup(h, callback, args, loop, context) < 0) {
        PyObject_GC_Track(h);
        Py_CLEAR(h);
    }
    return h;
}

HandleObj *
cio_handle_new(cio_state *st, PyObject *callback, PyObject *args, PyObject *loop, PyObject *context)
{
    return handle_make(st, st->HandleType, callback, args, loop, context);
}

TimerHandleObj *
cio_timer_new(cio_state *st, double when, PyObject *callback, PyObject *args, PyObject *loop,
              PyObject *context)
{
    TimerHandleObj *t =
        (TimerHandleObj *)handle_make(st, st->TimerHandleType, callback, args, loop, context);
    if (t != NULL) {
        t->when = when;
    }
    return t;
}

/* ---- running ---- */

static PyObject *
format_callback(cio_state *st, PyObject *loop, PyObject *callback, PyObject *args)
{
    if (cio_state_import_asyncio(st) < 0) {
        return NULL;
    }
    PyObject *empty = NULL;
    if (args == NULL) {
        empty = PyTuple_New(0);
        if (empty == NULL) {
            return NULL;
        }
        args = empty;
    }
    PyObject *res;
    if (st->format_callback_debug_kw) {
        int debug = loop != NULL && loop != Py_None ? cio_loop_get_debug(st, loop) : 0;
        PyObject *kwargs =
            debug < 0 ? NULL : Py_BuildValue("{sO}", "debug", debug ? Py_True : Py_False);
        PyObject *posargs = kwargs ? PyTuple_Pack(2, callback, args) : NULL;
        res = posargs ? PyObject_Call(st->format_callback_source, posargs, kwargs) : NULL;
        Py_XDECREF(posargs);
        Py_XDECREF(kwargs);
    }
    else {
        res = PyObject_CallFunctionObjArgs(st->format_callback_source, callback, args, NULL);
    }
    Py_XDECREF(empty);
    return res;
}

int
cio_handle_report_error(HandleObj *h, PyObject *callback, PyObject *args,
                        PyObject *exc /* steals */)
{
    cio_state *st = h->st;
    PyObject *ctx = NULL, *source = NULL, *message = NULL;
    int rc = 0;

    source = format_callback(st, h->loop, callback, args);
    if (source == NULL) {
        goto error;
    }
    message = PyUnicode_FromFormat("Exception in callback %U", source);
    if (message == NULL) {
        goto error;
    }
    ctx = PyDict_New();
    if (ctx == NULL || PyDict_SetItem(ctx, st->str_message, message) < 0 ||
        PyDict_SetItem(ctx, st->str_exception, exc) < 0 ||
        PyDict_SetItem(ctx, st->str_handle, (PyObject *)h) < 0) {
        goto error;
    }
    if (h->source_traceback != NULL &&
        PyDict_SetItem(ctx, st->str_source_traceback, h->source_traceback) < 0) {
        goto error;
    }
    rc = cio_call_exception_handler(st, h->loop, ctx);
    goto done;
error:
    /* Could not even build the report: say so the blunt way. */
    PyErr_WriteUnraisable((PyObject *)h);
done:
    Py_XDECREF(ctx);
    Py_XDECREF(message);
    Py_XDECREF(source);
    Py_DECREF(exc);
    return rc;
}

int
cio_handle_report_call_error(cio_state *st, PyObject *loop, PyObject *callback, PyObject *arg,
                             PyObject *context, PyObject *exc /* steals */)
{
    /* The Handle is made on this error path only, so that the exception
     * handler sees what a failing call_soon() callback shows it. */
    PyObject *args = NULL;
    HandleObj *h = NULL;
    if (arg != NULL && (args = PyTuple_Pack(1, arg)) == NULL) {
        goto error;
    }
    h = cio_handle_new(st, callback, args, loop, context);
    if (h == NULL) {
        goto error;
    }
    int rc = cio_handle_report_error(h, callback, args, exc);
    Py_DECREF(h);
    Py_XDECREF(args);
    return rc;
error:
    Py_XDECREF(args);
    Py_DECREF(exc);
    return -1;
}

PyObject *
cio_call_in_context(PyObject *context, PyObject *func, PyObject *const *args, size_t nargs)
{
    PyObject *exc = NULL;
    if (context != NULL && PyContext_Enter(context) < 0) {
        return cio_err_take();
    }
    PyObject *res = PyObject_Vectorcall(func, args, nargs, NULL);
    if (res == NULL) {
        exc = cio_err_take();
    }
    Py_XDECREF(res);
    if (context != NULL && PyContext_Exit(context) < 0) {
        if (exc == NULL) {
            exc = cio_err_take();
        }
        else {
            PyErr_Clear();
        }
    }
    return exc;
}

int
cio_handle_run(HandleObj *h)
{
    if (h->cancelled || h->callback == NULL) {
        return 0;
    }
    /* The callback may cancel its own handle, which clears these fields:
     * hold our own references for the call and the report. */
    PyObject *callback = Py_NewRef(h->callback);
    PyObject *args = Py_XNewRef(h->args);
    PyObject *context = Py_NewRef(h->context);
    PyObject *exc;
    if (args == NULL) {
        exc = cio_call_in_context(context, callback, NULL, 0);
    }
    else {
        exc = cio_call_in_context(context, callback, &PyTuple_GET_ITEM(args, 0),
                                  PyTuple_GET_SIZE(args));
    }
    int rc = 0;
    if (exc != NULL) {
        if (cio_exception_is_fatal(exc)) {
            cio_err_restore(exc);
            rc = -1;
        }
        else {
            rc = cio_handle_report_error(h, callback, args, exc);
        }
    }
    Py_DECREF(callback);
    Py_XDECREF(args);
    Py_DECREF(context);
    return rc;
}

int
cio_handle_cancel(HandleObj *h)
{
    cio_state *st = h->st;
    if (h->cancelled) {
        return 0;
    }
    if (cio_timer_check(st, (PyObject *)h)) {
        TimerHandleObj *t = (TimerHandleObj *)h;
        if (cio_heap_node_attached(&t->node)) {
            if (cio_loop_check(st, h->loop)) {
                cio_loop_timer_remove((LoopObj *)h->loop, t);
            }
            else {
                PyObject *res = PyObject_CallMethodOneArg(h->loop, st->str_timer_handle_cancelled,
                                                          (PyObject *)h);
                if (res == NULL) {
                    return -1;
                }
                Py_DECREF(res);
            }
        }
    }
    h->cancelled = 1;
    if (h->loop != NULL) {
        int debug = cio_loop_get_debug(st, h->loop);
        if (debug < 0) {
            return -1;
        }
        if (debug && h->repr == NULL) {
            /* Keep a description: the callback is about to be dropped. */
            PyObject *repr = PyObject_Repr((PyObject *)h);
            if (repr == NULL) {
                return -1;
            }
            h->repr = repr;
        }
    }
    Py_CLEAR(h->callback);
    Py_CLEAR(h->args);
    return 0;
}

/* ---- type slots ---- */

void
cio_handle_track_context(HandleObj *h)
{
    /* Only we untrack it, and only once: it is untracked while the flag is
     * set. */
    if (h->ctx_untracked) {
        h->ctx_untracked = 0;
        PyObject_GC_Track(h->context);
    }
}

int
cio_handle_traverse_refs(HandleObj *self, visitproc visit, void *arg)
{
    Py_VISIT(self->callback);
    Py_VISIT(self->args);
    if (self->ctx_untracked) {
        /* An untracked context copy only this handle holds (see loop.c,
         * timers): what it refers to counts as referred to from here, for
         * the handle's whole life unless get_context() hands it out. */
        int r = Py_TYPE(self->context)->tp_traverse(self->context, visit, arg);
        if (r) {
            return r;
        }
    }
    else {
        Py_VISIT(self->context);
    }
    Py_VISIT(self->loop);
    Py_VISIT(self->repr);
    Py_VISIT(self->source_traceback);
    return 0;
}

static int
Handle_traverse(HandleObj *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    return cio_handle_traverse_refs(self, visit, arg);
}

static int
Handle_clear(HandleObj *self)
{
    /* A context must be tracked when it is freed: CPython's context
     * deallocator unlinks it from the GC's lists without checking. */
    cio_handle_track_context(self);
    Py_CLEAR(self->callback);
    Py_CLEAR(self->args);
    Py_CLEAR(self->context);
    Py_CLEAR(self->loop);
    Py_CLEAR(self->repr);
    Py_CLEAR(self->source_traceback);
    return 0;
}

static void
Handle_dealloc(HandleObj *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    cio_state *st = self->st;
    PyObject_GC_UnTrack(self);
    if (self->weakreflist != NULL) {
        PyObject_ClearWeakRefs((PyObject *)self);
    }
    Handle_clear(self);
    st->live.handles--;
    cio_freelist *fl = freelist_for(st, tp);
    if (fl == NULL || !cio_freelist_push(fl, (PyObject *)self)) {
        tp->tp_free(self);
    }
    Py_DECREF(tp);
}

static PyObject *
Handle_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"callback", "args", "loop", "context", NULL};
    PyObject *callback, *cargs, *loop, *context = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOO|O:Handle", kwlist, &callback, &cargs, &loop,
                                     &context)) {
        return NULL;
    }
    cio_state *st = cio_state_from_type(type);
    if (st == NULL) {
        return NULL;
    }
    PyObject *tuple = cargs == Py_None ? NULL : PySequence_Tuple(cargs);
    if (tuple == NULL && cargs != Py_None) {
        return NULL;
    }
    HandleObj *h = handle_make(st, type, callback, tuple, loop, context);
    Py_XDECREF(tuple);
    return (PyObject *)h;
}

static PyObject *
TimerHandle_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"when", "callback", "args", "loop", "context", NULL};
    PyObject *when_obj, *callback, *cargs, *loop, *context = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOO|O:TimerHandle", kwlist, &when_obj, &callback,
                                     &cargs, &loop, &context)) {
        return NULL;
    }
    double when = PyFloat_AsDouble(when_obj);
    if (when == -1.0 && PyErr_Occurred()) {
        return NULL;
    }
    cio_state *st = cio_state_from_type(type);
    if (st == NULL) {
        return NULL;
    }
    PyObject *tuple = cargs == Py_None ? NULL : PySequence_Tuple(cargs);
    if (tuple == NULL && cargs != Py_None) {
        return NULL;
    }
    TimerHandleObj *t = (TimerHandleObj *)handle_make(st, type, callback, tuple, loop, context);
    if (t != NULL) {
        t->when = when;
        t->when_is_int = PyLong_Check(when_obj);
    }
    Py_XDECREF(tuple);
    return (PyObject *)t;
}

/* The deadline as asyncio's TimerHandle keeps it: the int call_at() got
 * (exact up to 2**53, which a loop.time() based deadline never reaches), or
 * a float. */
static PyObject *
when_object(const TimerHandleObj *t)
{
    return t->when_is_int ? PyLong_FromDouble(t->when) : PyFloat_FromDouble(t->when);
}

static PyObject *
Handle_repr(HandleObj *self)
{
    if (self->repr != NULL) {
        return Py_NewRef(self->repr);
    }
    cio_state *st = self->st;
    PyObject *info = PyList_New(0);
    PyObject *item = NULL, *result = NULL, *sep = NULL, *joined = NULL;
    if (info == NULL) {
        return NULL;
    }
    item = PyType_GetName(Py_TYPE(self));
    if (item == NULL || PyList_Append(info, item) < 0) {
        goto done;
    }
    Py_CLEAR(item);
    if (self->cancelled) {
        item = PyUnicode_FromString("cancelled");
        if (item == NULL || PyList_Append(info, item) < 0) {
            goto done;
        }
        Py_CLEAR(item);
    }
    if (cio_timer_check(st, (PyObject *)self)) {
        PyObject *when = when_object((TimerHandleObj *)self);
        if (when == NULL) {
            goto done;
        }
        item = PyUnicode_FromFormat("when=%R", when);
        Py_DECREF(when);
        if (item == NULL || PyList_Append(info, item) < 0) {
            goto done;
        }
        Py_CLEAR(item);
    }
    if (self->callback != NULL) {
        item = format_callback(st, self->loop, self->callback, self->args);
        if (item == NULL || PyList_Append(info, item) < 0) {
            goto done;
        }
        Py_CLEAR(item);
    }
    if (self->source_traceback != NULL && PyList_Check(self->source_traceback) &&
        PyList_GET_SIZE(self->source_traceback) > 0) {
        PyObject *frame =
            PyList_GET_ITEM(self->source_traceback, PyList_GET_SIZE(self->source_traceback) - 1);
        PyObject *file = PySequence_GetItem(frame, 0);
        PyObject *line = file ? PySequence_GetItem(frame, 1) : NULL;
        if (line != NULL) {
            item = PyUnicode_FromFormat("created at %S:%S", file, line);
        }
        Py_XDECREF(file);
        Py_XDECREF(line);
        if (item == NULL || PyList_Append(info, item) < 0) {
            goto done;
        }
        Py_CLEAR(item);
    }
    sep = PyUnicode_FromString(" ");
    if (sep == NULL) {
        goto done;
    }
    joined = PyUnicode_Join(sep, info);
    if (joined == NULL) {
        goto done;
    }
    result = PyUnicode_FromFormat("<%U>", joined);
done:
    Py_XDECREF(item);
    Py_XDECREF(sep);
    Py_XDECREF(joined);
    Py_DECREF(info);
    return result;
}

static PyObject *
Handle_cancel(HandleObj *self, PyObject *Py_UNUSED(ignored))
{
    if (cio_handle_cancel(self) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
Handle_cancelled(HandleObj *self, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(self->cancelled);
}

static PyObject *
Handle_get_context(HandleObj *self, PyObject *Py_UNUSED(ignored))
{
    /* The context escapes to the caller: it must be tracked again. */
    cio_handle_track_context(self);
    return Py_NewRef(self->context ? self->context : Py_None);
}

static PyObject *
Handle_get_context_attr(HandleObj *self, void *Py_UNUSED(closure))
{
    return Handle_get_context(self, NULL);
}

static PyObject *
Handle__run(HandleObj *self, PyObject *Py_UNUSED(ignored))
{
    if (cio_handle_run(self) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
Handle_get_args(HandleObj *self, void *Py_UNUSED(closure))
{
    if (self->args != NULL) {
        return Py_NewRef(self->args);
    }
    if (self->cancelled) {
        Py_RETURN_NONE;
    }
    return PyTuple_New(0);
}

static PyObject *
Handle_get_callback(HandleObj *self, void *Py_UNUSED(closure))
{
    return Py_NewRef(self->callback ? self->callback : Py_None);
}

static PyObject *
Handle_get_cancelled(HandleObj *self, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(self->cancelled);
}

static PyObject *
Handle_get_source_traceback(HandleObj *self, void *Py_UNUSED(closure))
{
    return Py_NewRef(self->source_traceback ? self->source_traceback : Py_None);
}

static PyMethodDef Handle_methods[] = {
    {"cancel", (PyCFunction)Handle_cancel, METH_NOARGS, "Cancel the call."},
    {"cancelled", (PyCFunction)Handle_cancelled, METH_NOARGS,
     "Return True if the call was cancelled."},
    {"get_context", (PyCFunction)Handle_get_context, METH_NOARGS,
     "Return the contextvars.Context the callback runs in."},
    {"_run", (PyCFunction)Handle__run, METH_NOARGS, "Run the callback now."},
    {NULL, NULL},
};

static PyMemberDef Handle_members[] = {
    {"_loop", T_OBJECT, offsetof(HandleObj, loop), READONLY, NULL},
    {"_repr", T_OBJECT, offsetof(HandleObj, repr), READONLY, NULL},
    {"__weaklistoffset__", T_PYSSIZET, offsetof(HandleObj, weakreflist), READONLY},
    {NULL},
};

/* isinstance(h, asyncio.Handle) and isinstance(th, asyncio.TimerHandle)
 * hold, as for casyncio's futures (future.c): code that finds timers by
 * that check, as Home Assistant's test helper does in loop._scheduled,
 * finds ours.  type() gives casyncio's; subclasses report themselves. */
static PyObject *
Handle_get_class(PyObject *self, void *Py_UNUSED(closure))
{
    PyTypeObject *tp = Py_TYPE(self);
    cio_state *st = cio_state_from_type(tp); /* a subclass finds it too */
    if (st == NULL) {
        return NULL;
    }
    if (tp != st->HandleType && tp != st->TimerHandleType) {
        return Py_NewRef(tp);
    }
    if (cio_state_import_asyncio(st) < 0) {
        return NULL;
    }
    return Py_NewRef(tp == st->TimerHandleType ? st->asyncio_TimerHandle : st->asyncio_Handle);
}

static PyGetSetDef Handle_getset[] = {
    {"__class__", (getter)Handle_get_class, NULL, NULL, NULL},
    {"_callback", (getter)Handle_get_callback, NULL, NULL, NULL},
    {"_args", (getter)Handle_get_args, NULL, NULL, NULL},
    {"_cancelled", (getter)Handle_get_cancelled, NULL, NULL, NULL},
    {"_source_traceback", (getter)Handle_get_source_traceback, NULL, NULL, NULL},
    {"_context", (getter)Handle_get_context_attr, NULL, NULL, NULL},
    {NULL},
};

static PyType_Slot Handle_slots[] = {
    {Py_tp_doc, "A callback scheduled by call_soon(), as asyncio.Handle."},
    {Py_tp_new, Handle_new},
    {Py_tp_dealloc, Handle_dealloc},
    {Py_tp_traverse, Handle_traverse},
    {Py_tp_clear, Handle_clear},
    {Py_tp_repr, Handle_repr},
    {Py_tp_methods, Handle_methods},
    {Py_tp_members, Handle_members},
    {Py_tp_getset, Handle_getset},
    {0, NULL},
};

static PyType_Spec Handle_spec = {
    .name = "casyncio.Handle",
    .basicsize = sizeof(HandleObj),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = Handle_slots,
};

/* ---- TimerHandle ---- */

static PyObject *
TimerHandle_when(TimerHandleObj *self, PyObject *Py_UNUSED(ignored))
{
    return when_object(self);
}

static PyObject *
TimerHandle_get_when(TimerHandleObj *self, void *Py_UNUSED(closure))
{
    return when_object(self);
}

static PyObject *
TimerHandle_get_scheduled(TimerHandleObj *self, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(cio_heap_node_attached(&self->node));
}

static Py_hash_t
TimerHandle_hash(TimerHandleObj *self)
{
    PyObject *when = PyFloat_FromDouble(self->when);
    if (when == NULL) {
        return -1;
    }
    Py_hash_t h = PyObject_Hash(when);
    Py_DECREF(when);
    return h;
}

static PyObject *
TimerHandle_richcompare(TimerHandleObj *self, PyObject *other, int op)
{
    /* As asyncio.TimerHandle: ordered by deadline; equal when the deadline,
     * the call and the cancelled state all match. */
    if (!cio_timer_check(self->base.st, other)) {
        Py_RETURN_NOTIMPLEMENTED;
    }
    TimerHandleObj *o = (TimerHandleObj *)other;
    if (op == Py_EQ || op == Py_NE) {
        int eq = self->when == o->when && self->base.cancelled == o->base.cancelled;
        if (eq && (PyObject *)self != other) {
            PyObject *a = self->base.callback ? self->base.callback : Py_None;
            PyObject *b = o->base.callback ? o->base.callback : Py_None;
            eq = PyObject_RichCompareBool(a, b, Py_EQ);
            if (eq > 0) {
                PyObject *aa = Handle_get_args(&self->base, NULL);
                PyObject *ba = Handle_get_args(&o->base, NULL);
                eq = (aa && ba) ? PyObject_RichCompareBool(aa, ba, Py_EQ) : -1;
                Py_XDECREF(aa);
                Py_XDECREF(ba);
            }
            if (eq < 0) {
                return NULL;
            }
        }
        return PyBool_FromLong(op == Py_EQ ? eq : !eq);
    }
    Py_RETURN_RICHCOMPARE(self->when, o->when, op);
}

static PyMethodDef TimerHandle_methods[] = {
    {"when", (PyCFunction)TimerHandle_when, METH_NOARGS,
     "Return the scheduled time, on the loop's clock."},
    {NULL, NULL},
};

static PyGetSetDef TimerHandle_getset[] = {
    {"_when", (getter)TimerHandle_get_when, NULL, NULL, NULL},
    {"_scheduled", (getter)TimerHandle_get_scheduled, NULL, NULL, NULL},
    {NULL},
};

static PyType_Slot TimerHandle_slots[] = {
    {Py_tp_doc, "A callback scheduled by call_later()/call_at(), as asyncio.TimerHandle."},
    {Py_tp_new, TimerHandle_new},
    {Py_tp_dealloc, Handle_dealloc},
    {Py_tp_traverse, Handle_traverse},
    {Py_tp_clear, Handle_clear},
    {Py_tp_hash, TimerHandle_hash},
    {Py_tp_richcompare, TimerHandle_richcompare},
    {Py_tp_methods, TimerHandle_methods},
    {Py_tp_getset, TimerHandle_getset},
    {0, NULL},
};

static PyType_Spec TimerHandle_spec = {
    .name = "casyncio.TimerHandle",
    .basicsize = sizeof(TimerHandleObj),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = TimerHandle_slots,
};

int
cio_handle_init_types(PyObject *module, cio_state *st)
{
    st->HandleType = (PyTypeObject *)PyType_FromModuleAndSpec(module, &Handle_spec, NULL);
    if (st->HandleType == NULL) {
        return -1;
    }
    st->TimerHandleType = (PyTypeObject *)PyType_FromModuleAndSpec(module, &TimerHandle_spec,
                                                                   (PyObject *)st->HandleType);
    if (st->TimerHandleType == NULL) {
        return -1;
    }
    if (PyModule_AddType(module, st->HandleType) < 0 ||
        PyModule_AddType(module, st->TimerHandleType) < 0) {
        return -1;
    }
    return 0;
}
