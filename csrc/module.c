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

cio_state *
cio_state_from_type(PyTypeObject *type)
{
    /* Walks the MRO, so Python subclasses of our types find it too. */
    PyObject *mod = PyType_GetModuleByDef(type, &cio_module_def);
    return mod ? (cio_state *)PyModule_GetState(mod) : NULL;
}

int
cio_state_import_asyncio(cio_state *st)
{
    if (st->format_callback_source != NULL) {
        return 0;
    }
    PyObject *helpers = PyImport_ImportModule("asyncio.format_helpers");
    if (helpers == NULL) {
        return -1;
    }
    PyObject *asyncio = PyImport_ImportModule("asyncio");
    if (asyncio == NULL) {
        Py_DECREF(helpers);
        return -1;
    }
    PyObject *fmt = PyObject_GetAttrString(helpers, "_format_callback_source");
    PyObject *stack = PyObject_GetAttrString(helpers, "extract_stack");
    PyObject *fut = PyObject_GetAttrString(asyncio, "Future");
    PyObject *iscorofunc = PyObject_GetAttrString(asyncio, "iscoroutinefunction");
    Py_DECREF(helpers);
    Py_DECREF(asyncio);
    if (fmt == NULL || stack == NULL || fut == NULL || iscorofunc == NULL) {
        Py_XDECREF(fmt);
        Py_XDECREF(stack);
        Py_XDECREF(fut);
        Py_XDECREF(iscorofunc);
        return -1;
    }
    st->extract_stack = stack;
    st->asyncio_Future = fut;
    st->iscoroutinefunction = iscorofunc;
    st->format_callback_source = fmt; /* last: it marks the import done */
    return 0;
}

static PyObject *
mod_live_counts(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    cio_state *st = PyModule_GetState(module);
    return Py_BuildValue("{sn,sn,si,si}", "handles", st->live.handles, "loops",
                         st->live.loops, "handle_freelist",
                         st->handle_freelist_len, "timer_freelist",
                         st->timer_freelist_len);
}

static PyObject *
mod_stats(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    cio_state *st = PyModule_GetState(module);
    return Py_BuildValue("{sK,sK,sK}", "loops_created", st->totals.loops_created,
                         "iterations", st->totals.iterations, "callbacks",
                         st->totals.callbacks);
}

static PyMethodDef module_methods[] = {
    {"_live_counts", mod_live_counts, METH_NOARGS,
     "Counts of live C objects, for leak tests."},
    {"_stats", mod_stats, METH_NOARGS,
     "Totals since import: loops created, iterations run, callbacks run."},
    {NULL, NULL},
};

static int
module_exec(PyObject *module)
{
    cio_state *st = PyModule_GetState(module);
#define INTERN(field, text)          \
    do {                             \
        st->field = intern(text);    \
        if (st->field == NULL) {     \
            return -1;               \
        }                            \
    } while (0)
    INTERN(str_call_exception_handler, "call_exception_handler");
    INTERN(str_message, "message");
    INTERN(str_exception, "exception");
    INTERN(str_handle, "handle");
    INTERN(str_source_traceback, "source_traceback");
    INTERN(str_log_slow_callback, "_log_slow_callback");
    INTERN(str_fileno, "fileno");
    INTERN(str_timer_handle_cancelled, "_timer_handle_cancelled");
    INTERN(str_get_debug, "get_debug");
#undef INTERN
    if (cio_handle_init_types(module, st) < 0) {
        return -1;
    }
    if (cio_loop_init_type(module, st) < 0) {
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
    Py_VISIT(st->asyncio_Future);
    Py_VISIT(st->format_callback_source);
    Py_VISIT(st->extract_stack);
    Py_VISIT(st->iscoroutinefunction);
    return 0;
}

static int
module_clear(PyObject *module)
{
    cio_state *st = PyModule_GetState(module);
    cio_handle_clear_freelists(st);
    Py_CLEAR(st->LoopType);
    Py_CLEAR(st->HandleType);
    Py_CLEAR(st->TimerHandleType);
    Py_CLEAR(st->asyncio_Future);
    Py_CLEAR(st->format_callback_source);
    Py_CLEAR(st->extract_stack);
    Py_CLEAR(st->iscoroutinefunction);
    Py_CLEAR(st->str_call_exception_handler);
    Py_CLEAR(st->str_message);
    Py_CLEAR(st->str_exception);
    Py_CLEAR(st->str_handle);
    Py_CLEAR(st->str_source_traceback);
    Py_CLEAR(st->str_log_slow_callback);
    Py_CLEAR(st->str_fileno);
    Py_CLEAR(st->str_timer_handle_cancelled);
    Py_CLEAR(st->str_get_debug);
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
