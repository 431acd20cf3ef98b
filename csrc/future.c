/* future.c: casyncio.Future, the C counterpart of asyncio.Future, and the
 * iterator its __await__ returns.
 *
 * A future is pending, then finished (result or exception) or cancelled,
 * once.  Completing it schedules its done-callbacks on its loop:
 * - on a casyncio loop (not in debug mode) straight into the ready queue as
 *   plain entries, no Handle made; a task awaiting the future is a WAKEUP
 *   entry, resumed by a direct call;
 * - on any other loop through loop.call_soon(fn, fut, context=ctx), as
 *   asyncio's own futures do, so casyncio futures work on every loop.
 * The first callback is stored inline: most futures only ever get one (the
 * task awaiting them), and then no array is allocated.
 *
 * Invariants: callbacks exist only while pending; `exception` is set only
 * when finished with an exception; log_tb is true from set_exception() until
 * someone retrieves the exception (result(), exception(), or cancel()). */
#include "casyncio.h"

#include <stdarg.h>
#include <string.h>

static const char *const state_names[] = {"PENDING", "CANCELLED", "FINISHED"};

/* ---- callback storage ---- */

static void
cb_release(cio_fut_cb *cb)
{
    Py_CLEAR(cb->fn);
    Py_CLEAR(cb->ctx);
}

/* The context a callback runs in (borrowed; Py_None for the current one).
 * A task's wakeup runs in the task's context, which the entry does not
 * store. */
static PyObject *
cb_context(cio_fut_cb *cb)
{
    PyObject *ctx = cb->kind == CIO_CB_WAKEUP ? ((TaskObj *)cb->fn)->context : cb->ctx;
    return ctx ? ctx : Py_None;
}

static Py_ssize_t
callback_count(FutureObj *fut)
{
    return (fut->cb0.fn != NULL) + (fut->cbs ? fut->cbs->len : 0);
}

static int call_soon_cb(FutureObj *fut, cio_fut_cb *cb);

/* Appends a callback to a pending future's list (no scheduling). */
static int
append_callback(FutureObj *fut, PyObject *fn, PyObject *ctx, int kind)
{
    cio_fut_cb cb = {Py_NewRef(fn), Py_XNewRef(ctx), kind};
    if (fut->cb0.fn == NULL && (fut->cbs == NULL || fut->cbs->len == 0)) {
        fut->cb0 = cb;
        return 0;
    }
    cio_fut_cbs *cbs = fut->cbs;
    if (cbs == NULL || cbs->len == cbs->cap) {
        Py_ssize_t cap = cbs ? cbs->cap * 2 : 4;
        cio_fut_cbs *grown = PyMem_Realloc(cbs, sizeof(cio_fut_cbs) + cap * sizeof(cio_fut_cb));
        if (grown == NULL) {
            cb_release(&cb);
            PyErr_NoMemory();
            return -1;
        }
        if (cbs == NULL) {
            grown->len = 0;
        }
        grown->cap = cap;
        fut->cbs = cbs = grown;
    }
    cbs->items[cbs->len++] = cb;
    return 0;
}

int
cio_future_add_callback(FutureObj *fut, PyObject *fn, PyObject *ctx, int kind)
{
    if (fut->state == CIO_PENDING) {
        return append_callback(fut, fn, ctx, kind);
    }
    /* Already done: schedule it now, as asyncio does. */
    cio_fut_cb cb = {Py_NewRef(fn), Py_XNewRef(ctx), kind};
    return call_soon_cb(fut, &cb);
}

/* ---- scheduling callbacks ---- */

/* Schedules one callback, consuming the references in *cb. */
static int
call_soon_cb(FutureObj *fut, cio_fut_cb *cb)
{
    cio_state *st = fut->st;
    PyObject *loop = fut->loop;
    int rc = 0;
    if (cb->kind == CIO_CB_SOCKOP) {
        /* Internal bookkeeping (unwatch the fd), done at once. */
        cio_sockop_future_done(cb->fn);
        cb_release(cb);
        return 0;
    }
    if (cio_loop_check(st, loop) && !((LoopObj *)loop)->debug) {
        LoopObj *lp = (LoopObj *)loop;
        if (cio_loop_check_closed(lp) < 0) {
            cb_release(cb);
            return -1;
        }
        uint32_t kind = cb->kind == CIO_CB_WAKEUP ? CIO_READY_TASK_WAKEUP : CIO_READY_CALL1;
        if (cio_loop_push(lp, kind, cb->fn, Py_NewRef(fut), cb->ctx) < 0) {
            Py_DECREF(fut);
            cb_release(cb);
            return -1;
        }
        /* The queue owns fn and ctx now. */
        cb->fn = cb->ctx = NULL;
        return 0;
    }
    /* Another loop (or debug mode, which checks threads and records where
     * callbacks come from): go through its call_soon(). */
    PyObject *fn =
        cb->kind == CIO_CB_WAKEUP ? cio_task_wakeup_method((TaskObj *)cb->fn) : Py_NewRef(cb->fn);
    if (fn == NULL) {
        cb_release(cb);
        return -1;
    }
    PyObject *args[5] = {NULL, loop, fn, (PyObject *)fut, cb_context(cb)};
    PyObject *res = PyObject_VectorcallMethod(
        st->str_call_soon, args + 1, 3 | PY_VECTORCALL_ARGUMENTS_OFFSET, st->kwnames_context);
    if (res == NULL) {
        rc = -1;
    }
    Py_XDECREF(res);
    Py_DECREF(fn);
    cb_release(cb);
    return rc;
}

static int
schedule_callbacks(FutureObj *fut)
{
    /* Detach the callbacks before scheduling any: scheduling may run code
     * (another loop's call_soon) that looks at this future. */
    cio_fut_cb cb0 = fut->cb0;
    cio_fut_cbs *cbs = fut->cbs;
    fut->cb0.fn = fut->cb0.ctx = NULL;
    fut->cbs = NULL;
    int rc = 0;
    if (cb0.fn != NULL) {
        rc = call_soon_cb(fut, &cb0);
    }
    if (cbs != NULL) {
        for (Py_ssize_t i = 0; i < cbs->len; i++) {
            if (rc == 0) {
                rc = call_soon_cb(fut, &cbs->items[i]);
            }
            else {
                cb_release(&cbs->items[i]);
            }
        }
        PyMem_Free(cbs);
    }
    return rc;
}

/* ---- state changes ---- */

#define NOT_INITIALIZED "Future object is not initialized."

/* 0 if fut was initialised; else -1 with exc_type(message) raised: asyncio
 * raises RuntimeError from most uses of such a future, InvalidStateError
 * from result() and exception(). */
static int
check_init_as(FutureObj *fut, PyObject *exc_type, const char *message)
{
    if (fut->loop == NULL) {
        PyErr_SetString(exc_type, message);
        return -1;
    }
    return 0;
}

static int
check_init(FutureObj *fut)
{
    return check_init_as(fut, PyExc_RuntimeError, NOT_INITIALIZED);
}

static int
check_pending(FutureObj *fut)
{
    if (check_init(fut) < 0) {
        return -1;
    }
    if (fut->state != CIO_PENDING) {
        PyErr_Format(fut->st->InvalidStateError, "%s: %R", state_names[fut->state], fut);
        return -1;
    }
    return 0;
}

int
cio_future_set_result(FutureObj *fut, PyObject *result)
{
    if (check_pending(fut) < 0) {
        return -1;
    }
    fut->result = Py_NewRef(result);
    fut->state = CIO_FINISHED;
    return schedule_callbacks(fut);
}

int
cio_future_set_exception(FutureObj *fut, PyObject *exc)
{
    if (check_pending(fut) < 0) {
        return -1;
    }
    PyObject *value;
    if (PyExceptionClass_Check(exc)) {
        value = PyObject_CallNoArgs(exc);
        if (value == NULL) {
            return -1;
        }
        /* Calling the class ran code: the future may be done by now. */
        if (check_pending(fut) < 0) {
            Py_DECREF(value);
            return -1;
        }
    }
    else {
        value = Py_NewRef(exc);
    }
    if (!PyExceptionInstance_Check(value)) {
        Py_DECREF(value);
        PyErr_SetString(PyExc_TypeError, "invalid exception object");
        return -1;
    }
    /* A StopIteration would end the awaiting coroutine as if it returned.
     * From 3.12.6 on (CPython gh-112182), asyncio stores one (or a subclass)
     * as a RuntimeError caused by it; before, it refuses StopIteration
     * itself.  The running interpreter decides: a build made with 3.12.1's
     * headers also runs on later 3.12 releases. */
    if (Py_Version >= 0x030C0600 && PyErr_GivenExceptionMatches(value, PyExc_StopIteration)) {
        PyObject *err = PyObject_CallFunction(PyExc_RuntimeError, "s",
                                              "StopIteration interacts badly with generators "
                                              "and cannot be raised into a Future");
        if (err == NULL) {
            Py_DECREF(value);
            return -1;
        }
        PyException_SetCause(err, Py_NewRef(value));
        PyException_SetContext(err, value); /* steals */
        value = err;
    }
    else if (Py_IS_TYPE(value, (PyTypeObject *)PyExc_StopIteration)) {
        Py_DECREF(value);
        PyErr_SetString(PyExc_TypeError,
                        "StopIteration interacts badly with generators and cannot "
                        "be raised into a Future");
        return -1;
    }
    fut->exception = value;
    fut->exception_tb = PyException_GetTraceback(value);
    fut->state = CIO_FINISHED;
    if (schedule_callbacks(fut) < 0) {
        return -1;
    }
    fut->log_tb = 1;
    return 0;
}

int
cio_future_cancel(FutureObj *fut, PyObject *msg)
{
    fut->log_tb = 0;
    if (fut->state != CIO_PENDING) {
        return 0;
    }
    fut->state = CIO_CANCELLED;
    Py_XSETREF(fut->cancel_message, Py_XNewRef(msg));
    return schedule_callbacks(fut) < 0 ? -1 : 1;
}

PyObject *
cio_future_make_cancelled_error(FutureObj *fut)
{
    if (fut->cancelled_exc != NULL) {
        /* The task's own CancelledError, raised once and handed on. */
        PyObject *exc = fut->cancelled_exc;
        fut->cancelled_exc = NULL;
        return exc;
    }
    PyObject *msg = fut->cancel_message;
    if (msg == NULL || msg == Py_None) {
        return PyObject_CallNoArgs(fut->st->CancelledError);
    }
    return PyObject_CallOneArg(fut->st->CancelledError, msg);
}

PyObject *
cio_future_outcome(FutureObj *fut, PyObject **exc)
{
    *exc = NULL;
    if (fut->state == CIO_CANCELLED) {
        *exc = cio_future_make_cancelled_error(fut);
        if (*exc == NULL) {
            *exc = cio_err_take();
        }
        return NULL;
    }
    fut->log_tb = 0;
    if (fut->exception != NULL) {
        /* As `raise exc.with_traceback(tb)`: each raise starts from the
         * traceback the exception had when it was set. */
        PyException_SetTraceback(fut->exception, fut->exception_tb ? fut->exception_tb : Py_None);
        *exc = Py_NewRef(fut->exception);
        return NULL;
    }
    return Py_NewRef(fut->result ? fut->result : Py_None);
}

/* ---- construction ---- */

static PyObject *
resolve_loop(cio_state *st, PyObject *loop)
{
    if (loop != NULL && loop != Py_None) {
        return Py_NewRef(loop);
    }
    if (cio_state_import_asyncio(st) < 0) {
        return NULL;
    }
    return PyObject_CallNoArgs(st->get_event_loop);
}

int
cio_future_init(FutureObj *fut, PyObject *loop)
{
    cio_state *st = fut->st;
#if PY_VERSION_HEX >= 0x030F0000
    /* From 3.15 a future is initialized once (gh-142615). */
    if (fut->loop != NULL) {
        PyErr_Format(PyExc_RuntimeError, "%T object is already initialized", fut);
        return -1;
    }
#endif
    /* __init__ may be called again on a used future: start afresh. */
    cio_future_clear(fut);
    fut->state = CIO_PENDING;
    fut->log_tb = 0;
    fut->blocking = 0;
    fut->loop = resolve_loop(st, loop);
    if (fut->loop == NULL) {
        return -1;
    }
    return cio_source_traceback(st, fut->loop, &fut->source_traceback);
}

static PyObject *
Future_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    cio_state *st = cio_state_from_type(type);
    if (st == NULL) {
        return NULL;
    }
    FutureObj *fut = (FutureObj *)type->tp_alloc(type, 0);
    if (fut == NULL) {
        return NULL;
    }
    fut->st = st;
    fut->is_task = PyType_IsSubtype(type, st->TaskType);
    st->live.futures++;
    return (PyObject *)fut;
}

static int
Future_init(FutureObj *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"loop", NULL};
    PyObject *loop = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|$O:Future", kwlist, &loop)) {
        return -1;
    }
    return cio_future_init(self, loop);
}

PyObject *
cio_future_new(cio_state *st, PyObject *loop)
{
    FutureObj *fut = PyObject_GC_New(FutureObj, st->FutureType);
    if (fut == NULL) {
        return NULL;
    }
    memset((char *)fut + sizeof(PyObject), 0, sizeof(FutureObj) - sizeof(PyObject));
    fut->st = st;
    st->live.futures++;
    PyObject_GC_Track(fut);
    if (cio_future_init(fut, loop) < 0) {
        Py_DECREF(fut);
        return NULL;
    }
    return (PyObject *)fut;
}

/* ---- GC and finalization ---- */

int
cio_future_traverse(FutureObj *fut, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(fut));
    Py_VISIT(fut->loop);
    Py_VISIT(fut->cb0.fn);
    Py_VISIT(fut->cb0.ctx);
    if (fut->cbs != NULL) {
        for (Py_ssize_t i = 0; i < fut->cbs->len; i++) {
            Py_VISIT(fut->cbs->items[i].fn);
            Py_VISIT(fut->cbs->items[i].ctx);
        }
    }
    Py_VISIT(fut->result);
    Py_VISIT(fut->exception);
    Py_VISIT(fut->exception_tb);
    Py_VISIT(fut->source_traceback);
    Py_VISIT(fut->cancel_message);
    Py_VISIT(fut->cancelled_exc);
    Py_VISIT(fut->dict);
    Py_VISIT(fut->awaited_by);
    return 0;
}

int
cio_future_clear(FutureObj *fut)
{
    Py_CLEAR(fut->loop);
    cb_release(&fut->cb0);
    cio_fut_cbs *cbs = fut->cbs;
    fut->cbs = NULL;
    if (cbs != NULL) {
        for (Py_ssize_t i = 0; i < cbs->len; i++) {
            cb_release(&cbs->items[i]);
        }
        PyMem_Free(cbs);
    }
    Py_CLEAR(fut->result);
    Py_CLEAR(fut->exception);
    Py_CLEAR(fut->exception_tb);
    Py_CLEAR(fut->source_traceback);
    Py_CLEAR(fut->cancel_message);
    Py_CLEAR(fut->cancelled_exc);
    Py_CLEAR(fut->awaited_by);
    return 0;
}

/* ---- who awaits it (asyncio.graph) ---- */

/* One waiter is kept as itself; a second turns the record into a set
 * (waiters are futures, so a set is always the record, never a waiter). */
int
cio_future_awaited_by_add(FutureObj *fut, PyObject *waiter)
{
    if (fut->awaited_by == NULL) {
        fut->awaited_by = Py_NewRef(waiter);
        return 0;
    }
    if (!PySet_CheckExact(fut->awaited_by)) {
        PyObject *set = PySet_New(NULL);
        if (set == NULL || PySet_Add(set, fut->awaited_by) < 0) {
            Py_XDECREF(set);
            return -1;
        }
        Py_SETREF(fut->awaited_by, set);
    }
    return PySet_Add(fut->awaited_by, waiter);
}

int
cio_future_awaited_by_discard(FutureObj *fut, PyObject *waiter)
{
    if (fut->awaited_by == NULL) {
        return 0;
    }
    if (!PySet_CheckExact(fut->awaited_by)) {
        if (fut->awaited_by == waiter) {
            Py_CLEAR(fut->awaited_by);
        }
        return 0;
    }
    return PySet_Discard(fut->awaited_by, waiter) < 0 ? -1 : 0;
}

#if PY_VERSION_HEX >= 0x030E0000
static PyObject *
Future_get_awaited_by(FutureObj *self, void *Py_UNUSED(closure))
{
    if (self->awaited_by == NULL) {
        Py_RETURN_NONE;
    }
    if (PySet_CheckExact(self->awaited_by)) {
        return PyFrozenSet_New(self->awaited_by);
    }
    PyObject *one = PyTuple_Pack(1, self->awaited_by);
    PyObject *set = one ? PyFrozenSet_New(one) : NULL;
    Py_XDECREF(one);
    return set;
}
#endif

static int
Future_traverse(FutureObj *self, visitproc visit, void *arg)
{
    return cio_future_traverse(self, visit, arg);
}

static int
Future_tp_clear(FutureObj *self)
{
    Py_CLEAR(self->dict); /* not in cio_future_clear(): __init__ keeps it */
    return cio_future_clear(self);
}

void
cio_future_report_destroyed(FutureObj *fut, const char *format, ...)
{
    cio_state *st = fut->st;
    va_list va;
    va_start(va, format);
    PyObject *ctx = Py_VaBuildValue(format, va);
    va_end(va);
    PyObject *res = NULL;
    if (ctx != NULL &&
        (fut->source_traceback == NULL ||
         PyDict_SetItem(ctx, st->str_source_traceback, fut->source_traceback) == 0)) {
        res = PyObject_CallMethodOneArg(fut->loop, st->str_call_exception_handler, ctx);
    }
    if (res == NULL) {
        PyErr_WriteUnraisable((PyObject *)fut);
    }
    Py_XDECREF(res);
    Py_XDECREF(ctx);
}

void
cio_future_finalize(FutureObj *fut)
{
    cio_state *st = fut->st;
    if (!fut->log_tb || fut->exception == NULL || fut->loop == NULL) {
        return;
    }
    fut->log_tb = 0;
    PyObject *saved = cio_err_take();
    PyObject *name = PyType_GetName(Py_TYPE(fut));
    PyObject *message =
        name ? PyUnicode_FromFormat("%U exception was never retrieved", name) : NULL;
    /* If message is NULL, Py_BuildValue fails and the error is printed. */
    cio_future_report_destroyed(fut, "{OOOOOO}", st->str_message, message, st->str_exception,
                                fut->exception, st->str_future, (PyObject *)fut);
    Py_XDECREF(name);
    Py_XDECREF(message);
    if (saved != NULL) {
        cio_err_restore(saved);
    }
}

static void
Future_finalize(FutureObj *self)
{
    cio_future_finalize(self);
}

static void
Future_dealloc(FutureObj *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    cio_state *st = self->st;
    if (PyObject_CallFinalizerFromDealloc((PyObject *)self) < 0) {
        return; /* resurrected by the exception handler */
    }
    PyObject_GC_UnTrack(self);
    if (self->is_task) {
        cio_task_unlink((TaskObj *)self);
    }
    if (self->weakreflist != NULL) {
        PyObject_ClearWeakRefs((PyObject *)self);
    }
    if (tp->tp_clear != NULL) {
        tp->tp_clear((PyObject *)self);
    }
    st->live.futures--;
    tp->tp_free(self);
    Py_DECREF(tp);
}

/* ---- Python methods ---- */

static PyObject *
Future_result(FutureObj *self, PyObject *Py_UNUSED(ignored))
{
    if (check_init_as(self, self->st->InvalidStateError, NOT_INITIALIZED) < 0) {
        return NULL;
    }
    if (self->state == CIO_PENDING) {
        PyErr_SetString(self->st->InvalidStateError, "Result is not ready.");
        return NULL;
    }
    PyObject *exc;
    PyObject *res = cio_future_outcome(self, &exc);
    if (exc != NULL) {
        cio_err_restore(exc);
    }
    return res;
}

static PyObject *
Future_exception(FutureObj *self, PyObject *Py_UNUSED(ignored))
{
    if (check_init_as(self, self->st->InvalidStateError, NOT_INITIALIZED) < 0) {
        return NULL;
    }
    if (self->state == CIO_CANCELLED) {
        PyObject *exc = cio_future_make_cancelled_error(self);
        if (exc != NULL) {
            cio_err_restore(exc);
        }
        return NULL;
    }
    if (self->state == CIO_PENDING) {
        PyErr_SetString(self->st->InvalidStateError, "Exception is not set.");
        return NULL;
    }
    self->log_tb = 0;
    return Py_NewRef(self->exception ? self->exception : Py_None);
}

static PyObject *
Future_set_result(FutureObj *self, PyObject *result)
{
    if (cio_future_set_result(self, result) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
Future_set_exception(FutureObj *self, PyObject *exc)
{
    if (cio_future_set_exception(self, exc) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
Future_cancel(FutureObj *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"msg", NULL};
    PyObject *msg = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|O:cancel", kwlist, &msg)) {
        return NULL;
    }
    if (check_init(self) < 0) {
        return NULL;
    }
    int rc = cio_future_cancel(self, msg);
    if (rc < 0) {
        return NULL;
    }
    return PyBool_FromLong(rc);
}

static PyObject *
Future_cancelled(FutureObj *self, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(self->loop != NULL && self->state == CIO_CANCELLED);
}

static PyObject *
Future_done(FutureObj *self, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(self->loop != NULL && self->state != CIO_PENDING);
}

static PyObject *
Future_get_loop(FutureObj *self, PyObject *Py_UNUSED(ignored))
{
    if (check_init(self) < 0) {
        return NULL;
    }
    return Py_NewRef(self->loop);
}

static PyObject *
Future_add_done_callback(FutureObj *self, PyObject *const *args, Py_ssize_t nargs,
                         PyObject *kwnames)
{
    PyObject *fn = NULL, *ctx = Py_None;
    if (nargs != 1) {
        PyErr_Format(PyExc_TypeError,
                     "add_done_callback() takes exactly 1 positional "
                     "argument (%zd given)",
                     nargs);
        return NULL;
    }
    fn = args[0];
    if (kwnames != NULL) {
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(kwnames); i++) {
            PyObject *key = PyTuple_GET_ITEM(kwnames, i);
            if (!cio_kwname_is(key, self->st->str_context)) {
                PyErr_Format(PyExc_TypeError,
                             "add_done_callback() got an unexpected keyword argument '%U'", key);
                return NULL;
            }
            ctx = args[nargs + i];
        }
    }
    if (check_init_as(self, PyExc_RuntimeError, "uninitialized Future object") < 0) {
        return NULL;
    }
    if (ctx == Py_None) {
        ctx = PyContext_CopyCurrent();
        if (ctx == NULL) {
            return NULL;
        }
    }
    else {
        Py_INCREF(ctx);
    }
    int rc = cio_future_add_callback(self, fn, ctx, CIO_CB_CALL);
    Py_DECREF(ctx);
    if (rc < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* The callable a callback entry stands for (a new reference). */
static PyObject *
cb_callable(cio_fut_cb *cb)
{
    if (cb->kind == CIO_CB_WAKEUP) {
        return cio_task_wakeup_method((TaskObj *)cb->fn);
    }
    return Py_NewRef(cb->fn);
}

static PyObject *
Future_remove_done_callback(FutureObj *self, PyObject *fn)
{
    if (check_init(self) < 0) {
        return NULL;
    }
    Py_ssize_t n = callback_count(self);
    if (n == 0) {
        return PyLong_FromLong(0);
    }
    /* Take the callbacks out, compare each (comparisons run Python code,
     * which may add callbacks meanwhile), and put the survivors back in
     * front of whatever was added. */
    cio_fut_cb cb0 = self->cb0;
    cio_fut_cbs *cbs = self->cbs;
    self->cb0.fn = self->cb0.ctx = NULL;
    self->cbs = NULL;
    cio_fut_cb *all = PyMem_Malloc(n * sizeof(cio_fut_cb));
    if (all == NULL) {
        self->cb0 = cb0;
        self->cbs = cbs;
        return PyErr_NoMemory();
    }
    Py_ssize_t k = 0;
    if (cb0.fn != NULL) {
        all[k++] = cb0;
    }
    for (Py_ssize_t i = 0; cbs != NULL && i < cbs->len; i++) {
        all[k++] = cbs->items[i];
    }
    PyMem_Free(cbs);

    Py_ssize_t removed = 0;
    int err = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        int eq = 0;
        if (!err) {
            PyObject *callable = cb_callable(&all[i]);
            eq = callable ? PyObject_RichCompareBool(callable, fn, Py_EQ) : -1;
            Py_XDECREF(callable);
            if (eq < 0) {
                err = 1;
                eq = 0;
            }
        }
        if (eq) {
            cb_release(&all[i]);
            removed++;
        }
    }
    /* Survivors first, then callbacks added during the comparisons. */
    cio_fut_cb added0 = self->cb0;
    cio_fut_cbs *added = self->cbs;
    self->cb0.fn = self->cb0.ctx = NULL;
    self->cbs = NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (all[i].fn != NULL) {
            if (!err && append_callback(self, all[i].fn, all[i].ctx, all[i].kind) < 0) {
                err = 1;
            }
            cb_release(&all[i]);
        }
    }
    PyMem_Free(all);
    if (added0.fn != NULL) {
        if (!err && append_callback(self, added0.fn, added0.ctx, added0.kind) < 0) {
            err = 1;
        }
        cb_release(&added0);
    }
    for (Py_ssize_t i = 0; added != NULL && i < added->len; i++) {
        if (!err && append_callback(self, added->items[i].fn, added->items[i].ctx,
                                    added->items[i].kind) < 0) {
            err = 1;
        }
        cb_release(&added->items[i]);
    }
    PyMem_Free(added);
    if (err) {
        return NULL;
    }
    return PyLong_FromSsize_t(removed);
}

static PyObject *
Future_make_cancelled_error(FutureObj *self, PyObject *Py_UNUSED(ignored))
{
    return cio_future_make_cancelled_error(self);
}

static PyObject *
Future_repr(FutureObj *self)
{
    if (cio_state_import_asyncio(self->st) < 0) {
        return NULL;
    }
    return PyObject_CallOneArg(self->is_task ? self->st->task_repr : self->st->future_repr,
                               (PyObject *)self);
}

/* ---- attributes ---- */

/* isinstance(fut, asyncio.Future) and isinstance(task, asyncio.Task) hold,
 * as libraries expect (anyio decides whether a task still needs cancelling
 * by isinstance(task._fut_waiter, asyncio.Future)): when the type check
 * fails, isinstance() asks the object's __class__, and ours names asyncio's
 * class.  type() still gives casyncio's, which is what C code (asyncio's
 * own included) goes by; subclasses of ours report themselves. */
static PyObject *
Future_get_class(FutureObj *self, void *Py_UNUSED(closure))
{
    cio_state *st = self->st;
    PyTypeObject *tp = Py_TYPE(self);
    if (tp != st->FutureType && tp != st->TaskType) {
        return Py_NewRef(tp);
    }
    if (cio_state_import_asyncio(st) < 0) {
        return NULL;
    }
    return Py_NewRef(tp == st->TaskType ? st->asyncio_Task : st->asyncio_Future);
}

static PyObject *
Future_get_loop_attr(FutureObj *self, void *Py_UNUSED(closure))
{
    return Py_NewRef(self->loop ? self->loop : Py_None);
}

static PyObject *
Future_get_state(FutureObj *self, void *Py_UNUSED(closure))
{
    cio_state *st = self->st;
    if (check_init(self) < 0) {
        return NULL;
    }
    PyObject *names[] = {st->str_PENDING, st->str_CANCELLED, st->str_FINISHED};
    return Py_NewRef(names[self->state]);
}

static PyObject *
Future_get_result_attr(FutureObj *self, void *Py_UNUSED(closure))
{
    if (check_init(self) < 0) {
        return NULL;
    }
    return Py_NewRef(self->result ? self->result : Py_None);
}

static PyObject *
Future_get_exception_attr(FutureObj *self, void *Py_UNUSED(closure))
{
    if (check_init(self) < 0) {
        return NULL;
    }
    return Py_NewRef(self->exception ? self->exception : Py_None);
}

static PyObject *
Future_get_callbacks(FutureObj *self, void *Py_UNUSED(closure))
{
    if (check_init(self) < 0) {
        return NULL;
    }
    Py_ssize_t n = callback_count(self);
    if (n == 0) {
        Py_RETURN_NONE;
    }
    PyObject *list = PyList_New(0);
    if (list == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        cio_fut_cb *cb;
        if (self->cb0.fn != NULL) {
            cb = i == 0 ? &self->cb0 : &self->cbs->items[i - 1];
        }
        else {
            cb = &self->cbs->items[i];
        }
        PyObject *callable = cb_callable(cb);
        PyObject *item = callable ? PyTuple_Pack(2, callable, cb_context(cb)) : NULL;
        Py_XDECREF(callable);
        if (item == NULL || PyList_Append(list, item) < 0) {
            Py_XDECREF(item);
            Py_DECREF(list);
            return NULL;
        }
        Py_DECREF(item);
        n = callback_count(self); /* cb_callable may run code */
    }
    return list;
}

static PyObject *
Future_get_source_traceback(FutureObj *self, void *Py_UNUSED(closure))
{
    return Py_NewRef(self->source_traceback ? self->source_traceback : Py_None);
}

static PyObject *
Future_get_log_traceback(FutureObj *self, void *Py_UNUSED(closure))
{
    if (check_init(self) < 0) {
        return NULL;
    }
    return PyBool_FromLong(self->log_tb);
}

static int
Future_set_log_traceback(FutureObj *self, PyObject *value, void *Py_UNUSED(closure))
{
    int v = cio_setter_truth(value);
    if (v < 0) {
        return -1;
    }
    if (v) {
        PyErr_SetString(PyExc_ValueError, "_log_traceback can only be set to False");
        return -1;
    }
    self->log_tb = 0;
    return 0;
}

static PyObject *
Future_get_blocking(FutureObj *self, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(self->blocking);
}

static int
Future_set_blocking(FutureObj *self, PyObject *value, void *Py_UNUSED(closure))
{
    int v = cio_setter_truth(value);
    if (v < 0) {
        return -1;
    }
    self->blocking = (char)v;
    return 0;
}

static PyObject *
Future_get_cancel_message(FutureObj *self, void *Py_UNUSED(closure))
{
    return Py_NewRef(self->cancel_message ? self->cancel_message : Py_None);
}

static int
Future_set_cancel_message(FutureObj *self, PyObject *value, void *Py_UNUSED(closure))
{
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete attribute");
        return -1;
    }
    Py_XSETREF(self->cancel_message, Py_NewRef(value));
    return 0;
}

/* ---- await ---- */

static PyObject *
Future_await(FutureObj *self, PyObject *Py_UNUSED(ignored))
{
    if (check_init(self) < 0) {
        return NULL;
    }
    cio_state *st = self->st;
    FutureIterObj *it = (FutureIterObj *)cio_freelist_pop(&st->iter_freelist, st->FutureIterType);
    if (it == NULL) {
        it = PyObject_GC_New(FutureIterObj, st->FutureIterType);
        if (it == NULL) {
            return NULL;
        }
    }
    it->st = st;
    it->future = (FutureObj *)Py_NewRef(self);
    PyObject_GC_Track(it);
    return (PyObject *)it;
}

static PyMethodDef Future_methods[] = {
    {"result", (PyCFunction)Future_result, METH_NOARGS,
     "Return the result, or raise the exception, of a done future."},
    {"exception", (PyCFunction)Future_exception, METH_NOARGS,
     "Return the exception (or None) of a done future."},
    {"set_result", (PyCFunction)Future_set_result, METH_O,
     "Mark the future done with a result and schedule its callbacks."},
    {"set_exception", (PyCFunction)Future_set_exception, METH_O,
     "Mark the future done with an exception and schedule its callbacks."},
    {"cancel", (PyCFunction)(void (*)(void))Future_cancel, METH_VARARGS | METH_KEYWORDS,
     "cancel(msg=None): cancel the future; False if it was already done."},
    {"cancelled", (PyCFunction)Future_cancelled, METH_NOARGS, NULL},
    {"done", (PyCFunction)Future_done, METH_NOARGS, NULL},
    {"get_loop", (PyCFunction)Future_get_loop, METH_NOARGS,
     "Return the event loop the future is bound to."},
    {"add_done_callback", (PyCFunction)(void (*)(void))Future_add_done_callback,
     METH_FASTCALL | METH_KEYWORDS,
     "add_done_callback(fn, *, context=None): call fn(future) when done."},
    {"remove_done_callback", (PyCFunction)Future_remove_done_callback, METH_O,
     "Remove every instance of fn from the callbacks; return how many."},
    {"_make_cancelled_error", (PyCFunction)Future_make_cancelled_error, METH_NOARGS, NULL},
    {"__await__", (PyCFunction)Future_await, METH_NOARGS, NULL},
    {"__iter__", (PyCFunction)Future_await, METH_NOARGS, NULL},
    {"__class_getitem__", Py_GenericAlias, METH_O | METH_CLASS, NULL},
    {NULL, NULL},
};

static PyGetSetDef Future_getset[] = {
    {"__class__", (getter)Future_get_class, NULL, NULL, NULL},
    {"_loop", (getter)Future_get_loop_attr, NULL, NULL, NULL},
    {"_state", (getter)Future_get_state, NULL, NULL, NULL},
    {"_result", (getter)Future_get_result_attr, NULL, NULL, NULL},
    {"_exception", (getter)Future_get_exception_attr, NULL, NULL, NULL},
    {"_callbacks", (getter)Future_get_callbacks, NULL, NULL, NULL},
    {"_source_traceback", (getter)Future_get_source_traceback, NULL, NULL, NULL},
    {"_log_traceback", (getter)Future_get_log_traceback, (setter)Future_set_log_traceback, NULL,
     NULL},
#if PY_VERSION_HEX >= 0x030E0000
    {"_asyncio_awaited_by", (getter)Future_get_awaited_by, NULL, NULL, NULL},
#endif
    {"_asyncio_future_blocking", (getter)Future_get_blocking, (setter)Future_set_blocking, NULL,
     NULL},
    {"_cancel_message", (getter)Future_get_cancel_message, (setter)Future_set_cancel_message, NULL,
     NULL},
    {NULL},
};

static PyMemberDef Future_members[] = {
    {"__weaklistoffset__", T_PYSSIZET, offsetof(FutureObj, weakreflist), READONLY},
    {"__dictoffset__", T_PYSSIZET, offsetof(FutureObj, dict), READONLY},
    {NULL},
};

static PyObject *
Future_iter(FutureObj *self)
{
    return Future_await(self, NULL);
}

static PyType_Slot Future_slots[] = {
    {Py_tp_doc, "A Future, as asyncio.Future, implemented in C."},
    {Py_tp_new, Future_new},
    {Py_tp_init, Future_init},
    {Py_tp_dealloc, Future_dealloc},
    {Py_tp_finalize, Future_finalize},
    {Py_tp_traverse, Future_traverse},
    {Py_tp_clear, Future_tp_clear},
    {Py_tp_repr, Future_repr},
    {Py_tp_iter, Future_iter},
    {Py_am_await, Future_iter},
    {Py_tp_methods, Future_methods},
    {Py_tp_getset, Future_getset},
    {Py_tp_members, Future_members},
    {0, NULL},
};

static PyType_Spec Future_spec = {
    .name = "casyncio.Future",
    .basicsize = sizeof(FutureObj),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = Future_slots,
};

/* ---- the iterator ---- */

/* One step of `await future`: the first time, a pending future is yielded
 * up to the task (with _asyncio_future_blocking raised so the task knows it
 * is a future); when resumed, the future must be done, and its result is
 * the value of the await. */
static PySendResult
FutureIter_am_send(FutureIterObj *it, PyObject *Py_UNUSED(arg), PyObject **result)
{
    FutureObj *fut = it->future;
    *result = NULL;
    if (fut == NULL) {
        *result = Py_NewRef(Py_None);
        return PYGEN_RETURN;
    }
    if (fut->state == CIO_PENDING) {
        if (!fut->blocking) {
            fut->blocking = 1;
            *result = Py_NewRef(fut);
            return PYGEN_NEXT;
        }
        PyErr_SetString(PyExc_RuntimeError, "await wasn't used with future");
        return PYGEN_ERROR;
    }
    it->future = NULL;
    PyObject *exc;
    PyObject *res = cio_future_outcome(fut, &exc);
    Py_DECREF(fut);
    if (res == NULL) {
        if (exc != NULL) {
            cio_err_restore(exc);
        }
        return PYGEN_ERROR;
    }
    *result = res;
    return PYGEN_RETURN;
}

static PyObject *
FutureIter_iternext(FutureIterObj *it)
{
    PyObject *result;
    switch (FutureIter_am_send(it, Py_None, &result)) {
    case PYGEN_NEXT:
        return result;
    case PYGEN_RETURN:
        /* An iterator at its end returns NULL, and StopIteration is optional:
         * without one, the value of the `await` is None.  From 3.12 the
         * interpreter's `await` calls this slot (3.11's called am_send), so
         * raising only for another value saves an exception per await of a
         * future whose result is None.  Build the instance ourselves: handed
         * a tuple, PyErr_SetObject would take it for the arguments. */
        if (result != Py_None) {
            PyObject *stop = PyObject_CallOneArg(PyExc_StopIteration, result);
            if (stop != NULL) {
                PyErr_SetObject(PyExc_StopIteration, stop);
                Py_DECREF(stop);
            }
        }
        Py_DECREF(result);
        return NULL;
    default:
        return NULL;
    }
}

static PyObject *
FutureIter_send(FutureIterObj *it, PyObject *arg)
{
    /* Futures ignore what is sent in, like asyncio's.  A method, unlike the
     * slot, must raise StopIteration at the end. */
    PyObject *res = FutureIter_iternext(it);
    if (res == NULL && !PyErr_Occurred()) {
        PyErr_SetNone(PyExc_StopIteration);
    }
    return res;
}

static PyObject *
FutureIter_throw(FutureIterObj *it, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 1 || nargs > 3) {
        PyErr_Format(PyExc_TypeError, "throw expected at most 3 arguments, got %zd", nargs);
        return NULL;
    }
#if PY_VERSION_HEX >= 0x030C0000
    if (nargs > 1 && PyErr_WarnEx(PyExc_DeprecationWarning,
                                  "the (type, exc, tb) signature of throw() is deprecated, "
                                  "use the single-arg signature instead.",
                                  1) < 0) {
        return NULL;
    }
#endif
    PyObject *type = args[0];
    PyObject *val = nargs >= 2 && args[1] != Py_None ? args[1] : NULL;
    PyObject *tb = nargs == 3 && args[2] != Py_None ? args[2] : NULL;
    if (tb != NULL && !PyTraceBack_Check(tb)) {
        PyErr_SetString(PyExc_TypeError, "throw() third argument must be a traceback");
        return NULL;
    }
    PyObject *exc;
    if (PyExceptionClass_Check(type)) {
        if (val != NULL && PyObject_TypeCheck(val, (PyTypeObject *)type)) {
            exc = Py_NewRef(val);
        }
        else if (val == NULL) {
            exc = PyObject_CallNoArgs(type);
        }
        else if (PyTuple_Check(val)) {
            exc = PyObject_Call(type, val, NULL);
        }
        else {
            exc = PyObject_CallOneArg(type, val);
        }
        if (exc == NULL) {
            return NULL;
        }
        if (!PyExceptionInstance_Check(exc)) {
            Py_DECREF(exc);
            PyErr_SetString(PyExc_TypeError,
                            "calling the exception class did not "
                            "return an exception");
            return NULL;
        }
    }
    else if (PyExceptionInstance_Check(type)) {
        if (val != NULL) {
            PyErr_SetString(PyExc_TypeError, "instance exception may not have a separate value");
            return NULL;
        }
        exc = Py_NewRef(type);
    }
    else {
        PyErr_SetString(PyExc_TypeError,
                        "exceptions must be classes deriving "
                        "BaseException or instances of such a class");
        return NULL;
    }
    if (tb != NULL) {
        PyException_SetTraceback(exc, tb);
    }
    Py_CLEAR(it->future);
    cio_err_restore(exc);
    return NULL;
}

static PyObject *
FutureIter_close(FutureIterObj *it, PyObject *Py_UNUSED(ignored))
{
    Py_CLEAR(it->future);
    Py_RETURN_NONE;
}

static int
FutureIter_traverse(FutureIterObj *it, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(it));
    Py_VISIT(it->future);
    return 0;
}

static int
FutureIter_clear(FutureIterObj *it)
{
    Py_CLEAR(it->future);
    return 0;
}

static void
FutureIter_dealloc(FutureIterObj *it)
{
    PyTypeObject *tp = Py_TYPE(it);
    cio_state *st = it->st;
    PyObject_GC_UnTrack(it);
    Py_CLEAR(it->future);
    if (tp != st->FutureIterType || !cio_freelist_push(&st->iter_freelist, (PyObject *)it)) {
        tp->tp_free(it);
    }
    Py_DECREF(tp);
}

static PyMethodDef FutureIter_methods[] = {
    {"send", (PyCFunction)FutureIter_send, METH_O, NULL},
    {"throw", (PyCFunction)(void (*)(void))FutureIter_throw, METH_FASTCALL, NULL},
    {"close", (PyCFunction)FutureIter_close, METH_NOARGS, NULL},
    {NULL, NULL},
};

static PyType_Slot FutureIter_slots[] = {
    {Py_tp_dealloc, FutureIter_dealloc},   {Py_tp_traverse, FutureIter_traverse},
    {Py_tp_clear, FutureIter_clear},       {Py_tp_iter, PyObject_SelfIter},
    {Py_tp_iternext, FutureIter_iternext}, {Py_am_send, FutureIter_am_send},
    {Py_tp_methods, FutureIter_methods},   {0, NULL},
};

static PyType_Spec FutureIter_spec = {
    .name = "casyncio._casyncio.FutureIter",
    .basicsize = sizeof(FutureIterObj),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = FutureIter_slots,
};

int
cio_future_init_types(PyObject *module, cio_state *st)
{
    st->FutureType = (PyTypeObject *)PyType_FromModuleAndSpec(module, &Future_spec, NULL);
    if (st->FutureType == NULL) {
        return -1;
    }
    st->FutureIterType = (PyTypeObject *)PyType_FromModuleAndSpec(module, &FutureIter_spec, NULL);
    if (st->FutureIterType == NULL) {
        return -1;
    }
    return PyModule_AddType(module, st->FutureType);
}
