/* loop.c: the event loop's C base type (casyncio._casyncio.LoopBase).
 *
 * What lives here is the hot part of an asyncio loop: scheduling
 * (call_soon, call_later, call_at, call_soon_threadsafe), the iteration
 * (_run_once: poll, collect due timers, run what is ready) and the
 * lifecycle flags.  casyncio.Loop (casyncio/_loop.py) subclasses this type
 * together with asyncio.AbstractEventLoop and adds the cold parts in Python.
 *
 * One iteration, as asyncio's BaseEventLoop._run_once defines it:
 *   1. poll for I/O, without blocking if anything is ready or stop() was
 *      called, else until the earliest timer (or forever);
 *   2. append the callbacks of ready fds, then of due timers, to the ready
 *      queue (transports may run at once instead: loop_fd.c notify_watcher);
 *   3. run exactly the entries that are in the queue now; whatever they
 *      schedule runs in the next iteration.
 *
 * Threads: the ready queue is only touched with the GIL held, which is what
 * makes call_soon_threadsafe safe.  The loop thread raises `sleeping` before
 * it releases the GIL to block in the poller; a thread that then schedules
 * work writes the eventfd, and only then (`wake_pending` stops repeats). */
#include "casyncio.h"

#include <errno.h>
#include <math.h>
#include <sys/eventfd.h>
#include <unistd.h>

/* ---- ready-queue entries ---- */

void
cio_loop_item_release(cio_ring_item *it)
{
    switch (it->kind) {
    case CIO_READY_HANDLE:
        Py_DECREF((PyObject *)it->a);
        break;
    case CIO_READY_CALL1:
        Py_DECREF((PyObject *)it->a);
        Py_DECREF((PyObject *)it->b);
        Py_XDECREF((PyObject *)it->c);
        break;
    case CIO_READY_TASK_STEP:
    case CIO_READY_TASK_WAKEUP:
        Py_DECREF((PyObject *)it->a);
        Py_XDECREF((PyObject *)it->b);
        break;
    case CIO_READY_FD_EVENT:
        Py_DECREF((PyObject *)it->a);
        break;
    }
}

static int
item_traverse(cio_ring_item *it, visitproc visit, void *arg)
{
    switch (it->kind) {
    case CIO_READY_HANDLE:
        Py_VISIT((PyObject *)it->a);
        break;
    case CIO_READY_CALL1:
        Py_VISIT((PyObject *)it->a);
        Py_VISIT((PyObject *)it->b);
        Py_VISIT((PyObject *)it->c);
        break;
    case CIO_READY_TASK_STEP:
    case CIO_READY_TASK_WAKEUP:
        Py_VISIT((PyObject *)it->a);
        Py_VISIT((PyObject *)it->b);
        break;
    case CIO_READY_FD_EVENT:
        Py_VISIT((PyObject *)it->a);
        break;
    }
    return 0;
}

int
cio_call_exception_handler(cio_state *st, PyObject *loop, PyObject *context)
{
    PyObject *res = PyObject_CallMethodOneArg(loop, st->str_call_exception_handler, context);
    if (res != NULL) {
        Py_DECREF(res);
        return 0;
    }
    PyObject *exc = cio_err_take();
    if (cio_exception_is_fatal(exc)) {
        cio_err_restore(exc);
        return -1;
    }
    cio_err_restore(exc);
    PyErr_WriteUnraisable(loop);
    return 0;
}

/* Runs a CALL1 entry: a(b) in context c.  An error is reported as a
 * call_soon() callback's would be. */
static int
run_call1(LoopObj *self, cio_ring_item *it)
{
    PyObject *func = it->a, *arg = it->b, *ctx = it->c;
    PyObject *exc = cio_call_in_context(ctx, func, &arg, 1);
    if (exc == NULL) {
        return 0;
    }
    if (cio_exception_is_fatal(exc)) {
        cio_err_restore(exc);
        return -1;
    }
    return cio_handle_report_call_error(self->st, (PyObject *)self, func, arg, ctx, exc);
}

static int
run_item(LoopObj *self, cio_ring_item *it)
{
    switch (it->kind) {
    case CIO_READY_HANDLE:
        return cio_handle_run((HandleObj *)it->a);
    case CIO_READY_CALL1:
        return run_call1(self, it);
    case CIO_READY_TASK_STEP:
        return cio_task_step((PyObject *)self, (TaskObj *)it->a, (PyObject *)it->b);
    case CIO_READY_TASK_WAKEUP:
        return cio_task_wakeup((PyObject *)self, (TaskObj *)it->a, (FutureObj *)it->b);
    case CIO_READY_FD_EVENT:
        return cio_loop_run_fd_event(self, it);
    }
    return 0;
}

/* Debug mode: remember the running handle (default_exception_handler shows
 * where it was created) and warn about callbacks slower than
 * slow_callback_duration. */
static int
run_item_debug(LoopObj *self, cio_ring_item *it)
{
    if (it->kind == CIO_READY_HANDLE) {
        Py_XSETREF(self->current_handle, Py_NewRef((PyObject *)it->a));
    }
    double t0, t1;
    if (cio_loop_now(self, &t0) < 0) {
        Py_CLEAR(self->current_handle);
        return -1;
    }
    int rc = run_item(self, it);
    Py_CLEAR(self->current_handle);
    if (rc < 0 || cio_loop_now(self, &t1) < 0) {
        return -1;
    }
    if (t1 - t0 >= self->slow_callback_duration && it->kind == CIO_READY_HANDLE) {
        cio_loop_log_slow(self, (PyObject *)it->a, NULL, t1 - t0);
    }
    return 0;
}

void
cio_loop_log_slow(LoopObj *self, PyObject *what, const char *io, double seconds)
{
    PyObject *secs = PyFloat_FromDouble(seconds);
    PyObject *kind = io ? PyUnicode_FromString(io) : Py_NewRef(Py_None);
    PyObject *res = NULL;
    if (secs != NULL && kind != NULL) {
        res = PyObject_CallMethodObjArgs((PyObject *)self, self->st->str_log_slow_callback, what,
                                         secs, kind, NULL);
    }
    Py_XDECREF(secs);
    Py_XDECREF(kind);
    if (res == NULL) {
        PyErr_WriteUnraisable((PyObject *)self);
    }
    Py_XDECREF(res);
}

/* ---- timers ----
 *
 * A TimerHandle in the heap belongs to the loop, and is not tracked by the
 * garbage collector while it is there: Loop_traverse reports what the handle
 * refers to (callback, arguments, context, loop) as the loop's own
 * references, so cycles through a scheduled timer are still found, but the
 * collector does not have to walk, promote and re-walk every pending timer
 * -- with many timers pending, that was most of what call_later() cost.
 * A handle is tracked again the moment it leaves the heap (fired, cancelled,
 * or the loop is cleared); the context copy made for it stays untracked for
 * as long as only the handle can reach it (handle.c). */

static void
timer_leave_heap(TimerHandleObj *t)
{
    /* Untracked exactly while in the heap: nothing else tracks it.  Its
     * context copy may stay untracked: the handle's traverse reports what
     * the context refers to, as Loop_traverse did. */
    PyObject_GC_Track(t);
}

int
cio_loop_timer_add(LoopObj *self, TimerHandleObj *t)
{
    /* A NaN deadline would break the heap's order; stock asyncio runs such
     * a timer at the next iteration, and so do we. */
    double key = isnan(t->when) ? -INFINITY : t->when;
    if (cio_heap_push(&self->timers, &t->node, key) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    Py_INCREF(t);
    PyObject_GC_UnTrack(t);
    if (t->base.ctx_copied && !t->base.ctx_untracked) {
        /* Its context is a fresh copy nobody else can reach while it is
         * scheduled (get_context() tracks it again): off the lists too. */
        PyObject_GC_UnTrack(t->base.context);
        t->base.ctx_untracked = 1;
    }
    return 0;
}

void
cio_loop_timer_remove(LoopObj *self, TimerHandleObj *t)
{
    if (cio_heap_node_attached(&t->node)) {
        cio_heap_remove(&self->timers, &t->node);
        timer_leave_heap(t);
        Py_DECREF(t);
    }
}

static void
timers_clear(LoopObj *self)
{
    cio_heap_node *node;
    while ((node = cio_heap_pop(&self->timers)) != NULL) {
        TimerHandleObj *t = CIO_TIMER_FROM_NODE(node);
        timer_leave_heap(t);
        Py_DECREF(t);
    }
}

/* ---- corked writes ---- */

int
cio_loop_cork(LoopObj *self, PyObject *transport)
{
    if (self->ncorked == self->corked_cap) {
        Py_ssize_t cap = self->corked_cap ? self->corked_cap * 2 : 8;
        PyObject **corked = PyMem_Realloc(self->corked, cap * sizeof(PyObject *));
        if (corked == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        self->corked = corked;
        self->corked_cap = cap;
    }
    self->corked[self->ncorked++] = Py_NewRef(transport);
    return 0;
}

/* The context a ready entry ran its callback in, or NULL. */
static PyObject * /* borrowed */
item_context(LoopObj *self, const cio_ring_item *it)
{
    switch (it->kind) {
    case CIO_READY_HANDLE:
        return ((HandleObj *)it->a)->context;
    case CIO_READY_CALL1:
        return (PyObject *)it->c;
    case CIO_READY_TASK_STEP:
    case CIO_READY_TASK_WAKEUP:
        return ((TaskObj *)it->a)->context;
    case CIO_READY_FD_EVENT:
        return cio_transport_event_context(self->st, it->a, (int)(intptr_t)it->c);
    }
    return NULL;
}

int
cio_loop_uncork(LoopObj *self, int rc, const cio_ring_item *it)
{
    PyObject *exc = rc < 0 ? cio_err_take() : NULL;
    /* The callback has left its context, so entering it again succeeds; if
     * it cannot be entered, the sends are made in the current one. */
    PyObject *ctx = item_context(self, it);
    if (ctx != NULL && PyContext_Enter(ctx) < 0) {
        PyErr_Clear();
        ctx = NULL;
    }
    /* A send that fails runs the exception handler, which may write (sent
     * at once: corking is off here) or cork again in a nested iteration, so
     * the count is read anew each time round. */
    char was = self->corking;
    self->corking = 0;
    for (Py_ssize_t i = 0; i < self->ncorked; i++) {
        PyObject *t = self->corked[i]; /* the list's reference, now ours */
        if (t == NULL) {
            continue; /* taken by a nested iteration's uncork */
        }
        self->corked[i] = NULL;
        if (cio_transport_uncork(t) < 0) {
            if (exc == NULL) {
                exc = cio_err_take();
            }
            else {
                PyErr_Clear();
            }
        }
        Py_DECREF(t);
    }
    self->ncorked = 0;
    self->corking = was;
    if (ctx != NULL && PyContext_Exit(ctx) < 0) {
        PyErr_Clear(); /* cannot fail: entered above, in this thread */
    }
    if (exc != NULL) {
        cio_err_restore(exc);
        return -1;
    }
    return rc;
}

/* ---- one iteration ---- */

int
cio_loop_wait(LoopObj *self, cio_poll_event *fired, int timeout_ms, int own)
{
    int n;
    if (timeout_ms == 0) {
        n = self->backend->wait(self->poller, fired, CIO_FIRED_CAP, 0);
    }
    else {
        if (own) {
            self->sleeping = 1;
        }
        Py_BEGIN_ALLOW_THREADS
        n = self->backend->wait(self->poller, fired, CIO_FIRED_CAP, timeout_ms);
        Py_END_ALLOW_THREADS
        if (own) {
            self->sleeping = 0;
        }
    }
    if (n < 0) {
        if (n != -EINTR) {
            errno = -n;
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
        n = 0;
    }
    /* A signal may have interrupted the wait (Ctrl-C): run Python's signal
     * handlers now, which is where KeyboardInterrupt comes from. */
    if (PyErr_CheckSignals() < 0) {
        return -1;
    }
    return n;
}

/* The first step of an iteration: polls without blocking if anything is
 * ready or stop() was called, else until the earliest timer (or forever),
 * and hands what fired to the watchers. */
static int
poll_io(LoopObj *self)
{
    int timeout_ms;
    if (cio_ring_len(&self->ready) > 0 || self->stopping) {
        timeout_ms = 0;
    }
    else if (cio_heap_len(&self->timers) > 0) {
        double now;
        if (cio_loop_now(self, &now) < 0) {
            return -1;
        }
        timeout_ms =
            cio_clock_delay_to_ms(cio_heap_peek_when(&self->timers) - now, CIO_MAX_POLL_MS);
    }
    else {
        timeout_ms = -1;
    }
    if (timeout_ms == 0 && self->fds.count == 0 && !self->wake_pending) {
        /* Nothing but the wakeup fd is watched and nobody has written it:
         * the syscall could only report nothing. */
        return 0;
    }
    int n = cio_loop_wait(self, self->fired, timeout_ms, 1);
    if (n > 0) {
        if (cio_loop_decide_inline(self) < 0) {
            return -1;
        }
        return cio_loop_dispatch_fd_events(self, n);
    }
    return n;
}

/* The end of "now" for timers, read once the poll has returned: a timer
 * due before it runs in this iteration.  That is within the clock's
 * resolution, or the float's own step where that is coarser (a large clock,
 * as a replaced loop.time() may give), so that a timer due now is never left
 * for the next tick (gh-145703).  Read once an iteration: a timer falling due
 * while the transports run during dispatch waits for the next, as in asyncio,
 * where it falls due while their callbacks run. */
static int
due_end(LoopObj *self, double *end)
{
    if (self->due_end_read) {
        *end = self->due_end;
        return 0;
    }
    if (cio_loop_now(self, end) < 0) {
        return -1;
    }
    *end += fmax(self->clock_resolution, nextafter(*end, INFINITY) - *end);
    self->due_end = *end;
    self->due_end_read = 1;
    return 0;
}

int
cio_loop_timer_due(LoopObj *self)
{
    double end;
    if (due_end(self, &end) < 0) {
        return -1;
    }
    return cio_heap_peek_when(&self->timers) < end;
}

static int
collect_due_timers(LoopObj *self)
{
    if (cio_heap_len(&self->timers) == 0) {
        return 0;
    }
    double end;
    if (due_end(self, &end) < 0) {
        return -1;
    }
    cio_heap_node *node;
    while (cio_heap_len(&self->timers) > 0 && cio_heap_peek_when(&self->timers) < end) {
        node = cio_heap_pop(&self->timers);
        TimerHandleObj *t = CIO_TIMER_FROM_NODE(node);
        timer_leave_heap(t);
        /* The heap's reference moves to the ready queue. */
        if (cio_loop_push(self, CIO_READY_HANDLE, t, NULL, NULL) < 0) {
            Py_DECREF(t);
            return -1;
        }
    }
    return 0;
}

static int
run_once(LoopObj *self)
{
    self->due_end_read = 0;
    /* A fake-clock tool may have replaced loop._selector.select (selector.c). */
    if ((self->select_replaced ? cio_selector_poll(self) : poll_io(self)) < 0 ||
        collect_due_timers(self) < 0) {
        return -1;
    }
    /* Only what is queued now: callbacks scheduled by these callbacks wait
     * for the next iteration, after the next poll. */
    size_t ntodo = cio_ring_len(&self->ready);
    self->st->totals.iterations++;
    self->st->totals.callbacks += ntodo;
    while (ntodo-- > 0) {
        cio_ring_item it;
        if (!cio_ring_pop(&self->ready, &it)) {
            break; /* close() from a callback emptied the queue */
        }
        char was = cio_loop_cork_begin(self);
        int rc = self->debug ? run_item_debug(self, &it) : run_item(self, &it);
        rc = cio_loop_cork_end(self, was, rc, &it);
        cio_loop_item_release(&it);
        if (rc < 0) {
            return -1;
        }
    }
    return 0;
}

/* ---- argument helpers ---- */

int
cio_check_callback(cio_state *st, PyObject *callback, const char *method)
{
    int coro = PyCoro_CheckExact(callback);
    if (!coro) {
        /* What stock asks: asyncio.iscoroutinefunction(callback). */
        if (cio_state_import_asyncio(st) < 0) {
            return -1;
        }
        PyObject *res = PyObject_CallOneArg(st->iscoroutinefunction, callback);
        if (res == NULL) {
            return -1;
        }
        coro = PyObject_IsTrue(res);
        Py_DECREF(res);
        if (coro < 0) {
            return -1;
        }
    }
    if (coro) {
        PyErr_Format(PyExc_TypeError, "coroutines cannot be used with %s()", method);
        return -1;
    }
    if (!PyCallable_Check(callback)) {
        PyErr_Format(PyExc_TypeError, "a callable object was expected by %s(), got %R", method,
                     callback);
        return -1;
    }
    return 0;
}

int
cio_check_context(PyObject *context)
{
    if (!PyContext_CheckExact(context)) {
        PyErr_Format(PyExc_TypeError, "context must be a contextvars.Context, not %.200s",
                     Py_TYPE(context)->tp_name);
        return -1;
    }
    return 0;
}

static int
check_thread(LoopObj *self)
{
    if (self->running && self->thread_ident != PyThread_get_thread_ident()) {
        PyErr_SetString(PyExc_RuntimeError,
                        "Non-thread-safe operation invoked on an event loop "
                        "other than the current one");
        return -1;
    }
    return 0;
}

/* Splits (first..., *rest, context=None) vectorcall arguments.  `nfixed`
 * leading positionals are required; the rest become a tuple (NULL when
 * empty), unless `rest` is NULL (only checked).  *context is NULL for None. */
static int
parse_call_args(cio_state *st, const char *fname, PyObject *const *args, Py_ssize_t nargs,
                PyObject *kwnames, Py_ssize_t nfixed, PyObject **rest, PyObject **context)
{
    if (rest != NULL) {
        *rest = NULL;
    }
    *context = NULL;
    if (kwnames != NULL) {
        Py_ssize_t nkw = PyTuple_GET_SIZE(kwnames);
        for (Py_ssize_t i = 0; i < nkw; i++) {
            PyObject *key = PyTuple_GET_ITEM(kwnames, i);
            if (!cio_kwname_is(key, st->str_context)) {
                PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%U'", fname,
                             key);
                return -1;
            }
            *context = args[nargs + i];
        }
    }
    if (nargs < nfixed) {
        PyErr_Format(PyExc_TypeError, "%s() missing %zd required positional argument%s", fname,
                     nfixed - nargs, nfixed - nargs == 1 ? "" : "s");
        return -1;
    }
    if (*context == Py_None) {
        *context = NULL;
    }
    if (*context != NULL && cio_check_context(*context) < 0) {
        return -1;
    }
    if (rest != NULL && nargs > nfixed) {
        PyObject *tuple = PyTuple_New(nargs - nfixed);
        if (tuple == NULL) {
            return -1;
        }
        for (Py_ssize_t i = nfixed; i < nargs; i++) {
            PyTuple_SET_ITEM(tuple, i - nfixed, Py_NewRef(args[i]));
        }
        *rest = tuple;
    }
    return 0;
}

/* ---- scheduling methods ---- */

/* Writes the eventfd, which makes the poll return; the dispatch drains it. */
static void
wake(LoopObj *self)
{
    uint64_t one = 1;
    self->wake_pending = 1;
    if (write(self->wakeup_fd, &one, sizeof(one)) < 0 && errno != EAGAIN) {
        /* EAGAIN: the counter is full, the loop is awake anyway. */
        self->wake_pending = 0;
    }
}

static PyObject *
schedule_soon(LoopObj *self, const char *fname, PyObject *const *args, Py_ssize_t nargs,
              PyObject *kwnames, int threadsafe)
{
    PyObject *rest, *context;
    if (parse_call_args(self->st, fname, args, nargs, kwnames, 1, &rest, &context) < 0) {
        return NULL;
    }
    HandleObj *h = NULL;
    /* The callback is checked in debug mode only, as asyncio does: in
     * normal mode a callback that is not callable fails when it is called,
     * and the exception handler reports it. */
    if (cio_loop_check_closed(self) < 0 ||
        (self->debug && ((!threadsafe && check_thread(self) < 0) ||
                         cio_check_callback(self->st, args[0], fname) < 0))) {
        goto done;
    }
    h = cio_handle_new(self->st, args[0], rest, (PyObject *)self, context);
    if (h == NULL) {
        goto done;
    }
    if (cio_loop_push(self, CIO_READY_HANDLE, Py_NewRef(h), NULL, NULL) < 0) {
        Py_DECREF(h); /* the queue's reference */
        Py_CLEAR(h);
        goto done;
    }
    if (threadsafe && self->sleeping && !self->wake_pending) {
        wake(self);
    }
done:
    Py_XDECREF(rest);
    return (PyObject *)h;
}

static PyObject *
Loop_call_soon(LoopObj *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    return schedule_soon(self, "call_soon", args, nargs, kwnames, 0);
}

static PyObject *
Loop_call_soon_threadsafe(LoopObj *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    return schedule_soon(self, "call_soon_threadsafe", args, nargs, kwnames, 1);
}

static PyObject *
schedule_at(LoopObj *self, const char *fname, double when, PyObject *const *args, Py_ssize_t nargs,
            PyObject *kwnames)
{
    /* args[0] is the delay or deadline, already converted to `when`. */
    PyObject *rest, *context;
    if (parse_call_args(self->st, fname, args, nargs, kwnames, 2, &rest, &context) < 0) {
        return NULL;
    }
    TimerHandleObj *t = NULL;
    if (cio_loop_check_closed(self) < 0 ||
        (self->debug &&
         (check_thread(self) < 0 || cio_check_callback(self->st, args[1], fname) < 0))) {
        goto done;
    }
    t = cio_timer_new(self->st, when, args[1], rest, (PyObject *)self, context);
    if (t != NULL && cio_loop_timer_add(self, t) < 0) {
        Py_CLEAR(t);
    }
done:
    Py_XDECREF(rest);
    return (PyObject *)t;
}

/* A delay or deadline as a double; None gets asyncio's own TypeError
 * message, anything that is not a number float()'s TypeError. */
static int
get_seconds(PyObject *obj, const char *none_message, double *out)
{
    if (obj == Py_None) {
        PyErr_SetString(PyExc_TypeError, none_message);
        return -1;
    }
    *out = PyFloat_AsDouble(obj);
    if (*out == -1.0 && PyErr_Occurred()) {
        return -1;
    }
    return 0;
}

/* call_later() on a loop whose call_at is replaced (by a subclass, or on
 * the instance): asyncio's call_later() is self.call_at(self.time() + delay,
 * callback, *args, context=context), so a loop that records its timers in
 * call_at sees asyncio.sleep()'s too. */
static PyObject *
call_later_through_call_at(LoopObj *self, double when, PyObject *const *args, Py_ssize_t nargs,
                           PyObject *kwnames)
{
    PyObject *context;
    /* Only checked: args[] is passed on as it is. */
    if (parse_call_args(self->st, "call_later", args, nargs, kwnames, 2, NULL, &context) < 0) {
        return NULL;
    }
    PyObject *result = NULL;
    PyObject *kwargs = NULL;
    PyObject *call_args = PyTuple_New(nargs);
    if (call_args == NULL) {
        return NULL;
    }
    PyObject *deadline = PyFloat_FromDouble(when);
    if (deadline == NULL) {
        goto done;
    }
    PyTuple_SET_ITEM(call_args, 0, deadline);
    for (Py_ssize_t i = 1; i < nargs; i++) {
        PyTuple_SET_ITEM(call_args, i, Py_NewRef(args[i]));
    }
    kwargs = Py_BuildValue("{OO}", self->st->str_context, context ? context : Py_None);
    PyObject *call_at = kwargs ? PyObject_GetAttr((PyObject *)self, self->st->str_call_at) : NULL;
    if (call_at != NULL) {
        result = PyObject_Call(call_at, call_args, kwargs);
        Py_DECREF(call_at);
    }
done:
    Py_XDECREF(kwargs);
    Py_DECREF(call_args);
    return result;
}

static PyObject *
Loop_call_later(LoopObj *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    double delay;
    if (nargs >= 1 && get_seconds(args[0], "delay must not be None", &delay) < 0) {
        return NULL;
    }
    double when = 0.0;
    if (nargs >= 1) {
        if (cio_loop_now(self, &when) < 0) {
            return NULL;
        }
        when += delay;
        if (self->call_at_replaced) {
            return call_later_through_call_at(self, when, args, nargs, kwnames);
        }
    }
    return schedule_at(self, "call_later", when, args, nargs, kwnames);
}

static PyObject *
Loop_call_at(LoopObj *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    double when = 0.0;
    if (nargs >= 1 && get_seconds(args[0], "when cannot be None", &when) < 0) {
        return NULL;
    }
    TimerHandleObj *t = (TimerHandleObj *)schedule_at(self, "call_at", when, args, nargs, kwnames);
    if (t != NULL && PyLong_Check(args[0])) {
        t->when_is_int = 1;
    }
    return (PyObject *)t;
}

/* asyncio's self-pipe write, which code that schedules from another thread
 * without call_soon_threadsafe() calls to wake the loop (a common recipe:
 * queue.put_nowait(item) then queue._loop._write_to_self()).  Nothing once
 * the loop is closed, as on stock's. */
static PyObject *
Loop__write_to_self(LoopObj *self, PyObject *Py_UNUSED(ignored))
{
    if (self->wakeup_fd >= 0 && !self->wake_pending) {
        wake(self);
    }
    Py_RETURN_NONE;
}

static PyObject *
Loop__add_handle(LoopObj *self, PyObject *handle)
{
    /* Queues an existing Handle (signal handlers are Handles made once and
     * run on every delivery). */
    if (!cio_handle_check(self->st, handle)) {
        PyErr_SetString(PyExc_TypeError, "a casyncio Handle was expected");
        return NULL;
    }
    if (cio_loop_check_closed(self) < 0) {
        return NULL;
    }
    if (!((HandleObj *)handle)->cancelled &&
        cio_loop_push(self, CIO_READY_HANDLE, Py_NewRef(handle), NULL, NULL) < 0) {
        Py_DECREF(handle);
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
Loop__timer_handle_cancelled(LoopObj *self, PyObject *handle)
{
    /* Our own TimerHandles leave the heap in cancel(); this hook exists for
     * asyncio code that calls it on foreign handles. */
    (void)self;
    (void)handle;
    Py_RETURN_NONE;
}

static PyObject *
Loop_time(LoopObj *self, PyObject *Py_UNUSED(ignored))
{
    (void)self;
    return PyFloat_FromDouble(cio_clock_now());
}

int
cio_loop_now_replaced(LoopObj *self, double *now)
{
    PyObject *t = PyObject_CallMethodNoArgs((PyObject *)self, self->st->str_time);
    if (t == NULL) {
        return -1;
    }
    *now = PyFloat_AsDouble(t);
    Py_DECREF(t);
    return *now == -1.0 && PyErr_Occurred() ? -1 : 0;
}

/* Whether the method `name` is something else than LoopBase's: an attribute
 * of the instance, or the class's own.  1, 0, or -1 with an error set. */
static int
is_replaced(LoopObj *self, PyObject *name)
{
    if (self->dict != NULL) {
        int in_dict = PyDict_Contains(self->dict, name);
        if (in_dict != 0) {
            return in_dict;
        }
    }
    PyObject *ours = PyObject_GetAttr((PyObject *)self->st->LoopType, name);
    PyObject *theirs = PyObject_GetAttr((PyObject *)Py_TYPE(self), name);
    int replaced = ours == NULL || theirs == NULL ? -1 : ours != theirs;
    Py_XDECREF(ours);
    Py_XDECREF(theirs);
    return replaced;
}

/* Notes which of the methods asyncio's loop calls through self are
 * replaced: time (see cio_loop_now()), call_at (Loop_call_later()),
 * _run_once (Loop__run()) and _selector.select (run_once()). */
static int
update_replaced(LoopObj *self)
{
    int time = is_replaced(self, self->st->str_time);
    int call_at = time < 0 ? -1 : is_replaced(self, self->st->str_call_at);
    int run_once = call_at < 0 ? -1 : is_replaced(self, self->st->str_run_once);
    if (run_once < 0) {
        return -1;
    }
    self->time_replaced = (char)time;
    self->call_at_replaced = (char)call_at;
    self->run_once_replaced = (char)run_once;
    return cio_selector_update(self);
}

/* Setting or deleting one of those methods on the loop switches the loop's
 * own calls to the attribute and back (a class replaced afterwards is seen
 * when run starts). */
static int
Loop_setattro(LoopObj *self, PyObject *name, PyObject *value)
{
    if (PyObject_GenericSetAttr((PyObject *)self, name, value) < 0) {
        return -1;
    }
    if (PyUnicode_Check(name) && (PyUnicode_CompareWithASCIIString(name, "time") == 0 ||
                                  PyUnicode_CompareWithASCIIString(name, "call_at") == 0 ||
                                  PyUnicode_CompareWithASCIIString(name, "_run_once") == 0)) {
        return update_replaced(self);
    }
    return 0;
}

static PyObject *
Loop_stop(LoopObj *self, PyObject *Py_UNUSED(ignored))
{
    self->stopping = 1;
    Py_RETURN_NONE;
}

static PyObject *
Loop_is_running(LoopObj *self, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(self->running);
}

static PyObject *
Loop_is_closed(LoopObj *self, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(self->closed);
}

static PyObject *
Loop_get_debug(LoopObj *self, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(self->debug);
}

static PyObject *
Loop_create_future(LoopObj *self, PyObject *Py_UNUSED(ignored))
{
    return cio_future_new(self->st, (PyObject *)self);
}

#if PY_VERSION_HEX >= 0x030E0000
/* 3.14: with a task factory set, create_task(coro, **kwargs) is
 * factory(loop, coro, **kwargs), the keywords as given (name and context
 * too, even None), and nothing after. */
static PyObject *
create_task_by_factory(LoopObj *self, PyObject *const *args, PyObject *kwnames)
{
    if (cio_loop_check_closed(self) < 0) {
        return NULL;
    }
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    PyObject **fargs = PyMem_New(PyObject *, 3 + nkw);
    if (fargs == NULL) {
        return PyErr_NoMemory();
    }
    fargs[0] = NULL;
    fargs[1] = (PyObject *)self;
    for (Py_ssize_t i = 0; i <= nkw; i++) {
        fargs[2 + i] = args[i]; /* the coroutine, then the keywords' values */
    }
    PyObject *task = PyObject_Vectorcall(self->task_factory, fargs + 1,
                                         2 | PY_VECTORCALL_ARGUMENTS_OFFSET, kwnames);
    PyMem_Free(fargs);
    return task;
}
#endif

#if PY_VERSION_HEX >= 0x030D0000
/* create_task(coro, *, name, context, **kwargs) with keywords other than
 * name and context (3.13: eager_start=True): they go to the task factory
 * (3.13 only: 3.14 calls a factory through create_task_by_factory() first),
 * or to casyncio.Task, which rejects those it does not know. */
static PyObject *
create_task_kwargs(LoopObj *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (cio_loop_check_closed(self) < 0) {
        return NULL;
    }
    PyObject *kwargs = PyDict_New();
    PyObject *name = Py_None, *call_args = NULL, *task = NULL;
    if (kwargs == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(kwnames); i++) {
        PyObject *key = PyTuple_GET_ITEM(kwnames, i);
        if (cio_kwname_is(key, self->st->str_name)) {
            name = args[nargs + i];
        }
        else if (PyDict_SetItem(kwargs, key, args[nargs + i]) < 0) {
            goto error;
        }
    }
    if (self->task_factory == NULL) {
        /* Task(coro, loop=self, name=name, context=..., **kwargs) */
        if (PyDict_SetItemString(kwargs, "loop", (PyObject *)self) < 0 ||
            PyDict_SetItem(kwargs, self->st->str_name, name) < 0) {
            goto error;
        }
        call_args = PyTuple_Pack(1, args[0]);
        task = call_args ? PyObject_Call((PyObject *)self->st->TaskType, call_args, kwargs) : NULL;
    }
    else {
        /* As asyncio: factory(loop, coro, **kwargs) (with context unless it
         * is None), then the name. */
        PyObject *context = PyDict_GetItemWithError(kwargs, self->st->str_context); /* borrowed */
        if (context == NULL && PyErr_Occurred()) {
            goto error;
        }
        if (context == Py_None && PyDict_DelItem(kwargs, self->st->str_context) < 0) {
            goto error;
        }
        call_args = PyTuple_Pack(2, (PyObject *)self, args[0]);
        task = call_args ? PyObject_Call(self->task_factory, call_args, kwargs) : NULL;
        if (task != NULL && name != Py_None) {
            PyObject *res = PyObject_CallMethodOneArg(task, self->st->str_set_name, name);
            if (res == NULL) {
                Py_CLEAR(task);
            }
            Py_XDECREF(res);
        }
    }
error:
    Py_XDECREF(call_args);
    Py_DECREF(kwargs);
    return task;
}
#endif

static PyObject *
Loop_create_task(LoopObj *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *name = Py_None, *context = Py_None;
    if (nargs != 1) {
        PyErr_Format(PyExc_TypeError,
                     "create_task() takes exactly 1 positional argument (%zd given)", nargs);
        return NULL;
    }
#if PY_VERSION_HEX >= 0x030E0000
    if (self->task_factory != NULL) {
        return create_task_by_factory(self, args, kwnames);
    }
#endif
    if (kwnames != NULL) {
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(kwnames); i++) {
            PyObject *key = PyTuple_GET_ITEM(kwnames, i);
            if (cio_kwname_is(key, self->st->str_name)) {
                name = args[nargs + i];
            }
            else if (cio_kwname_is(key, self->st->str_context)) {
                context = args[nargs + i];
            }
            else {
#if PY_VERSION_HEX >= 0x030D0000
                return create_task_kwargs(self, args, nargs, kwnames);
#else
                PyErr_Format(PyExc_TypeError,
                             "create_task() got an unexpected keyword argument '%U'", key);
                return NULL;
#endif
            }
        }
    }
    if (cio_loop_check_closed(self) < 0) {
        return NULL;
    }
    if (self->task_factory == NULL) {
        return cio_task_new(self->st, args[0], (PyObject *)self, name, context);
    }
    /* As asyncio: factory(loop, coro[, context=...]), then the name. */
    PyObject *fargs[4] = {NULL, (PyObject *)self, args[0], context};
    PyObject *task =
        PyObject_Vectorcall(self->task_factory, fargs + 1, 2 | PY_VECTORCALL_ARGUMENTS_OFFSET,
                            context == Py_None ? NULL : self->st->kwnames_context);
    if (task != NULL && name != Py_None) {
        PyObject *res = PyObject_CallMethodOneArg(task, self->st->str_set_name, name);
        if (res == NULL) {
            Py_CLEAR(task);
        }
        Py_XDECREF(res);
    }
    return task;
}

static PyObject *
Loop_set_task_factory(LoopObj *self, PyObject *factory)
{
    if (factory != Py_None && !PyCallable_Check(factory)) {
        PyErr_SetString(PyExc_TypeError, "task factory must be a callable or None");
        return NULL;
    }
    Py_XSETREF(self->task_factory, factory == Py_None ? NULL : Py_NewRef(factory));
    Py_RETURN_NONE;
}

static PyObject *
Loop_get_task_factory(LoopObj *self, PyObject *Py_UNUSED(ignored))
{
    return Py_NewRef(self->task_factory ? self->task_factory : Py_None);
}

/* An iteration through a replaced loop._run_once (a test loop that counts
 * iterations, or moves a fake clock, there), as asyncio's run_forever() calls
 * self._run_once(). */
static int
run_replaced_once(LoopObj *self)
{
    PyObject *r = PyObject_CallMethodNoArgs((PyObject *)self, self->st->str_run_once);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    return 0;
}

static PyObject *
Loop__run(LoopObj *self, PyObject *Py_UNUSED(ignored))
{
    if (cio_loop_check_closed(self) < 0) {
        return NULL;
    }
    if (self->running) {
        PyErr_SetString(PyExc_RuntimeError, "This event loop is already running");
        return NULL;
    }
    if (update_replaced(self) < 0) {
        return NULL;
    }
    /* Keep ourselves alive whatever the callbacks drop. */
    Py_INCREF(self);
    self->running = 1;
    self->thread_ident = PyThread_get_thread_ident();
    int rc;
    do {
        rc = self->run_once_replaced ? run_replaced_once(self) : run_once(self);
    } while (rc == 0 && !self->stopping);
    self->stopping = 0;
    self->running = 0;
    self->thread_ident = 0;
    Py_DECREF(self);
    if (rc < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
Loop__run_once(LoopObj *self, PyObject *Py_UNUSED(ignored))
{
    if (cio_loop_check_closed(self) < 0) {
        return NULL;
    }
    /* A run keeps the flags itself: its start read them, and setattr
     * refreshes them.  A _run_once() of a replaced _run_once calling up here
     * on every iteration need not look again. */
    if (!self->running && update_replaced(self) < 0) {
        return NULL;
    }
    Py_INCREF(self);
    int rc = run_once(self);
    Py_DECREF(self);
    if (rc < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* Releases everything the loop holds; used by close() and dealloc. */
static void
release_resources(LoopObj *self)
{
    /* Pop one entry at a time: releasing one may run code (a finalizer) that
     * looks at the queue. */
    cio_ring_item it;
    while (cio_ring_pop(&self->ready, &it)) {
        cio_loop_item_release(&it);
    }
    timers_clear(self);
    cio_loop_fd_clear(self);
    cio_selector_detach(self);
    if (self->poller != NULL) {
        self->backend->close(self->poller);
        self->poller = NULL;
    }
    if (self->wakeup_fd >= 0) {
        close(self->wakeup_fd);
        self->wakeup_fd = -1;
    }
}

static PyObject *
Loop__close(LoopObj *self, PyObject *Py_UNUSED(ignored))
{
    if (self->running) {
        PyErr_SetString(PyExc_RuntimeError, "Cannot close a running event loop");
        return NULL;
    }
    if (!self->closed) {
        self->closed = 1;
        release_resources(self);
    }
    Py_RETURN_NONE;
}

/* ---- type slots ---- */

static int
Loop_init(LoopObj *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"poller", NULL};
    const char *name = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|z:Loop", kwlist, &name)) {
        return -1;
    }
    if (self->poller != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "the loop is already initialised");
        return -1;
    }
    if (name == NULL) {
        name = getenv("CASYNCIO_POLLER");
        if (name != NULL && name[0] == '\0') {
            name = NULL;
        }
    }
    const cio_poller_backend *backend = cio_poller_find(name);
    if (backend == NULL) {
        PyErr_Format(PyExc_ValueError, "unknown poller %s (expected 'epoll' or 'poll')", name);
        return -1;
    }
    int err = backend->init(&self->poller);
    if (err < 0) {
        self->poller = NULL;
        errno = -err;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    self->backend = backend;
    self->fired = PyMem_Calloc(CIO_FIRED_CAP, sizeof(cio_poll_event));
    if (self->fired == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    self->wakeup_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (self->wakeup_fd < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    cio_fd_entry *e;
    err = cio_fdtable_ensure(&self->fds, self->wakeup_fd, &e);
    if (err == 0) {
        err = backend->modify(self->poller, self->wakeup_fd, 0, CIO_POLL_IN);
    }
    if (err < 0) {
        errno = -err;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    e->events = CIO_POLL_IN;
    e->reader_tag = CIO_W_WAKEUP;
    self->closed = 0;
    return update_replaced(self);
}

static PyObject *
Loop_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    cio_state *st = cio_state_from_type(type);
    if (st == NULL) {
        return NULL;
    }
    LoopObj *self = (LoopObj *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->st = st;
    cio_ring_init(&self->ready);
    cio_heap_init(&self->timers);
    cio_fdtable_init(&self->fds);
    self->wakeup_fd = -1;
    /* Until __init__ has run there is no poller: act closed. */
    self->closed = 1;
    self->clock_resolution = cio_clock_resolution();
    self->slow_callback_duration = 0.1;
    st->live.loops++;
    st->totals.loops_created++;
    return (PyObject *)self;
}

static int
Loop_traverse(LoopObj *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->current_handle);
    Py_VISIT(self->task_factory);
    Py_VISIT(self->selector);
    Py_VISIT(self->dict);
    for (Py_ssize_t i = 0; i < self->ncorked; i++) {
        Py_VISIT(self->corked[i]);
    }
    if (self->ready.len > 0) {
        for (size_t i = 0; i < self->ready.len; i++) {
            cio_ring_item *it = &self->ready.buf[(self->ready.head + i) & (self->ready.cap - 1)];
            int r = item_traverse(it, visit, arg);
            if (r) {
                return r;
            }
        }
    }
    /* Scheduled timers are untracked; their references count as ours. */
    for (size_t i = 0; i < self->timers.len; i++) {
        int r = cio_handle_traverse_refs(&CIO_TIMER_FROM_NODE(cio_heap_at(&self->timers, i))->base,
                                         visit, arg);
        if (r) {
            return r;
        }
    }
    return cio_loop_fd_traverse(self, visit, arg);
}

static int
Loop_clear(LoopObj *self)
{
    Py_CLEAR(self->current_handle);
    Py_CLEAR(self->task_factory);
    cio_selector_detach(self);
    Py_CLEAR(self->dict);
    while (self->ncorked > 0) {
        Py_CLEAR(self->corked[--self->ncorked]);
    }
    cio_ring_item it;
    while (cio_ring_pop(&self->ready, &it)) {
        cio_loop_item_release(&it);
    }
    timers_clear(self);
    cio_loop_fd_clear(self);
    return 0;
}

static void
Loop_finalize(LoopObj *self)
{
    if (self->closed) {
        return;
    }
    PyObject *exc = cio_err_take();
    if (PyErr_ResourceWarning((PyObject *)self, 1, "unclosed event loop %R", self) < 0) {
        PyErr_WriteUnraisable((PyObject *)self);
    }
    if (!self->running) {
        PyObject *res = PyObject_CallMethod((PyObject *)self, "close", NULL);
        if (res == NULL) {
            PyErr_WriteUnraisable((PyObject *)self);
        }
        Py_XDECREF(res);
    }
    if (exc != NULL) {
        cio_err_restore(exc);
    }
}

static void
Loop_dealloc(LoopObj *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    if (PyObject_CallFinalizerFromDealloc((PyObject *)self) < 0) {
        return; /* resurrected */
    }
    PyObject_GC_UnTrack(self);
    if (self->weakreflist != NULL) {
        PyObject_ClearWeakRefs((PyObject *)self);
    }
    Loop_clear(self);
    release_resources(self);
    cio_ring_fini(&self->ready);
    cio_heap_fini(&self->timers);
    cio_fdtable_fini(&self->fds);
    PyMem_Free(self->fired);
    PyMem_Free(self->corked);
    PyMem_RawFree(self->rbuf);
    self->st->live.loops--;
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyObject *
Loop_repr(LoopObj *self)
{
    PyObject *name = PyType_GetName(Py_TYPE(self));
    if (name == NULL) {
        return NULL;
    }
    PyObject *repr = PyUnicode_FromFormat(
        "<%U running=%s closed=%s debug=%s>", name, self->running ? "True" : "False",
        self->closed ? "True" : "False", self->debug ? "True" : "False");
    Py_DECREF(name);
    return repr;
}

/* ---- attributes ---- */

static PyObject *
Loop_get_flag(LoopObj *self, void *closure)
{
    return PyBool_FromLong(*(char *)((char *)self + (Py_ssize_t)closure));
}

static int
Loop_set_flag(LoopObj *self, PyObject *value, void *closure)
{
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete this attribute");
        return -1;
    }
    int v = PyObject_IsTrue(value);
    if (v < 0) {
        return -1;
    }
    *(char *)((char *)self + (Py_ssize_t)closure) = (char)v;
    return 0;
}

static PyObject *
Loop_get_thread_id(LoopObj *self, void *Py_UNUSED(closure))
{
    if (!self->running) {
        Py_RETURN_NONE;
    }
    return PyLong_FromUnsignedLong(self->thread_ident);
}

static PyObject *
Loop_get_poller(LoopObj *self, void *Py_UNUSED(closure))
{
    return PyUnicode_FromString(self->backend ? self->backend->name : "none");
}

static PyObject *
Loop_get_ready_count(LoopObj *self, void *Py_UNUSED(closure))
{
    return PyLong_FromSize_t(cio_ring_len(&self->ready));
}

static PyObject *
Loop_get_clock_resolution(LoopObj *self, void *Py_UNUSED(closure))
{
    return PyFloat_FromDouble(self->clock_resolution);
}

/* Timers due within this of now fire (collect_due_timers()).  Settable, as
 * on asyncio's loop, where fake-clock test tools patch it; deleting it (what
 * mock.patch.object does on exit to an attribute not in the instance's dict)
 * brings back the clock's own. */
static int
Loop_set_clock_resolution(LoopObj *self, PyObject *value, void *Py_UNUSED(closure))
{
    double resolution = value == NULL ? cio_clock_resolution() : PyFloat_AsDouble(value);
    if (resolution == -1.0 && PyErr_Occurred()) {
        return -1;
    }
    self->clock_resolution = resolution;
    return 0;
}

static PyObject *
Loop_get_timer_count(LoopObj *self, void *Py_UNUSED(closure))
{
    return PyLong_FromSize_t(cio_heap_len(&self->timers));
}

static int
timer_entry_order(const void *a, const void *b)
{
    const cio_heap_entry *x = a, *y = b;
    if (x->when != y->when) {
        return x->when < y->when ? -1 : 1;
    }
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* loop._scheduled: in stock asyncio the heapq list of its TimerHandles,
 * which test helpers read to find and fire pending timers (Home
 * Assistant's, python-zeroconf's).  Here each read makes a new list of the
 * timers pending, in the order they will fire (a sorted list is a heap
 * too); changing the list changes nothing in the loop.  Stock's list also
 * holds cancelled timers until it drops them; ours leave at cancel(). */
static PyObject *
Loop_get_scheduled(LoopObj *self, void *Py_UNUSED(closure))
{
    size_t n = cio_heap_len(&self->timers);
    cio_heap_entry *order = PyMem_Malloc((n ? n : 1) * sizeof(cio_heap_entry));
    if (order == NULL) {
        return PyErr_NoMemory();
    }
    if (n > 0) {
        memcpy(order, self->timers.items, n * sizeof(cio_heap_entry));
        qsort(order, n, sizeof(cio_heap_entry), timer_entry_order);
    }
    PyObject *list = PyList_New((Py_ssize_t)n);
    for (size_t i = 0; list != NULL && i < n; i++) {
        PyList_SET_ITEM(list, (Py_ssize_t)i, Py_NewRef(CIO_TIMER_FROM_NODE(order[i].node)));
    }
    PyMem_Free(order);
    return list;
}

static PyObject *
Loop_get_task_factory_attr(LoopObj *self, void *Py_UNUSED(closure))
{
    return Py_NewRef(self->task_factory ? self->task_factory : Py_None);
}

static PyObject *
Loop_get_current_handle(LoopObj *self, void *Py_UNUSED(closure))
{
    return Py_NewRef(self->current_handle ? self->current_handle : Py_None);
}

#define FLAG(name, field) \
    {name, (getter)Loop_get_flag, (setter)Loop_set_flag, NULL, (void *)offsetof(LoopObj, field)}

static PyGetSetDef Loop_getset[] = {
    FLAG("_debug", debug),
    FLAG("_stopping", stopping),
    {"_closed", (getter)Loop_get_flag, NULL, NULL, (void *)offsetof(LoopObj, closed)},
    {"_thread_id", (getter)Loop_get_thread_id, NULL, NULL, NULL},
    {"_poller", (getter)Loop_get_poller, NULL, "Name of the I/O poller backend.", NULL},
    {"_ready_count", (getter)Loop_get_ready_count, NULL, NULL, NULL},
    {"_timer_count", (getter)Loop_get_timer_count, NULL, NULL, NULL},
    {"_clock_resolution", (getter)Loop_get_clock_resolution, (setter)Loop_set_clock_resolution,
     NULL, NULL},
    {"_scheduled", (getter)Loop_get_scheduled, NULL,
     "The pending TimerHandles, in the order they will fire (a new list on each read).", NULL},
    {"_current_handle", (getter)Loop_get_current_handle, NULL, NULL, NULL},
    {"_task_factory", (getter)Loop_get_task_factory_attr, NULL, NULL, NULL},
    {"_selector", (getter)cio_selector_get, NULL,
     "The poller as asyncio's selector, for tools that replace its select() (None once "
     "closed).",
     NULL},
    {NULL},
};

static PyMemberDef Loop_members[] = {
    {"slow_callback_duration", T_DOUBLE, offsetof(LoopObj, slow_callback_duration), 0, NULL},
    {"__dictoffset__", T_PYSSIZET, offsetof(LoopObj, dict), READONLY},
    {"__weaklistoffset__", T_PYSSIZET, offsetof(LoopObj, weakreflist), READONLY},
    {NULL},
};

#define FASTKW (METH_FASTCALL | METH_KEYWORDS)

static PyMethodDef Loop_methods[] = {
    {"call_soon", (PyCFunction)(void (*)(void))Loop_call_soon, FASTKW,
     "call_soon(callback, *args, context=None) -> Handle"},
    {"call_soon_threadsafe", (PyCFunction)(void (*)(void))Loop_call_soon_threadsafe, FASTKW,
     "call_soon_threadsafe(callback, *args, context=None) -> Handle"},
    {"call_later", (PyCFunction)(void (*)(void))Loop_call_later, FASTKW,
     "call_later(delay, callback, *args, context=None) -> TimerHandle"},
    {"call_at", (PyCFunction)(void (*)(void))Loop_call_at, FASTKW,
     "call_at(when, callback, *args, context=None) -> TimerHandle"},
    {"time", (PyCFunction)Loop_time, METH_NOARGS, "The loop's clock (time.monotonic())."},
    {"stop", (PyCFunction)Loop_stop, METH_NOARGS, "Stop after the current iteration."},
    {"is_running", (PyCFunction)Loop_is_running, METH_NOARGS, NULL},
    {"is_closed", (PyCFunction)Loop_is_closed, METH_NOARGS, NULL},
    {"get_debug", (PyCFunction)Loop_get_debug, METH_NOARGS, NULL},
    {"create_future", (PyCFunction)Loop_create_future, METH_NOARGS,
     "Create a Future attached to the loop."},
    {"create_task", (PyCFunction)(void (*)(void))Loop_create_task, FASTKW,
     "create_task(coro, *, name=None, context=None) -> Task"},
    {"set_task_factory", (PyCFunction)Loop_set_task_factory, METH_O,
     "Set the factory create_task() uses (None: casyncio.Task)."},
    {"get_task_factory", (PyCFunction)Loop_get_task_factory, METH_NOARGS, NULL},
    {"_run", (PyCFunction)Loop__run, METH_NOARGS,
     "Run iterations until stop() (run_forever without its Python set-up)."},
    {"_run_once", (PyCFunction)Loop__run_once, METH_NOARGS, "Run one iteration."},
    {"_close", (PyCFunction)Loop__close, METH_NOARGS,
     "Drop queued callbacks, timers and watchers; release the poller."},
    {"_write_to_self", (PyCFunction)Loop__write_to_self, METH_NOARGS,
     "_write_to_self(): wakes the loop from its poll (asyncio's self-pipe write)."},
    {"_add_handle", (PyCFunction)Loop__add_handle, METH_O,
     "Queue an existing Handle to run in the next iteration."},
    {"_timer_handle_cancelled", (PyCFunction)Loop__timer_handle_cancelled, METH_O, NULL},
    {NULL, NULL},
};

static PyType_Slot Loop_slots[] = {
    {Py_tp_doc, "The C core of casyncio's event loop (use casyncio.Loop)."},
    {Py_tp_new, Loop_new},
    {Py_tp_init, Loop_init},
    {Py_tp_dealloc, Loop_dealloc},
    {Py_tp_finalize, Loop_finalize},
    {Py_tp_traverse, Loop_traverse},
    {Py_tp_clear, Loop_clear},
    {Py_tp_repr, Loop_repr},
    {Py_tp_methods, Loop_methods},
    {Py_tp_members, Loop_members},
    {Py_tp_getset, Loop_getset},
    {Py_tp_setattro, Loop_setattro},
    {0, NULL},
};

static PyType_Spec Loop_spec = {
    .name = "casyncio._casyncio.LoopBase",
    .basicsize = sizeof(LoopObj),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = Loop_slots,
};

int
cio_loop_init_type(PyObject *module, cio_state *st)
{
    st->LoopType = (PyTypeObject *)PyType_FromModuleAndSpec(module, &Loop_spec, NULL);
    if (st->LoopType == NULL) {
        return -1;
    }
    /* Methods living in other files (fd watching, transports, socket
     * operations) are grafted onto the type here. */
    PyMethodDef *tables[] = {cio_loop_fd_methods, cio_stream_loop_methods, cio_dgram_loop_methods,
                             cio_sockops_loop_methods};
    for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]); i++) {
        for (PyMethodDef *def = tables[i]; def->ml_name != NULL; def++) {
            PyObject *descr = PyDescr_NewMethod(st->LoopType, def);
            if (descr == NULL) {
                return -1;
            }
            int rc = PyObject_SetAttrString((PyObject *)st->LoopType, def->ml_name, descr);
            Py_DECREF(descr);
            if (rc < 0) {
                return -1;
            }
        }
    }
    return PyModule_AddType(module, st->LoopType);
}
