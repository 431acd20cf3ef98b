/* task.c: casyncio.Task, a coroutine driven to completion as a Future.
 *
 * A step sends None (or throws an exception) into the coroutine and looks at
 * what comes back, exactly as asyncio.Task.__step does:
 * - it returned: the task's result;  it raised: the task's exception (or the
 *   task is cancelled, for CancelledError);
 * - it yielded a future (`await fut` yields the future with
 *   _asyncio_future_blocking raised): sleep until that future is done;
 * - it yielded None (a bare yield, asyncio.sleep(0)): step again next
 *   iteration;  anything else is a RuntimeError thrown back in.
 * On a casyncio loop a step is a plain ready-queue entry, and a task waiting
 * on a casyncio Future is a WAKEUP entry in that future's callbacks, so the
 * common case makes no Handle and no bound method.  On other loops, and for
 * foreign futures, the same logic goes through call_soon() and
 * add_done_callback() with bound methods, as asyncio's own Task does.
 *
 * While a step runs, the task is the loop's current task: it is entered into
 * asyncio's current-task table, so asyncio.current_task() sees it. */
#include "casyncio.h"

/* ---- current task ---- */

static int
enter_task(cio_state *st, PyObject *loop, PyObject *task)
{
    if (st->current_tasks == NULL) {
        PyObject *args[2] = {loop, task};
        PyObject *res = PyObject_Vectorcall(st->enter_task, args, 2, NULL);
        Py_XDECREF(res);
        return res ? 0 : -1;
    }
    PyObject *current = PyDict_GetItemWithError(st->current_tasks, loop); /* borrowed */
    if (current != NULL) {
        PyErr_Format(PyExc_RuntimeError,
                     "Cannot enter into task %R while another task %R is being executed.", task,
                     current);
        return -1;
    }
    if (PyErr_Occurred()) {
        return -1;
    }
    return PyDict_SetItem(st->current_tasks, loop, task);
}

static int
leave_task(cio_state *st, PyObject *loop, PyObject *task)
{
    if (st->current_tasks == NULL) {
        PyObject *args[2] = {loop, task};
        PyObject *res = PyObject_Vectorcall(st->leave_task, args, 2, NULL);
        Py_XDECREF(res);
        return res ? 0 : -1;
    }
    PyObject *current = PyDict_GetItemWithError(st->current_tasks, loop); /* borrowed */
    if (current != task) {
        if (!PyErr_Occurred()) {
            PyErr_Format(PyExc_RuntimeError, "Leaving task %R does not match the current task %R.",
                         task, current ? current : Py_None);
        }
        return -1;
    }
    return PyDict_DelItem(st->current_tasks, loop);
}

#if PY_VERSION_HEX >= 0x030C0000
/* Makes `task` (Py_None: no task) the loop's current task; returns the one
 * it replaces (new ref, Py_None if none) or NULL.  For eager starts only,
 * where a task runs inside another one's step. */
static PyObject *
swap_current_task(cio_state *st, PyObject *loop, PyObject *task)
{
    if (st->current_tasks == NULL) {
        PyObject *args[2] = {loop, task};
        return PyObject_Vectorcall(st->swap_current_task, args, 2, NULL);
    }
    PyObject *prev = PyDict_GetItemWithError(st->current_tasks, loop); /* borrowed */
    if (prev == NULL && PyErr_Occurred()) {
        return NULL;
    }
    prev = Py_NewRef(prev ? prev : Py_None);
    int rc = 0;
    if (task != Py_None) {
        rc = PyDict_SetItem(st->current_tasks, loop, task);
    }
    else if (prev != Py_None) {
        rc = PyDict_DelItem(st->current_tasks, loop);
    }
    if (rc < 0) {
        Py_DECREF(prev);
        return NULL;
    }
    return prev;
}
#endif

/* ---- bound methods for other loops and foreign futures ---- */

static PyObject *task_step_meth(PyObject *task, PyObject *const *args, Py_ssize_t nargs);
static PyObject *task_wakeup_meth(PyObject *task, PyObject *fut);

static PyMethodDef step_def = {"task_step", (PyCFunction)(void (*)(void))task_step_meth,
                               METH_FASTCALL, NULL};
static PyMethodDef wakeup_def = {"task_wakeup", (PyCFunction)task_wakeup_meth, METH_O, NULL};

/* A bound method of the task for `def` (a new reference).  A fresh one each
 * time, as asyncio's C Task makes them: one kept on the task would hold the
 * task in a cycle, so a pending task dropped with its loop would wait for
 * the cycle collector before "Task was destroyed but it is pending!". */
static PyObject *
bound_method(TaskObj *task, PyMethodDef *def)
{
    return PyCFunction_NewEx(def, (PyObject *)task, NULL);
}

PyObject *
cio_task_wakeup_method(TaskObj *task)
{
    return bound_method(task, &wakeup_def);
}

/* Schedules the next step (exc: what to throw in, or NULL). */
static int
call_step_soon(TaskObj *task, PyObject *exc)
{
    cio_state *st = task->fut.st;
    PyObject *loop = task->fut.loop;
    if (loop == NULL) {
        /* A second __init__() failed while a step ran (see step()). */
        PyErr_SetString(PyExc_RuntimeError, "Future object is not initialized.");
        return -1;
    }
    if (cio_loop_check(st, loop) && !((LoopObj *)loop)->debug) {
        LoopObj *lp = (LoopObj *)loop;
        if (cio_loop_check_closed(lp) < 0) {
            return -1;
        }
        Py_INCREF(task);
        Py_XINCREF(exc);
        if (cio_loop_push(lp, CIO_READY_TASK_STEP, task, exc, NULL) < 0) {
            Py_DECREF(task);
            Py_XDECREF(exc);
            return -1;
        }
        return 0;
    }
    /* loop.call_soon(step[, exc], context=task_context) */
    PyObject *meth = bound_method(task, &step_def);
    if (meth == NULL) {
        return -1;
    }
    PyObject *argv[5] = {NULL, loop, meth, NULL, NULL};
    size_t n = 2;
    if (exc != NULL) {
        argv[1 + n++] = exc;
    }
    argv[1 + n] = task->context;
    PyObject *res = PyObject_VectorcallMethod(
        st->str_call_soon, argv + 1, n | PY_VECTORCALL_ARGUMENTS_OFFSET, st->kwnames_context);
    Py_DECREF(meth);
    Py_XDECREF(res);
    return res ? 0 : -1;
}

/* ---- cancellation ---- */

static int task_cancel_impl(TaskObj *task, PyObject *msg);

/* cancel(msg) on whatever the task waits for; returns 1 if it was
 * cancelled, 0 if not, -1 on error.  A method call, as asyncio's is: our own
 * types are cancelled directly unless cancel was set on the instance
 * (aiotools' ShieldScope replaces it there to defer cancellation). */
static int
cancel_waiter(cio_state *st, PyObject *waiter, PyObject *msg)
{
    int exact = Py_IS_TYPE(waiter, st->FutureType) || Py_IS_TYPE(waiter, st->TaskType);
    PyObject *dict = exact ? ((FutureObj *)waiter)->dict : NULL;
    if (exact && dict != NULL) {
        int replaced = PyDict_Contains(dict, st->str_cancel);
        if (replaced < 0) {
            return -1;
        }
        exact = !replaced;
    }
    if (exact) {
        return Py_IS_TYPE(waiter, st->TaskType) ? task_cancel_impl((TaskObj *)waiter, msg)
                                                : cio_future_cancel((FutureObj *)waiter, msg);
    }
    PyObject *args[2] = {waiter, msg};
    PyObject *res = PyObject_VectorcallMethod(st->str_cancel, args, 1, st->kwnames_msg);
    if (res == NULL) {
        return -1;
    }
    int r = PyObject_IsTrue(res);
    Py_DECREF(res);
    return r;
}

static int
task_cancel_impl(TaskObj *task, PyObject *msg)
{
    task->fut.log_tb = 0;
    if (task->fut.state != CIO_PENDING) {
        return 0;
    }
    task->num_cancels_requested++;
    if (task->fut_waiter != NULL) {
        PyObject *waiter = Py_NewRef(task->fut_waiter);
        int r = cancel_waiter(task->fut.st, waiter, msg);
        Py_DECREF(waiter);
        if (r != 0) {
            return r; /* cancelled it (1), or an error (-1) */
        }
    }
    task->must_cancel = 1;
    Py_XSETREF(task->fut.cancel_message, Py_NewRef(msg));
    return 1;
}

/* ---- the step ---- */

static int
schedule_runtime_error(TaskObj *task, PyObject *message)
{
    if (message == NULL) {
        return -1;
    }
    PyObject *exc = PyObject_CallOneArg(PyExc_RuntimeError, message);
    Py_DECREF(message);
    if (exc == NULL) {
        return -1;
    }
    int rc = call_step_soon(task, exc);
    Py_DECREF(exc);
    return rc;
}

/* The loop a future belongs to, as asyncio.futures._get_loop (new ref). */
static PyObject *
future_loop(cio_state *st, PyObject *fut)
{
    if (cio_future_check_exact(st, fut)) {
        return Py_NewRef(((FutureObj *)fut)->loop);
    }
    PyObject *get_loop = PyObject_GetAttr(fut, st->str_get_loop);
    if (get_loop != NULL) {
        PyObject *loop = PyObject_CallNoArgs(get_loop);
        Py_DECREF(get_loop);
        return loop;
    }
    if (!PyErr_ExceptionMatches(PyExc_AttributeError)) {
        return NULL;
    }
    PyErr_Clear();
    return PyObject_GetAttrString(fut, "_loop");
}

/* Starts waiting for `fut`, a future of this task's loop that the
 * coroutine yielded: registers the wakeup -- a direct WAKEUP entry for our
 * own futures, the bound wakeup method through add_done_callback() for
 * anybody else's -- and passes on a cancel() that came first. */
static int
wait_for_future(TaskObj *task, PyObject *fut, int ours)
{
    cio_state *st = task->fut.st;
    int rc;
    if (ours) {
        ((FutureObj *)fut)->blocking = 0;
        /* The entry's context is the task's own (see cb_context). */
        rc = cio_future_add_callback((FutureObj *)fut, (PyObject *)task, NULL, CIO_CB_WAKEUP);
    }
    else {
        rc = PyObject_SetAttr(fut, st->str_asyncio_future_blocking, Py_False);
        PyObject *wakeup = rc == 0 ? cio_task_wakeup_method(task) : NULL;
        PyObject *res = NULL;
        if (wakeup != NULL) {
            PyObject *args[3] = {fut, wakeup, task->context};
            res =
                PyObject_VectorcallMethod(st->str_add_done_callback, args, 2, st->kwnames_context);
            Py_DECREF(wakeup);
        }
        rc = res ? 0 : -1;
        Py_XDECREF(res);
    }
    if (rc < 0) {
        return -1;
    }
#if PY_VERSION_HEX >= 0x030E0000
    /* asyncio.graph (3.14) follows a future to the tasks awaiting it (our
     * futures only, as asyncio records it for its own only). */
    if (ours && cio_future_awaited_by_add((FutureObj *)fut, (PyObject *)task) < 0) {
        return -1;
    }
#endif
    Py_XSETREF(task->fut_waiter, Py_NewRef(fut));
    if (task->must_cancel) {
        int r = cancel_waiter(st, fut, task->fut.cancel_message);
        if (r < 0) {
            return -1;
        }
        if (r > 0) {
            task->must_cancel = 0;
        }
    }
    return 0;
}

/* The coroutine yielded something that is not a future: a mistake, which
 * is thrown back into it, as asyncio does. */
static int
bad_yield(TaskObj *task, PyObject *result)
{
    PyObject *isgen = PyObject_CallOneArg(task->fut.st->isgenerator, result);
    int is_gen = isgen ? PyObject_IsTrue(isgen) : -1;
    Py_XDECREF(isgen);
    if (is_gen < 0) {
        return -1;
    }
    if (is_gen) {
        return schedule_runtime_error(
            task, PyUnicode_FromFormat(
                      "yield was used instead of yield from for generator in task %R with %R", task,
                      result));
    }
    return schedule_runtime_error(task, PyUnicode_FromFormat("Task got bad yield: %R", result));
}

/* The coroutine yielded `result` (stolen): decide what to wait for. */
static int
handle_yield(TaskObj *task, PyObject *result)
{
    cio_state *st = task->fut.st;
    int rc, blocking;
    PyObject *loop;
    if (result == Py_None) {
        /* A bare yield: give the loop one turn. */
        Py_DECREF(result);
        return call_step_soon(task, NULL);
    }
    /* A future says so with _asyncio_future_blocking (None or missing on
     * anything else); ours are checked without a Python call. */
    int ours = cio_future_check_exact(st, result);
    if (ours) {
        blocking = ((FutureObj *)result)->blocking;
        loop = Py_NewRef(((FutureObj *)result)->loop);
    }
    else {
        PyObject *flag = PyObject_GetAttr(result, st->str_asyncio_future_blocking);
        if (flag == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_AttributeError)) {
                Py_DECREF(result);
                return -1;
            }
            PyErr_Clear();
        }
        if (flag == NULL || flag == Py_None) {
            Py_XDECREF(flag);
            rc = bad_yield(task, result);
            Py_DECREF(result);
            return rc;
        }
        blocking = PyObject_IsTrue(flag);
        Py_DECREF(flag);
        loop = blocking < 0 ? NULL : future_loop(st, result);
        if (loop == NULL) {
            Py_DECREF(result);
            return -1;
        }
    }
    if (loop != task->fut.loop) {
        rc = schedule_runtime_error(
            task, PyUnicode_FromFormat("Task %R got Future %R attached to a different loop", task,
                                       result));
    }
    else if (!blocking) {
        rc = schedule_runtime_error(
            task, PyUnicode_FromFormat("yield was used instead of yield from in task %R with %R",
                                       task, result));
    }
    else if (result == (PyObject *)task) {
        rc = schedule_runtime_error(task,
                                    PyUnicode_FromFormat("Task cannot await on itself: %R", task));
    }
    else {
        rc = wait_for_future(task, result, ours);
    }
    Py_DECREF(loop);
    Py_DECREF(result);
    return rc;
}

/* If the current exception is StopIteration, replaces it with its value in
 * *result and returns 1; else 0. */
static int
take_stop_iteration(cio_state *st, PyObject **result)
{
    if (!PyErr_ExceptionMatches(PyExc_StopIteration)) {
        return 0;
    }
    PyObject *exc = cio_err_take();
    *result = PyObject_GetAttr(exc, st->str_value);
    Py_DECREF(exc);
    if (*result == NULL) {
        return -1;
    }
    return 1;
}

/* One step, without context handling: the caller runs it in the task's
 * context.  Returns 0, or -1 with an exception set (SystemExit and
 * KeyboardInterrupt from the coroutine, or a failure of the step itself). */
static int
step(TaskObj *task, PyObject *exc)
{
    cio_state *st = task->fut.st;
    if (task->fut.loop == NULL) {
        /* A second __init__() that failed to find a loop (3.14 has no
         * implicit one) leaves the task uninitialized, as asyncio's: its
         * queued step fails, reported to the loop that runs it. */
        PyErr_SetString(PyExc_RuntimeError, "Future object is not initialized.");
        return -1;
    }
    if (task->fut.state != CIO_PENDING) {
        PyErr_Format(st->InvalidStateError, "_step(): already done: %R, %R", task,
                     exc ? exc : Py_None);
        return -1;
    }
    PyObject *own_exc = NULL;
    if (task->must_cancel) {
        if (exc == NULL || !PyErr_GivenExceptionMatches(exc, st->CancelledError)) {
            own_exc = cio_future_make_cancelled_error(&task->fut);
            if (own_exc == NULL) {
                return -1;
            }
            exc = own_exc;
        }
        task->must_cancel = 0;
    }
#if PY_VERSION_HEX >= 0x030E0000
    if (task->fut_waiter != NULL && cio_future_check_exact(st, task->fut_waiter) &&
        cio_future_awaited_by_discard((FutureObj *)task->fut_waiter, (PyObject *)task) < 0) {
        Py_XDECREF(own_exc);
        return -1;
    }
#endif
    Py_CLEAR(task->fut_waiter);

    /* Hold what we use after running Python code. */
    PyObject *loop = Py_NewRef(task->fut.loop);
    Py_INCREF(task);
    int rc = -1;
    if (enter_task(st, loop, (PyObject *)task) < 0) {
        goto done;
    }

    PyObject *result = NULL;
    PySendResult status;
    if (exc == NULL) {
        status = PyIter_Send(task->coro, Py_None, &result);
    }
    else {
        result = PyObject_CallMethodOneArg(task->coro, st->str_throw, exc);
        status = PYGEN_NEXT;
        if (result == NULL) {
            int r = take_stop_iteration(st, &result);
            status = r > 0 ? PYGEN_RETURN : PYGEN_ERROR;
        }
    }

    if (status == PYGEN_RETURN) {
        if (task->must_cancel) {
            /* cancel() came while the coroutine was finishing. */
            task->must_cancel = 0;
            rc = cio_future_cancel(&task->fut, task->fut.cancel_message) < 0 ? -1 : 0;
        }
        else {
            rc = cio_future_set_result(&task->fut, result);
        }
        Py_DECREF(result);
    }
    else if (status == PYGEN_ERROR) {
        PyObject *err = cio_err_take();
        if (PyErr_GivenExceptionMatches(err, st->CancelledError)) {
            /* Keep the exception itself: result() re-raises it. */
            Py_XSETREF(task->fut.cancelled_exc, err);
            rc = cio_future_cancel(&task->fut, NULL) < 0 ? -1 : 0;
        }
        else if (cio_exception_is_fatal(err)) {
            rc = cio_future_set_exception(&task->fut, err);
            if (rc == 0) {
                cio_err_restore(err);
                rc = -1;
            }
            else {
                Py_DECREF(err);
            }
        }
        else {
            rc = cio_future_set_exception(&task->fut, err);
            Py_DECREF(err);
        }
    }
    else {
        rc = handle_yield(task, result);
    }

    PyObject *pending = rc < 0 ? cio_err_take() : NULL;
    if (leave_task(st, loop, (PyObject *)task) < 0) {
        if (pending != NULL) {
            /* Keep the first error; the second one is printed. */
            PyErr_WriteUnraisable((PyObject *)task);
        }
        else {
            rc = -1;
        }
    }
    if (pending != NULL) {
        cio_err_restore(pending);
    }
done:
    Py_XDECREF(own_exc);
    Py_DECREF(task);
    Py_DECREF(loop);
    return rc;
}

/* Reports a failed step (not SystemExit/KeyboardInterrupt) to `loop`, the
 * one running it, the way a failing call_soon() callback is reported. */
static int
report_step_error(PyObject *loop, TaskObj *task, PyMethodDef *def, PyObject *arg)
{
    PyObject *exc = cio_err_take();
    if (cio_exception_is_fatal(exc)) {
        cio_err_restore(exc);
        return -1;
    }
    PyObject *meth = PyCFunction_NewEx(def, (PyObject *)task, NULL);
    if (meth == NULL) {
        Py_DECREF(exc);
        return -1;
    }
    int rc = cio_handle_report_call_error(task->fut.st, loop, meth, arg, task->context, exc);
    Py_DECREF(meth);
    return rc;
}

static int
run_in_context(TaskObj *task, PyObject *exc)
{
    if (PyContext_Enter(task->context) < 0) {
        return -1;
    }
    int rc = step(task, exc);
    if (PyContext_Exit(task->context) < 0 && rc == 0) {
        rc = -1;
    }
    return rc;
}

int
cio_task_step(PyObject *loop, TaskObj *task, PyObject *exc)
{
    if (run_in_context(task, exc) < 0) {
        return report_step_error(loop, task, &step_def, exc);
    }
    return 0;
}

int
cio_task_wakeup(PyObject *loop, TaskObj *task, FutureObj *fut)
{
    PyObject *exc;
    PyObject *res = cio_future_outcome(fut, &exc);
    if (res == NULL && exc == NULL) {
        return report_step_error(loop, task, &wakeup_def, (PyObject *)fut);
    }
    Py_XDECREF(res);
    int rc = run_in_context(task, exc);
    Py_XDECREF(exc);
    if (rc < 0) {
        return report_step_error(loop, task, &wakeup_def, (PyObject *)fut);
    }
    return 0;
}

static PyObject *
task_step_meth(PyObject *task, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs > 1) {
        PyErr_SetString(PyExc_TypeError, "task_step() takes at most 1 argument");
        return NULL;
    }
    PyObject *exc = nargs == 1 && args[0] != Py_None ? args[0] : NULL;
    if (step((TaskObj *)task, exc) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
task_wakeup_meth(PyObject *self, PyObject *fut)
{
    TaskObj *task = (TaskObj *)self;
    cio_state *st = task->fut.st;
    PyObject *exc = NULL;
    if (cio_future_check_exact(st, fut)) {
        PyObject *res = cio_future_outcome((FutureObj *)fut, &exc);
        if (res == NULL && exc == NULL) {
            return NULL;
        }
        Py_XDECREF(res);
    }
    else {
        PyObject *res = PyObject_CallMethodNoArgs(fut, st->str_result);
        if (res == NULL) {
            exc = cio_err_take();
        }
        Py_XDECREF(res);
    }
    int rc = step(task, exc);
    Py_XDECREF(exc);
    if (rc < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* ---- the list of live tasks ----
 *
 * asyncio.all_tasks() must see our tasks.  asyncio keeps its tasks in a
 * WeakSet, and joining it costs a Python call and a weakref per task; so
 * instead each task links itself into a list here at creation and unlinks at
 * deallocation, and casyncio/_tasks.py shows asyncio.all_tasks() that list
 * next to asyncio's own (up to 3.13 through the module global all_tasks()
 * reads, from 3.14 through the WeakSet its C all_tasks() iterates).  Where
 * it cannot, register_tasks stays on and tasks are registered with asyncio
 * as well. */

static void
link_task(TaskObj *task)
{
    cio_state *st = task->fut.st;
    if (task->prev != NULL || st->tasks_head == task) {
        return; /* __init__ called again: already linked */
    }
    task->prev = NULL;
    task->next = st->tasks_head;
    if (st->tasks_head != NULL) {
        st->tasks_head->prev = task;
    }
    st->tasks_head = task;
}

void
cio_task_unlink(TaskObj *task)
{
    cio_state *st = task->fut.st;
    if (task->prev != NULL) {
        task->prev->next = task->next;
    }
    else if (st->tasks_head == task) {
        st->tasks_head = task->next;
    }
    else {
        return; /* never linked */
    }
    if (task->next != NULL) {
        task->next->prev = task->prev;
    }
    task->prev = task->next = NULL;
}

PyObject *
cio_task_all(cio_state *st)
{
    PyObject *list = PyList_New(0);
    if (list == NULL) {
        return NULL;
    }
    for (TaskObj *t = st->tasks_head; t != NULL; t = t->next) {
        if (t->fut.loop != NULL && PyList_Append(list, (PyObject *)t) < 0) {
            Py_DECREF(list);
            return NULL;
        }
    }
    return list;
}

/* ---- construction ---- */

/* Tells asyncio about a new task through `registrar` (one of its
 * _register_task, _register_eager_task, _unregister_eager_task), where
 * asyncio.all_tasks() cannot see casyncio's list (see casyncio/_tasks.py). */
static int
tell_asyncio(TaskObj *task, PyObject *registrar)
{
    if (!task->fut.st->register_tasks) {
        return 0;
    }
    PyObject *res = PyObject_CallOneArg(registrar, (PyObject *)task);
    Py_XDECREF(res);
    return res ? 0 : -1;
}

static int
register_task(TaskObj *task)
{
    return tell_asyncio(task, task->fut.st->register_task);
}

#if PY_VERSION_HEX >= 0x030C0000
static int
loop_is_running(cio_state *st, PyObject *loop)
{
    if (cio_loop_check(st, loop)) {
        return ((LoopObj *)loop)->running;
    }
    PyObject *res = PyObject_CallMethod(loop, "is_running", NULL);
    int running = res ? PyObject_IsTrue(res) : -1;
    Py_XDECREF(res);
    return running;
}

/* Task(..., eager_start=True) on a running loop (Python 3.12's eager
 * tasks): the first step runs now, inside the caller's, as the loop's
 * current task in place of the caller's task, which is put back after.  A
 * task that finished there drops its coroutine and is never scheduled, as
 * asyncio's; one that waits goes on as any other. */
static int
eager_step(TaskObj *task)
{
    cio_state *st = task->fut.st;
    PyObject *loop = Py_NewRef(task->fut.loop);
    Py_INCREF(task);
    link_task(task); /* asyncio.all_tasks() lists it while it runs */
    int rc = tell_asyncio(task, st->register_eager_task);
    if (rc < 0) {
        goto done;
    }
    rc = -1;
    PyObject *prev = swap_current_task(st, loop, Py_None);
    if (prev == NULL) {
        goto unregister;
    }
    /* A step that fails is reported as a scheduled one's would be; only
     * SystemExit and KeyboardInterrupt come out of it (-1). */
    rc = cio_task_step(loop, task, NULL);
    PyObject *pending = rc < 0 ? cio_err_take() : NULL;
    PyObject *mine = swap_current_task(st, loop, prev);
    Py_DECREF(prev);
    if (mine == NULL) {
        if (pending != NULL) {
            PyErr_WriteUnraisable((PyObject *)task);
        }
        rc = -1;
    }
    Py_XDECREF(mine);
    if (pending != NULL) {
        cio_err_restore(pending);
    }
unregister:
    {
        /* Out of the eager set whatever happened; the step's error goes on. */
        PyObject *error = rc < 0 ? cio_err_take() : NULL;
        if (tell_asyncio(task, st->unregister_eager_task) < 0) {
            if (error != NULL) {
                PyErr_WriteUnraisable((PyObject *)task);
            }
            rc = -1;
        }
        if (error != NULL) {
            cio_err_restore(error);
        }
    }
    if (rc == 0) {
        if (task->fut.state != CIO_PENDING) {
            Py_CLEAR(task->coro);
        }
        else {
            rc = register_task(task);
        }
    }
done:
    Py_DECREF(task);
    Py_DECREF(loop);
    return rc;
}
#endif

static int
task_init(TaskObj *task, PyObject *coro, PyObject *loop, PyObject *name, PyObject *context,
          int eager_start)
{
    cio_state *st = task->fut.st;
    if (cio_future_init(&task->fut, loop) < 0) {
        return -1;
    }
    int is_coro = PyCoro_CheckExact(coro);
    if (!is_coro) {
        PyObject *res = PyObject_CallOneArg(st->iscoroutine, coro);
        is_coro = res ? PyObject_IsTrue(res) : -1;
        Py_XDECREF(res);
        if (is_coro < 0) {
            return -1;
        }
    }
    if (!is_coro) {
        task->log_destroy_pending = 0;
        PyErr_Format(PyExc_TypeError, "a coroutine was expected, got %R", coro);
        return -1;
    }
    if (context == NULL || context == Py_None) {
        Py_XSETREF(task->context, PyContext_CopyCurrent());
        if (task->context == NULL) {
            return -1;
        }
    }
    else {
        /* Checked here, as call_soon(context=) checks it, in every mode:
         * asyncio keeps anything and fails each step (its task never runs). */
        if (cio_check_context(context) < 0) {
            task->log_destroy_pending = 0;
            return -1;
        }
        Py_XSETREF(task->context, Py_NewRef(context));
    }
    Py_CLEAR(task->fut_waiter);
    task->must_cancel = 0;
    task->log_destroy_pending = 1;
    task->num_cancels_requested = 0;
    Py_XSETREF(task->coro, Py_NewRef(coro));
    Py_CLEAR(task->name);
    if (name == NULL || name == Py_None) {
        /* The "Task-N" string is made only if someone asks for it. */
        task->number = ++st->task_name_counter;
    }
    else {
        task->name = PyUnicode_CheckExact(name) ? Py_NewRef(name) : PyObject_Str(name);
        if (task->name == NULL) {
            return -1;
        }
    }
#if PY_VERSION_HEX >= 0x030C0000
    if (eager_start) {
        int running = loop_is_running(st, task->fut.loop);
        if (running < 0) {
            return -1;
        }
        if (running) {
            return eager_step(task);
        }
    }
#endif
    if (call_step_soon(task, NULL) < 0) {
        return -1;
    }
    link_task(task);
    return register_task(task);
}

static int
Task_init(TaskObj *self, PyObject *args, PyObject *kwds)
{
    PyObject *coro, *loop = Py_None, *name = Py_None, *context = Py_None;
    int eager_start = 0;
#if PY_VERSION_HEX >= 0x030C0000
    static char *kwlist[] = {"coro", "loop", "name", "context", "eager_start", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|$OOOp:Task", kwlist, &coro, &loop, &name,
                                     &context, &eager_start)) {
        return -1;
    }
#else
    static char *kwlist[] = {"coro", "loop", "name", "context", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|$OOO:Task", kwlist, &coro, &loop, &name,
                                     &context)) {
        return -1;
    }
#endif
    if (cio_state_import_asyncio(self->fut.st) < 0) {
        return -1;
    }
    return task_init(self, coro, loop, name, context, eager_start);
}

PyObject *
cio_task_new(cio_state *st, PyObject *coro, PyObject *loop, PyObject *name, PyObject *context)
{
    if (cio_state_import_asyncio(st) < 0) {
        return NULL;
    }
    TaskObj *task = (TaskObj *)st->TaskType->tp_alloc(st->TaskType, 0);
    if (task == NULL) {
        return NULL;
    }
    task->fut.st = st;
    task->fut.is_task = 1;
    st->live.futures++;
    if (task_init(task, coro, loop, name, context, 0) < 0) {
        Py_DECREF(task);
        return NULL;
    }
    return (PyObject *)task;
}

/* ---- GC and finalization ---- */

static int
Task_traverse(TaskObj *self, visitproc visit, void *arg)
{
    Py_VISIT(self->coro);
    Py_VISIT(self->context);
    Py_VISIT(self->name);
    Py_VISIT(self->fut_waiter);
    return cio_future_traverse(&self->fut, visit, arg);
}

static int
Task_clear(TaskObj *self)
{
    Py_CLEAR(self->coro);
    Py_CLEAR(self->context);
    Py_CLEAR(self->name);
    Py_CLEAR(self->fut_waiter);
    Py_CLEAR(self->fut.dict);
    return cio_future_clear(&self->fut);
}

static void
Task_finalize(TaskObj *self)
{
    cio_state *st = self->fut.st;
    /* The task is garbage.  Whatever the report below does with it (an
     * exception handler may keep it), it leaves asyncio.all_tasks() now, as
     * a task in asyncio's WeakSet would: weakrefs die before finalizers. */
    cio_task_unlink(self);
    if (self->fut.state == CIO_PENDING && self->log_destroy_pending && self->fut.loop != NULL) {
        PyObject *saved = cio_err_take();
        /* The keys in stock asyncio's order: message, then task. */
        cio_future_report_destroyed(&self->fut, "{OsOO}", st->str_message,
                                    "Task was destroyed but it is pending!", st->str_task,
                                    (PyObject *)self);
        if (saved != NULL) {
            cio_err_restore(saved);
        }
    }
    cio_future_finalize(&self->fut);
}

/* ---- Python methods ---- */

static PyObject *
Task_get_coro(TaskObj *self, PyObject *Py_UNUSED(ignored))
{
    return Py_NewRef(self->coro ? self->coro : Py_None);
}

static PyObject *
Task_get_context(TaskObj *self, PyObject *Py_UNUSED(ignored))
{
    return Py_NewRef(self->context ? self->context : Py_None);
}

static PyObject *
Task_get_name(TaskObj *self, PyObject *Py_UNUSED(ignored))
{
    if (self->name == NULL) {
        self->name = PyUnicode_FromFormat("Task-%llu", self->number);
        if (self->name == NULL) {
            return NULL;
        }
    }
    return Py_NewRef(self->name);
}

static PyObject *
Task_set_name(TaskObj *self, PyObject *value)
{
    PyObject *name = PyUnicode_CheckExact(value) ? Py_NewRef(value) : PyObject_Str(value);
    if (name == NULL) {
        return NULL;
    }
    Py_XSETREF(self->name, name);
    Py_RETURN_NONE;
}

static PyObject *
Task_cancel(TaskObj *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"msg", NULL};
    PyObject *msg = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|O:cancel", kwlist, &msg)) {
        return NULL;
    }
    int r = task_cancel_impl(self, msg);
    if (r < 0) {
        return NULL;
    }
    return PyBool_FromLong(r);
}

static PyObject *
Task_cancelling(TaskObj *self, PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromLong(self->num_cancels_requested);
}

static PyObject *
Task_uncancel(TaskObj *self, PyObject *Py_UNUSED(ignored))
{
    if (self->num_cancels_requested > 0) {
        self->num_cancels_requested--;
#if PY_VERSION_HEX >= 0x030D0000
        /* 3.13: undoing the last cancel() request undoes a pending one. */
        if (self->num_cancels_requested == 0) {
            self->must_cancel = 0;
        }
#endif
    }
    return PyLong_FromLong(self->num_cancels_requested);
}

static PyObject *
Task_get_stack(TaskObj *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"limit", NULL};
    PyObject *limit = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|$O:get_stack", kwlist, &limit)) {
        return NULL;
    }
    return PyObject_CallFunctionObjArgs(self->fut.st->task_get_stack, (PyObject *)self, limit,
                                        NULL);
}

static PyObject *
Task_print_stack(TaskObj *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"limit", "file", NULL};
    PyObject *limit = Py_None, *file = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|$OO:print_stack", kwlist, &limit, &file)) {
        return NULL;
    }
    return PyObject_CallFunctionObjArgs(self->fut.st->task_print_stack, (PyObject *)self, limit,
                                        file, NULL);
}

static PyObject *
Task_set_result(TaskObj *self, PyObject *Py_UNUSED(arg))
{
    PyErr_SetString(PyExc_RuntimeError, "Task does not support set_result operation");
    return NULL;
}

static PyObject *
Task_set_exception(TaskObj *self, PyObject *Py_UNUSED(arg))
{
    PyErr_SetString(PyExc_RuntimeError, "Task does not support set_exception operation");
    return NULL;
}

static PyObject *
Task_get_coro_attr(TaskObj *self, void *Py_UNUSED(closure))
{
    return Py_NewRef(self->coro ? self->coro : Py_None);
}

static PyObject *
Task_get_fut_waiter(TaskObj *self, void *Py_UNUSED(closure))
{
    return Py_NewRef(self->fut_waiter ? self->fut_waiter : Py_None);
}

static PyObject *
Task_get_must_cancel(TaskObj *self, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(self->must_cancel);
}

static PyObject *
Task_get_log_destroy_pending(TaskObj *self, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(self->log_destroy_pending);
}

static int
Task_set_log_destroy_pending(TaskObj *self, PyObject *value, void *Py_UNUSED(closure))
{
    int v = cio_setter_truth(value);
    if (v < 0) {
        return -1;
    }
    self->log_destroy_pending = (char)v;
    return 0;
}

static PyObject *
Task_get_num_cancels(TaskObj *self, void *Py_UNUSED(closure))
{
    return PyLong_FromLong(self->num_cancels_requested);
}

static PyMethodDef Task_methods[] = {
    {"get_coro", (PyCFunction)Task_get_coro, METH_NOARGS, NULL},
    {"get_context", (PyCFunction)Task_get_context, METH_NOARGS, NULL},
    {"get_name", (PyCFunction)Task_get_name, METH_NOARGS, NULL},
    {"set_name", (PyCFunction)Task_set_name, METH_O, NULL},
    {"cancel", (PyCFunction)(void (*)(void))Task_cancel, METH_VARARGS | METH_KEYWORDS,
     "cancel(msg=None): ask the task to cancel itself."},
    {"cancelling", (PyCFunction)Task_cancelling, METH_NOARGS,
     "How many cancellation requests are pending."},
    {"uncancel", (PyCFunction)Task_uncancel, METH_NOARGS,
     "Withdraw one cancellation request; return how many remain."},
    {"get_stack", (PyCFunction)(void (*)(void))Task_get_stack, METH_VARARGS | METH_KEYWORDS, NULL},
    {"print_stack", (PyCFunction)(void (*)(void))Task_print_stack, METH_VARARGS | METH_KEYWORDS,
     NULL},
    {"set_result", (PyCFunction)Task_set_result, METH_O, NULL},
    {"set_exception", (PyCFunction)Task_set_exception, METH_O, NULL},
    {NULL, NULL},
};

static PyGetSetDef Task_getset[] = {
    {"_coro", (getter)Task_get_coro_attr, NULL, NULL, NULL},
    {"_fut_waiter", (getter)Task_get_fut_waiter, NULL, NULL, NULL},
    {"_must_cancel", (getter)Task_get_must_cancel, NULL, NULL, NULL},
    {"_log_destroy_pending", (getter)Task_get_log_destroy_pending,
     (setter)Task_set_log_destroy_pending, NULL, NULL},
    {"_num_cancels_requested", (getter)Task_get_num_cancels, NULL, NULL, NULL},
    {NULL},
};

static PyType_Slot Task_slots[] = {
    {Py_tp_doc, "A coroutine wrapped in a Future, as asyncio.Task, implemented in C."},
    {Py_tp_init, Task_init},
    {Py_tp_finalize, Task_finalize},
    {Py_tp_traverse, Task_traverse},
    {Py_tp_clear, Task_clear},
    {Py_tp_methods, Task_methods},
    {Py_tp_getset, Task_getset},
    {0, NULL},
};

static PyType_Spec Task_spec = {
    .name = "casyncio.Task",
    .basicsize = sizeof(TaskObj),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = Task_slots,
};

int
cio_task_init_type(PyObject *module, cio_state *st)
{
    st->TaskType =
        (PyTypeObject *)PyType_FromModuleAndSpec(module, &Task_spec, (PyObject *)st->FutureType);
    if (st->TaskType == NULL) {
        return -1;
    }
    return PyModule_AddType(module, st->TaskType);
}
