/* module.c: the casyncio._casyncio extension module.
 *
 * Multi-phase initialisation with all state in the module object (no C
 * globals): the heap types, interned strings, asyncio helpers imported on
 * first use, the Handle free lists and the live-object counters. */
#include "casyncio.h"

static PyObject *
intern(const char *s)
{
    return PyUnicode_InternFromString(s);
}

int
cio_exception_is_fatal(PyObject *exc)
{
    return exc != NULL && (PyErr_GivenExceptionMatches(exc, PyExc_SystemExit) ||
                           PyErr_GivenExceptionMatches(exc, PyExc_KeyboardInterrupt));
}

int
cio_parse_one(const char *name, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
              const char *param, PyObject **arg)
{
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    Py_ssize_t want = param != NULL;
    for (Py_ssize_t i = 0; i < nkw; i++) {
        PyObject *key = PyTuple_GET_ITEM(kwnames, i);
        if (param == NULL || PyUnicode_CompareWithASCIIString(key, param) != 0) {
            PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%U'", name,
                         key);
            return -1;
        }
        if (nargs > 0) {
            PyErr_Format(PyExc_TypeError, "%s() got multiple values for argument '%s'", name,
                         param);
            return -1;
        }
    }
    if (nargs + nkw != want) {
        PyErr_Format(PyExc_TypeError, "%s() takes exactly %zd argument%s (%zd given)", name, want,
                     want == 1 ? "" : "s", nargs + nkw);
        return -1;
    }
    if (want) {
        *arg = args[0];
    }
    return 0;
}

cio_state *
cio_state_from_type(PyTypeObject *type)
{
    /* Walks the MRO, so Python subclasses of our types find it too. */
    PyObject *mod = PyType_GetModuleByDef(type, &cio_module_def);
    return mod ? (cio_state *)PyModule_GetState(mod) : NULL;
}

/* Sets *field to module.name (a new reference).  Returns 0 or -1. */
static int
import_attr(PyObject **field, const char *module, const char *name)
{
    PyObject *mod = PyImport_ImportModule(module);
    if (mod == NULL) {
        return -1;
    }
    PyObject *value = PyObject_GetAttrString(mod, name);
    Py_DECREF(mod);
    if (value == NULL) {
        return -1;
    }
    Py_XSETREF(*field, value);
    return 0;
}

/* st->socket_fields: (family, type, proto) of _socket.socket. */
static int
import_socket_fields(cio_state *st)
{
    PyObject *base = NULL;
    if (import_attr(&base, "_socket", "socket") < 0) {
        return -1;
    }
    PyObject *fields = PyTuple_New(3);
    static const char *const names[] = {"family", "type", "proto"};
    for (Py_ssize_t i = 0; fields != NULL && i < 3; i++) {
        PyObject *descr = PyObject_GetAttrString(base, names[i]);
        if (descr == NULL || Py_TYPE(descr)->tp_descr_get == NULL) {
            if (descr != NULL) {
                PyErr_Format(PyExc_TypeError, "_socket.socket.%s is no descriptor", names[i]);
                Py_DECREF(descr);
            }
            Py_CLEAR(fields);
            break;
        }
        PyTuple_SET_ITEM(fields, i, descr);
    }
    Py_DECREF(base);
    if (fields == NULL) {
        return -1;
    }
    Py_XSETREF(st->socket_fields, fields);
    return 0;
}

/* 1 if asyncio.current_task() answers from `dict` (3.11-3.13), 0 if not
 * (3.14 keeps the current task in the thread state and leaves the dict to
 * its Python fallback), -1 on error.  Asked, not guessed from the version:
 * a probe key goes in, current_task(probe) must find it, the key comes out. */
static int
current_task_reads(PyObject *dict)
{
    PyObject *current_task = NULL;
    if (import_attr(&current_task, "asyncio.tasks", "current_task") < 0) {
        return -1;
    }
    PyObject *probe = PyObject_CallNoArgs((PyObject *)&PyBaseObject_Type);
    if (probe == NULL || PyDict_SetItem(dict, probe, probe) < 0) {
        Py_XDECREF(probe);
        Py_DECREF(current_task);
        return -1;
    }
    PyObject *found = PyObject_CallOneArg(current_task, probe);
    int reads = found == probe;
    Py_XDECREF(found);
    Py_DECREF(current_task);
    if (found == NULL) {
        PyErr_Clear(); /* a current_task() that rejects the probe reads no dict */
    }
    if (PyDict_DelItem(dict, probe) < 0) {
        reads = -1;
    }
    Py_DECREF(probe);
    return reads;
}

int
cio_state_import_asyncio(cio_state *st)
{
    if (st->format_callback_source != NULL) {
        return 0;
    }
    if (import_attr(&st->extract_stack, "asyncio.format_helpers", "extract_stack") < 0 ||
        import_attr(&st->iscoroutine, "asyncio", "iscoroutine") < 0 ||
        import_attr(&st->isgenerator, "inspect", "isgenerator") < 0 ||
        import_attr(&st->future_repr, "asyncio.base_futures", "_future_repr") < 0 ||
        import_attr(&st->task_repr, "asyncio.base_tasks", "_task_repr") < 0 ||
        import_attr(&st->task_get_stack, "asyncio.base_tasks", "_task_get_stack") < 0 ||
        import_attr(&st->task_print_stack, "asyncio.base_tasks", "_task_print_stack") < 0 ||
        import_attr(&st->register_task, "asyncio.tasks", "_register_task") < 0 ||
        import_attr(&st->enter_task, "asyncio.tasks", "_enter_task") < 0 ||
        import_attr(&st->leave_task, "asyncio.tasks", "_leave_task") < 0 ||
        import_attr(&st->CancelledError, "asyncio", "CancelledError") < 0 ||
        import_attr(&st->TransportSocket, "asyncio.trsock", "TransportSocket") < 0 ||
        import_attr(&st->set_nodelay, "asyncio.base_events", "_set_nodelay") < 0 ||
        import_attr(&st->socket_socket, "socket", "socket") < 0 ||
        import_attr(&st->set_result_unless_cancelled, "asyncio.futures",
                    "_set_result_unless_cancelled") < 0 ||
        import_attr(&st->logger, "asyncio.log", "logger") < 0 ||
        import_attr(&st->BufferedProtocol, "asyncio", "BufferedProtocol") < 0 ||
        import_attr(&st->InvalidStateError, "asyncio", "InvalidStateError") < 0 ||
        import_attr(&st->asyncio_Future, "asyncio", "Future") < 0 ||
        import_attr(&st->asyncio_Task, "asyncio", "Task") < 0 ||
        import_attr(&st->asyncio_Handle, "asyncio", "Handle") < 0 ||
        import_attr(&st->asyncio_TimerHandle, "asyncio", "TimerHandle") < 0 ||
        import_socket_fields(st) < 0) {
        return -1;
    }
    /* The check asyncio's call_soon() makes: 3.14 deprecates the public
     * asyncio.iscoroutinefunction (a warning per call) and keeps the check as
     * asyncio.coroutines._iscoroutinefunction. */
    if (import_attr(&st->iscoroutinefunction, "asyncio.coroutines", "_iscoroutinefunction") < 0) {
        PyErr_Clear();
        if (import_attr(&st->iscoroutinefunction, "asyncio", "iscoroutinefunction") < 0) {
            return -1;
        }
    }
    /* asyncio.events._get_event_loop (3.10.9+) warns like asyncio's own
     * futures do when there is no loop; older Pythons have get_event_loop. */
    if (import_attr(&st->get_event_loop, "asyncio.events", "_get_event_loop") < 0) {
        PyErr_Clear();
        if (import_attr(&st->get_event_loop, "asyncio.events", "get_event_loop") < 0) {
            return -1;
        }
    }
    /* Where asyncio keeps the current task per loop: a dict on Pythons
     * whose current_task() reads one (3.11-3.13), which we update directly;
     * otherwise we call _enter_task/_leave_task. */
    PyObject *current = NULL;
    if (import_attr(&current, "asyncio.tasks", "_current_tasks") < 0) {
        PyErr_Clear();
    }
    else if (PyDict_CheckExact(current)) {
        int reads = current_task_reads(current);
        if (reads < 0) {
            Py_DECREF(current);
            return -1;
        }
        if (reads) {
            Py_XSETREF(st->current_tasks, Py_NewRef(current));
        }
    }
    Py_XDECREF(current);
#if PY_VERSION_HEX >= 0x030C0000
    if (import_attr(&st->swap_current_task, "asyncio.tasks", "_swap_current_task") < 0 ||
        import_attr(&st->register_eager_task, "asyncio.tasks", "_register_eager_task") < 0 ||
        import_attr(&st->unregister_eager_task, "asyncio.tasks", "_unregister_eager_task") < 0) {
        return -1;
    }
#endif
    /* Last: it marks the import done. */
    if (import_attr(&st->format_callback_source, "asyncio.format_helpers",
                    "_format_callback_source") < 0) {
        return -1;
    }
    PyObject *kwdefaults = PyObject_GetAttrString(st->format_callback_source, "__kwdefaults__");
    if (kwdefaults == NULL) {
        PyErr_Clear();
    }
    else {
        st->format_callback_debug_kw =
            PyDict_Check(kwdefaults) && PyDict_GetItemString(kwdefaults, "debug") != NULL;
        Py_DECREF(kwdefaults);
    }
    return 0;
}

int
cio_capture_stack(cio_state *st, PyObject **out)
{
    PyFrameObject *frame = PyEval_GetFrame(); /* borrowed */
    if (frame == NULL) {
        return 0;
    }
    if (cio_state_import_asyncio(st) < 0) {
        return -1;
    }
    *out = PyObject_CallOneArg(st->extract_stack, (PyObject *)frame);
    return *out == NULL ? -1 : 0;
}

static PyObject *
mod_live_counts(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    cio_state *st = PyModule_GetState(module);
    return Py_BuildValue("{sn,sn,sn,si,si}", "handles", st->live.handles, "loops", st->live.loops,
                         "futures", st->live.futures, "handle_freelist", st->handle_freelist.len,
                         "timer_freelist", st->timer_freelist.len);
}

static PyObject *
mod_stats(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    cio_state *st = PyModule_GetState(module);
    return Py_BuildValue("{sK,sK,sK,sK,sK}", "loops_created", st->totals.loops_created,
                         "iterations", st->totals.iterations, "callbacks", st->totals.callbacks,
                         "sendfile_calls", st->totals.sendfile_calls, "stream_sends",
                         st->totals.stream_sends);
}

PyObject *cio_task_all(cio_state *st);

static PyObject *
mod_all_tasks(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    return cio_task_all(PyModule_GetState(module));
}

static PyObject *
mod_set_register_tasks(PyObject *module, PyObject *flag)
{
    int v = PyObject_IsTrue(flag);
    if (v < 0) {
        return NULL;
    }
    ((cio_state *)PyModule_GetState(module))->register_tasks = (char)v;
    Py_RETURN_NONE;
}

/* asyncio.future_add_to_awaited_by() and _discard_from_ (3.14), as
 * installed by casyncio._tasks: the record is kept on our futures; any
 * other future goes to asyncio's own function, which keeps it on asyncio's
 * (and ignores the rest). */
static PyObject *
awaited_by_call(PyObject *module, PyObject *const *args, Py_ssize_t nargs, const char *name,
                int add)
{
    cio_state *st = PyModule_GetState(module);
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "%s expected 2 arguments, got %zd", name, nargs);
        return NULL;
    }
    PyObject *fut = args[0], *waiter = args[1];
    if (!PyObject_TypeCheck(fut, st->FutureType)) {
        PyObject *fallback = add ? st->awaited_by_add : st->awaited_by_discard;
        if (fallback == NULL) {
            Py_RETURN_NONE;
        }
        return PyObject_Vectorcall(fallback, args, 2, NULL);
    }
    if (cio_state_import_asyncio(st) < 0) {
        return NULL;
    }
    int is_future = PyObject_IsInstance(waiter, st->asyncio_Future);
    if (is_future < 0) {
        return NULL;
    }
    if (is_future) {
        int rc = add ? cio_future_awaited_by_add((FutureObj *)fut, waiter)
                     : cio_future_awaited_by_discard((FutureObj *)fut, waiter);
        if (rc < 0) {
            return NULL;
        }
    }
    Py_RETURN_NONE;
}

static PyObject *
mod_future_add_to_awaited_by(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    return awaited_by_call(module, args, nargs, "future_add_to_awaited_by", 1);
}

static PyObject *
mod_future_discard_from_awaited_by(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    return awaited_by_call(module, args, nargs, "future_discard_from_awaited_by", 0);
}

static PyObject *
mod_set_awaited_by_fallbacks(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    cio_state *st = PyModule_GetState(module);
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "_set_awaited_by_fallbacks expected 2 arguments, got %zd",
                     nargs);
        return NULL;
    }
    Py_XSETREF(st->awaited_by_add, Py_NewRef(args[0]));
    Py_XSETREF(st->awaited_by_discard, Py_NewRef(args[1]));
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"future_add_to_awaited_by", (PyCFunction)(void (*)(void))mod_future_add_to_awaited_by,
     METH_FASTCALL, "future_add_to_awaited_by(fut, waiter, /): record that waiter awaits fut."},
    {"future_discard_from_awaited_by",
     (PyCFunction)(void (*)(void))mod_future_discard_from_awaited_by, METH_FASTCALL,
     "future_discard_from_awaited_by(fut, waiter, /): waiter no longer awaits fut."},
    {"_set_awaited_by_fallbacks", (PyCFunction)(void (*)(void))mod_set_awaited_by_fallbacks,
     METH_FASTCALL, "asyncio's own two functions, for futures that are not casyncio's."},
    {"_all_tasks", mod_all_tasks, METH_NOARGS,
     "A list of every live casyncio Task (of every loop)."},
    {"_set_register_tasks", mod_set_register_tasks, METH_O,
     "Whether new tasks also call asyncio.tasks._register_task()."},
    {"_live_counts", mod_live_counts, METH_NOARGS, "Counts of live C objects, for leak tests."},
    {"_stats", mod_stats, METH_NOARGS,
     "Totals since import: loops created, iterations run, callbacks run, sendfile(2) calls."},
    {NULL, NULL},
};

static int
module_exec(PyObject *module)
{
    cio_state *st = PyModule_GetState(module);
#define INTERN(field, text)       \
    do {                          \
        st->field = intern(text); \
        if (st->field == NULL) {  \
            return -1;            \
        }                         \
    } while (0)
    INTERN(str_call_exception_handler, "call_exception_handler");
    INTERN(str_message, "message");
    INTERN(str_exception, "exception");
    INTERN(str_handle, "handle");
    INTERN(str_source_traceback, "source_traceback");
    INTERN(str_log_slow_callback, "_log_slow_callback");
    INTERN(str_time, "time");
    INTERN(str_call_at, "call_at");
    INTERN(str_run_once, "_run_once");
    INTERN(str_select, "select");
    INTERN(str_fileno, "fileno");
    INTERN(str_timer_handle_cancelled, "_timer_handle_cancelled");
    INTERN(str_get_debug, "get_debug");
    INTERN(str_call_soon, "call_soon");
    INTERN(str_context, "context");
    INTERN(str_add_done_callback, "add_done_callback");
    INTERN(str_asyncio_future_blocking, "_asyncio_future_blocking");
    INTERN(str_get_loop, "get_loop");
    INTERN(str_cancel, "cancel");
    INTERN(str_msg, "msg");
    INTERN(str_result, "result");
    INTERN(str_value, "value");
    INTERN(str_throw, "throw");
    INTERN(str_future, "future");
    INTERN(str_task, "task");
    INTERN(str_set_name, "set_name");
    INTERN(str_name, "name");
    INTERN(str_connection_made, "connection_made");
    INTERN(str_start_reading, "_start_reading");
    INTERN(str_connection_lost, "connection_lost");
    INTERN(str_call_connection_lost, "_call_connection_lost");
    INTERN(str_eof_received, "eof_received");
    INTERN(str_pause_writing, "pause_writing");
    INTERN(str_resume_writing, "resume_writing");
    INTERN(str_sendto, "sendto");
    INTERN(str_recv, "recv");
    INTERN(str_recv_into, "recv_into");
    INTERN(str_send, "send");
    INTERN(str_sendmsg, "sendmsg");
    INTERN(str_shutdown, "shutdown");
    INTERN(str_socket, "socket");
    INTERN(str_sockname, "sockname");
    INTERN(str_peername, "peername");
    INTERN(str_getsockname, "getsockname");
    INTERN(str_getpeername, "getpeername");
    INTERN(str_attach, "_attach");
    INTERN(str_detach, "_detach");
    INTERN(str_recvfrom, "recvfrom");
    INTERN(str_recvfrom_into, "recvfrom_into");
    INTERN(str_accept, "accept");
    INTERN(str_connect, "connect");
    INTERN(str_setblocking, "setblocking");
    INTERN(str_close, "close");
    INTERN(str_datagram_received, "datagram_received");
    INTERN(str_error_received, "error_received");
    INTERN(str_data_received, "data_received");
    INTERN(str_get_buffer, "get_buffer");
    INTERN(str_buffer_updated, "buffer_updated");
    INTERN(str_PENDING, "PENDING");
    INTERN(str_CANCELLED, "CANCELLED");
    INTERN(str_FINISHED, "FINISHED");
#undef INTERN
    st->register_tasks = 1;
    st->kwnames_context = PyTuple_Pack(1, st->str_context);
    st->kwnames_msg = PyTuple_Pack(1, st->str_msg);
    if (st->kwnames_context == NULL || st->kwnames_msg == NULL) {
        return -1;
    }
    if (cio_handle_init_types(module, st) < 0) {
        return -1;
    }
    if (cio_loop_init_type(module, st) < 0) {
        return -1;
    }
    if (cio_future_init_types(module, st) < 0 || cio_task_init_type(module, st) < 0 ||
        cio_transport_init_types(module, st) < 0 || cio_sockops_init(module, st) < 0 ||
        cio_selector_init_type(module, st) < 0 || cio_tls_init(module, st) < 0) {
        return -1;
    }
    /* asyncio never imports casyncio, so importing it here cannot cycle;
     * having its exceptions and helpers from the start keeps every later
     * path free of "not imported yet" cases. */
    if (cio_state_import_asyncio(st) < 0) {
        return -1;
    }
    return 0;
}

static int
module_traverse(PyObject *module, visitproc visit, void *arg)
{
    cio_state *st = PyModule_GetState(module);
    Py_VISIT(st->LoopType);
    Py_VISIT(st->HandleType);
    Py_VISIT(st->TimerHandleType);
    Py_VISIT(st->FutureType);
    Py_VISIT(st->FutureIterType);
    Py_VISIT(st->TaskType);
    Py_VISIT(st->BufferedProtocol);
    Py_VISIT(st->last_sockname);
    Py_VISIT(st->last_peername);
    Py_VISIT(st->logger);
    Py_VISIT(st->set_result_unless_cancelled);
    Py_VISIT(st->set_nodelay);
    Py_VISIT(st->socket_socket);
    Py_VISIT(st->socket_fields);
    Py_VISIT(st->TransportSocket);
    Py_VISIT(st->SockOpType);
    Py_VISIT(st->SelectorType);
    Py_VISIT(st->DgramType);
    Py_VISIT(st->StreamType);
    Py_VISIT(st->format_callback_source);
    Py_VISIT(st->extract_stack);
    Py_VISIT(st->iscoroutinefunction);
    Py_VISIT(st->iscoroutine);
    Py_VISIT(st->isgenerator);
    Py_VISIT(st->get_event_loop);
    Py_VISIT(st->future_repr);
    Py_VISIT(st->task_repr);
    Py_VISIT(st->task_get_stack);
    Py_VISIT(st->task_print_stack);
    Py_VISIT(st->register_task);
    Py_VISIT(st->enter_task);
    Py_VISIT(st->leave_task);
    Py_VISIT(st->current_tasks);
    Py_VISIT(st->swap_current_task);
    Py_VISIT(st->awaited_by_add);
    Py_VISIT(st->awaited_by_discard);
    Py_VISIT(st->register_eager_task);
    Py_VISIT(st->unregister_eager_task);
    Py_VISIT(st->CancelledError);
    Py_VISIT(st->InvalidStateError);
    Py_VISIT(st->asyncio_Future);
    Py_VISIT(st->asyncio_Task);
    Py_VISIT(st->asyncio_Handle);
    Py_VISIT(st->asyncio_TimerHandle);
    Py_VISIT(st->kwnames_context);
    Py_VISIT(st->kwnames_msg);
    for (int i = 0; i < CIO_TLS_SLOTS; i++) {
        Py_VISIT(st->tls[i]);
    }
    return 0;
}

void
cio_freelist_clear(cio_freelist *fl)
{
    while (fl->head != NULL) {
        PyObject *obj = fl->head;
        fl->head = ((cio_freed *)obj)->next;
        PyObject_GC_Del(obj);
    }
    fl->len = 0;
}

static int
module_clear(PyObject *module)
{
    cio_state *st = PyModule_GetState(module);
    cio_freelist_clear(&st->handle_freelist);
    cio_freelist_clear(&st->timer_freelist);
    cio_freelist_clear(&st->iter_freelist);
    Py_CLEAR(st->LoopType);
    Py_CLEAR(st->HandleType);
    Py_CLEAR(st->TimerHandleType);
    Py_CLEAR(st->FutureType);
    Py_CLEAR(st->FutureIterType);
    Py_CLEAR(st->TaskType);
    Py_CLEAR(st->BufferedProtocol);
    Py_CLEAR(st->last_sockname);
    Py_CLEAR(st->last_peername);
    Py_CLEAR(st->logger);
    Py_CLEAR(st->set_result_unless_cancelled);
    Py_CLEAR(st->set_nodelay);
    Py_CLEAR(st->socket_socket);
    Py_CLEAR(st->socket_fields);
    Py_CLEAR(st->TransportSocket);
    Py_CLEAR(st->SockOpType);
    Py_CLEAR(st->SelectorType);
    Py_CLEAR(st->DgramType);
    Py_CLEAR(st->StreamType);
    Py_CLEAR(st->format_callback_source);
    Py_CLEAR(st->extract_stack);
    Py_CLEAR(st->iscoroutinefunction);
    Py_CLEAR(st->iscoroutine);
    Py_CLEAR(st->isgenerator);
    Py_CLEAR(st->get_event_loop);
    Py_CLEAR(st->future_repr);
    Py_CLEAR(st->task_repr);
    Py_CLEAR(st->task_get_stack);
    Py_CLEAR(st->task_print_stack);
    Py_CLEAR(st->register_task);
    Py_CLEAR(st->enter_task);
    Py_CLEAR(st->leave_task);
    Py_CLEAR(st->current_tasks);
    Py_CLEAR(st->swap_current_task);
    Py_CLEAR(st->awaited_by_add);
    Py_CLEAR(st->awaited_by_discard);
    Py_CLEAR(st->register_eager_task);
    Py_CLEAR(st->unregister_eager_task);
    Py_CLEAR(st->CancelledError);
    Py_CLEAR(st->InvalidStateError);
    Py_CLEAR(st->asyncio_Future);
    Py_CLEAR(st->asyncio_Task);
    Py_CLEAR(st->asyncio_Handle);
    Py_CLEAR(st->asyncio_TimerHandle);
    Py_CLEAR(st->kwnames_context);
    Py_CLEAR(st->kwnames_msg);
    Py_CLEAR(st->str_call_exception_handler);
    Py_CLEAR(st->str_message);
    Py_CLEAR(st->str_exception);
    Py_CLEAR(st->str_handle);
    Py_CLEAR(st->str_source_traceback);
    Py_CLEAR(st->str_log_slow_callback);
    Py_CLEAR(st->str_time);
    Py_CLEAR(st->str_call_at);
    Py_CLEAR(st->str_run_once);
    Py_CLEAR(st->str_select);
    Py_CLEAR(st->str_fileno);
    Py_CLEAR(st->str_timer_handle_cancelled);
    Py_CLEAR(st->str_get_debug);
    Py_CLEAR(st->str_call_soon);
    Py_CLEAR(st->str_context);
    Py_CLEAR(st->str_add_done_callback);
    Py_CLEAR(st->str_asyncio_future_blocking);
    Py_CLEAR(st->str_get_loop);
    Py_CLEAR(st->str_cancel);
    Py_CLEAR(st->str_msg);
    Py_CLEAR(st->str_result);
    Py_CLEAR(st->str_value);
    Py_CLEAR(st->str_throw);
    Py_CLEAR(st->str_future);
    Py_CLEAR(st->str_task);
    Py_CLEAR(st->str_set_name);
    Py_CLEAR(st->str_name);
    Py_CLEAR(st->str_connection_made);
    Py_CLEAR(st->str_start_reading);
    Py_CLEAR(st->str_connection_lost);
    Py_CLEAR(st->str_call_connection_lost);
    Py_CLEAR(st->str_eof_received);
    Py_CLEAR(st->str_pause_writing);
    Py_CLEAR(st->str_resume_writing);
    Py_CLEAR(st->str_sendto);
    Py_CLEAR(st->str_recv);
    Py_CLEAR(st->str_recv_into);
    Py_CLEAR(st->str_send);
    Py_CLEAR(st->str_sendmsg);
    Py_CLEAR(st->str_shutdown);
    Py_CLEAR(st->str_socket);
    Py_CLEAR(st->str_sockname);
    Py_CLEAR(st->str_peername);
    Py_CLEAR(st->str_getsockname);
    Py_CLEAR(st->str_getpeername);
    Py_CLEAR(st->str_attach);
    Py_CLEAR(st->str_detach);
    Py_CLEAR(st->str_recvfrom);
    Py_CLEAR(st->str_recvfrom_into);
    Py_CLEAR(st->str_accept);
    Py_CLEAR(st->str_connect);
    Py_CLEAR(st->str_setblocking);
    Py_CLEAR(st->str_close);
    Py_CLEAR(st->str_datagram_received);
    Py_CLEAR(st->str_error_received);
    Py_CLEAR(st->str_data_received);
    Py_CLEAR(st->str_get_buffer);
    Py_CLEAR(st->str_buffer_updated);
    Py_CLEAR(st->str_PENDING);
    Py_CLEAR(st->str_CANCELLED);
    Py_CLEAR(st->str_FINISHED);
    for (int i = 0; i < CIO_TLS_SLOTS; i++) {
        Py_CLEAR(st->tls[i]);
    }
    return 0;
}

static void
module_free(void *module)
{
    module_clear((PyObject *)module);
}

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, module_exec},
    {0, NULL},
};

PyModuleDef cio_module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "casyncio._casyncio",
    .m_doc = "The C core of casyncio: event loop, handles, futures and tasks.",
    .m_size = sizeof(cio_state),
    .m_methods = module_methods,
    .m_slots = module_slots,
    .m_traverse = module_traverse,
    .m_clear = module_clear,
    .m_free = module_free,
};

PyMODINIT_FUNC
PyInit__casyncio(void)
{
    return PyModuleDef_Init(&cio_module_def);
}
