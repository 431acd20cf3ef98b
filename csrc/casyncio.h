/* casyncio.h: what the Python-object layer's files share.
 *
 * The module state (types, cached Python objects, free lists, live-object
 * counters), the object structs that more than one file touches, and the
 * ready-queue entry kinds.  Everything here uses the public C API only. */
#ifndef CASYNCIO_H
#define CASYNCIO_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <errno.h>
#include <sys/socket.h>

#ifdef Py_GIL_DISABLED
/* The ready queue and the sleeping flag rely on the GIL to serialise the
 * loop thread with call_soon_threadsafe callers. */
#error "casyncio does not support free-threaded CPython builds yet"
#endif

#include "core/clock.h"
#include "core/fdtable.h"
#include "core/heap.h"
#include "core/poller.h"
#include "core/ring.h"

/* A free list: dead objects of one exact type kept for reuse, so the
 * busiest objects (Handles, TimerHandles, future iterators) skip the
 * allocator. A kept object's fields after its header are free; the first of
 * them links the list. */
#define CIO_FREELIST_MAX 256

typedef struct {
    PyObject *head;
    int len;
} cio_freelist;

typedef struct {
    PyObject_HEAD
    PyObject *next;
} cio_freed;

/* Keep `obj` (untracked, its references dropped); 0 if the list is full and
 * the caller frees it. */
static inline int
cio_freelist_push(cio_freelist *fl, PyObject *obj)
{
    if (fl->len >= CIO_FREELIST_MAX) {
        return 0;
    }
    ((cio_freed *)obj)->next = fl->head;
    fl->head = obj;
    fl->len++;
    return 1;
}

/* A kept object brought back as a new `type` with refcount 1, or NULL if
 * the list is empty. Its fields are the caller's to set. */
static inline PyObject *
cio_freelist_pop(cio_freelist *fl, PyTypeObject *type)
{
    PyObject *obj = fl->head;
    if (obj != NULL) {
        fl->head = ((cio_freed *)obj)->next;
        fl->len--;
        /* Sets the refcount to 1 and takes a reference to the type. */
        PyObject_Init(obj, type);
    }
    return obj;
}

/* Free every kept object (at module teardown). */
void cio_freelist_clear(cio_freelist *fl);

/* Counters of live objects, kept in every build: tests assert that they
 * return to their starting values (a leaked Handle shows up as a count). */
typedef struct {
    Py_ssize_t handles;
    Py_ssize_t loops;
    Py_ssize_t futures; /* Futures and Tasks */
} cio_counters;

/* Totals since import, readable from Python (casyncio._casyncio._stats())
 * and printed at exit with CASYNCIO_STATS=1: the proof that a program's
 * callbacks really ran on this loop. */
typedef struct {
    unsigned long long loops_created;
    unsigned long long iterations;
    unsigned long long callbacks;
    unsigned long long sendfile_calls; /* sendfile(2) calls sock_sendfile() made */
    unsigned long long stream_sends;   /* send(2)/sendmsg(2) calls of stream transports */
} cio_totals;

struct HandleObj;

#define CIO_TLS_SLOTS 56

typedef struct {
    PyTypeObject *LoopType;
    PyTypeObject *HandleType;
    PyTypeObject *TimerHandleType;
    PyTypeObject *FutureType;
    PyTypeObject *FutureIterType;
    PyTypeObject *TaskType;
    PyTypeObject *StreamType;
    PyTypeObject *DgramType;
    PyTypeObject *SockOpType;
    PyTypeObject *SelectorType;

    /* From asyncio, imported when the module is (cio_state_import_asyncio). */
    PyObject *format_callback_source; /* asyncio.format_helpers._format_callback_source */
    PyObject *extract_stack;          /* asyncio.format_helpers.extract_stack */
    PyObject *iscoroutinefunction;    /* asyncio.iscoroutinefunction */
    PyObject *iscoroutine;            /* asyncio.iscoroutine */
    PyObject *isgenerator;            /* inspect.isgenerator */
    PyObject *get_event_loop;         /* asyncio.events._get_event_loop */
    PyObject *future_repr;            /* asyncio.base_futures._future_repr */
    PyObject *task_repr;              /* asyncio.base_tasks._task_repr */
    PyObject *task_get_stack;         /* asyncio.base_tasks._task_get_stack */
    PyObject *task_print_stack;       /* asyncio.base_tasks._task_print_stack */
    PyObject *register_task;          /* asyncio.tasks._register_task */
    PyObject *enter_task;             /* asyncio.tasks._enter_task */
    PyObject *leave_task;             /* asyncio.tasks._leave_task */
    PyObject *current_tasks;          /* asyncio.tasks._current_tasks, if a dict */
    PyObject *swap_current_task;      /* asyncio.tasks._swap_current_task (3.12+) */
    PyObject *awaited_by_add;         /* asyncio's future_add_to_awaited_by (3.14) */
    PyObject *awaited_by_discard;     /* asyncio's future_discard_from_awaited_by (3.14) */
    PyObject *register_eager_task;    /* asyncio.tasks._register_eager_task (3.12+) */
    PyObject *unregister_eager_task;  /* asyncio.tasks._unregister_eager_task (3.12+) */
    /* _format_callback_source() takes debug= (3.13.4+, 3.12.11+: callback
     * arguments are shown in debug mode only). */
    int format_callback_debug_kw;
    PyObject *CancelledError;
    PyObject *InvalidStateError;
    PyObject *asyncio_Future; /* asyncio.Future, what casyncio.Future's __class__ says */
    PyObject *asyncio_Task;   /* asyncio.Task, what casyncio.Task's __class__ says */
    PyObject *asyncio_Handle; /* asyncio.Handle and asyncio.TimerHandle, likewise */
    PyObject *asyncio_TimerHandle;
    PyObject *TransportSocket; /* asyncio.trsock.TransportSocket */
    PyObject *set_nodelay;     /* asyncio.base_events._set_nodelay */
    PyObject *socket_socket;   /* socket.socket */
    /* The family, type and proto descriptors of _socket.socket, which read
     * the ints under socket.socket's enum-building properties. */
    PyObject *socket_fields;
    PyObject *set_result_unless_cancelled; /* asyncio.futures._set_result_unless_cancelled */
    PyObject *logger;                      /* logging.getLogger("asyncio") */
    PyObject *BufferedProtocol;            /* asyncio.BufferedProtocol */
    /* The sockname and the peername the last transport was given, which
     * the next one shares when equal (transport.c, shared_address). */
    PyObject *last_sockname;
    PyObject *last_peername;

    /* Interned strings. */
    PyObject *str_call_exception_handler;
    PyObject *str_message;
    PyObject *str_exception;
    PyObject *str_handle;
    PyObject *str_source_traceback;
    PyObject *str_log_slow_callback;
    PyObject *str_time;
    PyObject *str_call_at;
    PyObject *str_run_once;
    PyObject *str_select;
    PyObject *str_fileno;
    PyObject *str_timer_handle_cancelled;
    PyObject *str_get_debug;
    PyObject *str_call_soon;
    PyObject *str_context;
    PyObject *str_add_done_callback;
    PyObject *str_asyncio_future_blocking;
    PyObject *str_get_loop;
    PyObject *str_cancel;
    PyObject *str_msg;
    PyObject *str_result;
    PyObject *str_value;
    PyObject *str_throw;
    PyObject *str_future;
    PyObject *str_task;
    PyObject *str_set_name;
    PyObject *str_name;
    PyObject *str_connection_made;
    PyObject *str_start_reading;
    PyObject *str_connection_lost;
    PyObject *str_call_connection_lost;
    PyObject *str_eof_received;
    PyObject *str_pause_writing;
    PyObject *str_resume_writing;
    PyObject *str_sendto;
    PyObject *str_recv;
    PyObject *str_recv_into;
    PyObject *str_send;
    PyObject *str_sendmsg;
    PyObject *str_shutdown;
    PyObject *str_socket;
    PyObject *str_sockname;
    PyObject *str_peername;
    PyObject *str_getsockname;
    PyObject *str_getpeername;
    PyObject *str_attach;
    PyObject *str_detach;
    PyObject *str_recvfrom;
    PyObject *str_recvfrom_into;
    PyObject *str_accept;
    PyObject *str_connect;
    PyObject *str_setblocking;
    PyObject *str_close;
    PyObject *str_datagram_received;
    PyObject *str_error_received;
    PyObject *str_data_received;
    PyObject *str_get_buffer;
    PyObject *str_buffer_updated;
    PyObject *str_PENDING;
    PyObject *str_CANCELLED;
    PyObject *str_FINISHED;
    PyObject *kwnames_context; /* ("context",) */
    PyObject *kwnames_msg;     /* ("msg",) */

    /* What tls.c keeps (its two types, what casyncio/_tls.py hands it, the
     * names it looks up), indexed by the enum there. */
    PyObject *tls[CIO_TLS_SLOTS];

    unsigned long long task_name_counter;
    /* Every live casyncio Task, for asyncio.all_tasks(); see task.c. */
    struct TaskObj *tasks_head;
    /* False once asyncio.all_tasks() reads that list (casyncio/_tasks.py),
     * so tasks need not also join asyncio's WeakSet. */
    char register_tasks;
    cio_freelist iter_freelist;
    cio_freelist handle_freelist;
    cio_freelist timer_freelist;

    cio_counters live;
    cio_totals totals;
} cio_state;

/* Ready-queue entry kinds (cio_ring_item.kind) and what a, b, c hold. */
enum {
    /* a: HandleObj (strong).  Runs the handle unless it was cancelled. */
    CIO_READY_HANDLE = 1,
    /* a: callable, b: its one argument, c: contextvars.Context or NULL (all
     * strong).  A call with no Handle object behind it. */
    CIO_READY_CALL1 = 2,
    /* a: TaskObj, b: exception to throw in, or NULL (both strong).  One step
     * of a task's coroutine. */
    CIO_READY_TASK_STEP = 3,
    /* a: TaskObj, b: the FutureObj it awaited, now done (both strong). */
    CIO_READY_TASK_WAKEUP = 4,
    /* a: the transport or sock_*() operation watching an fd (strong), b: the
     * fd, c: CIO_READ or CIO_WRITE (both as intptr_t).  Readiness that
     * arrived while other callbacks were already queued; it runs only if
     * the same watcher still watches that direction. */
    CIO_READY_FD_EVENT = 5,
};

/* ---- Handle / TimerHandle (handle.c) ---- */

typedef struct HandleObj {
    PyObject_HEAD
    cio_state *st;      /* borrowed; the type keeps the module alive */
    PyObject *callback; /* NULL once cancelled */
    PyObject *args;     /* tuple, or NULL for no arguments */
    PyObject *context;  /* contextvars.Context */
    PyObject *loop;
    PyObject *repr;             /* repr saved at cancel() in debug mode */
    PyObject *source_traceback; /* list of frames in debug mode, or NULL */
    PyObject *weakreflist;
    char cancelled;
    char ctx_copied;    /* context is a copy made for this handle alone */
    char ctx_untracked; /* ...and is off the GC's lists while scheduled */
} HandleObj;

typedef struct {
    HandleObj base;
    cio_heap_node node; /* its place in the owning loop's heap */
    double when;        /* as given */
    char when_is_int;   /* call_at() got an int: when() gives one back, as asyncio's */
} TimerHandleObj;

#define CIO_TIMER_FROM_NODE(n) ((TimerHandleObj *)((char *)(n) - offsetof(TimerHandleObj, node)))

/* New Handle running callback(*args) in context (NULL: copy the current
 * one); args is a tuple or NULL.  Takes from the free list when it can. */
HandleObj *cio_handle_new(cio_state *st, PyObject *callback, PyObject *args, PyObject *loop,
                          PyObject *context);
TimerHandleObj *cio_timer_new(cio_state *st, double when, PyObject *callback, PyObject *args,
                              PyObject *loop, PyObject *context);
/* Runs a handle's callback in its context.  Returns 0, or -1 with
 * SystemExit/KeyboardInterrupt set (other errors go to the loop's exception
 * handler, as asyncio's Handle._run does). */
int cio_handle_run(HandleObj *h);
/* Calls func(*args) inside context (NULL: the current one).  Returns NULL on
 * success, or the exception it raised (a new reference, error indicator
 * clear). */
PyObject *cio_call_in_context(PyObject *context, PyObject *func, PyObject *const *args,
                              size_t nargs);
/* Reports that callback(*args) raised exc through the loop's exception
 * handler, as "Exception in callback ..." with this handle.  Steals exc.
 * Returns 0, or -1 if the handler raised SystemExit/KeyboardInterrupt. */
int cio_handle_report_error(HandleObj *h, PyObject *callback, PyObject *args, PyObject *exc);
/* The same report for a call that has no Handle of its own (a ready-queue
 * CALL1 entry, a task step): callback(arg), or callback() if arg is NULL,
 * made in loop with context, raised exc.  Steals exc.  Returns 0, or -1 if
 * the handler raised SystemExit/KeyboardInterrupt or the report could not
 * be built. */
int cio_handle_report_call_error(cio_state *st, PyObject *loop, PyObject *callback, PyObject *arg,
                                 PyObject *context, PyObject *exc);
/* Marks a handle cancelled and drops its callback; for a TimerHandle this
 * also leaves the loop's heap.  Returns 0 or -1. */
int cio_handle_cancel(HandleObj *h);
int cio_handle_init_types(PyObject *module, cio_state *st);
/* Visits what a handle refers to (not its type): the loop's traverse uses
 * it for the scheduled timers it keeps untracked. */
int cio_handle_traverse_refs(HandleObj *h, visitproc visit, void *arg);
/* Puts a handle's own context copy back on the GC's lists, if the loop had
 * taken it off (see loop.c, timers). */
void cio_handle_track_context(HandleObj *h);

static inline int
cio_handle_check(cio_state *st, PyObject *op)
{
    return PyObject_TypeCheck(op, st->HandleType);
}

static inline int
cio_timer_check(cio_state *st, PyObject *op)
{
    return PyObject_TypeCheck(op, st->TimerHandleType);
}

/* ---- Loop (loop.c, loop_fd.c) ---- */

typedef struct {
    PyObject_HEAD
    cio_state *st; /* borrowed */
    cio_ring ready;
    cio_heap timers;
    const cio_poller_backend *backend;
    cio_poller *poller;
    cio_fdtable fds;
    cio_poll_event *fired;
    int wakeup_fd;     /* eventfd for call_soon_threadsafe, or -1 */
    char sleeping;     /* in the poller with a non-zero timeout */
    char wake_pending; /* wakeup_fd was written and not yet drained */
    char io_inline;    /* this iteration's transports run during dispatch */
    char due_end_read; /* due_end holds this iteration's end of "now" */
    char closed;
    char stopping;
    char debug;
    char running;
    char time_replaced;         /* loop.time is not LoopBase.time: see cio_loop_now() */
    char call_at_replaced;      /* nor loop.call_at LoopBase's: call_later() calls it */
    char run_once_replaced;     /* nor loop._run_once: each iteration calls it */
    char select_replaced;       /* loop._selector.select is replaced (selector.c) */
    char corking;               /* a callback is running: writes may be corked */
    unsigned long thread_ident; /* valid while running */
    double clock_resolution;
    double due_end; /* read once the poll returned (cio_loop_decide_inline) */
    double slow_callback_duration;
    PyObject *current_handle; /* debug mode only */
    PyObject *task_factory;
    PyObject *selector; /* loop._selector, made when first asked for */
    char *rbuf;         /* read buffer shared by the transports */
    /* The stream transports holding writes of the running callback, to
     * send when it returns (see cio_loop_uncork()). */
    PyObject **corked;
    Py_ssize_t ncorked, corked_cap;
    PyObject *dict;
    PyObject *weakreflist;
} LoopObj;

/* asyncio.base_events.MAXIMUM_SELECT_TIMEOUT: 24 hours. */
#define CIO_MAX_POLL_MS (24 * 3600 * 1000)
/* The most events one poll reports. */
#define CIO_FIRED_CAP 1024

/* Waits up to timeout_ms (-1: forever) for fd events, filling fired[] (room
 * for CIO_FIRED_CAP), then runs Python's signal handlers.  `own`: this is
 * the loop thread's iteration, which call_soon_threadsafe() wakes while it
 * sleeps.  Returns how many events, or -1 with an exception set. */
int cio_loop_wait(LoopObj *loop, cio_poll_event *fired, int timeout_ms, int own);

/* selector.c: loop._selector, the loop's poller as asyncio's selector. */
int cio_selector_init_type(PyObject *module, cio_state *st);
/* loop._selector: made on first use, None once the loop is closed. */
PyObject *cio_selector_get(LoopObj *loop, void *closure);
/* Notes whether the selector's select() is replaced (select_replaced). */
int cio_selector_update(LoopObj *loop);
/* An iteration's poll through the replaced select(), as asyncio's
 * _run_once() calls it: the timeout asyncio passes, and the events it
 * returns handed to the watchers.  Returns 0 or -1. */
int cio_selector_poll(LoopObj *loop);
/* Cuts the selector off the loop (close, dealloc) and drops it. */
void cio_selector_detach(LoopObj *loop);

/* What watches an fd direction (cio_fd_entry reader_tag/writer_tag). */
enum {
    CIO_W_NONE = 0,
    CIO_W_HANDLE, /* add_reader()/add_writer(): a HandleObj */
    CIO_W_WAKEUP, /* the loop's own eventfd (no object) */
    CIO_W_STREAM, /* a stream transport (transport_stream.c) */
    CIO_W_DGRAM,  /* a datagram transport (transport_dgram.c) */
    CIO_W_SOCKOP, /* a pending sock_*() operation (sockops.c) */
};
enum { CIO_READ = 0, CIO_WRITE = 1 };

static inline int
cio_loop_check_closed(LoopObj *loop)
{
    if (loop->closed) {
        PyErr_SetString(PyExc_RuntimeError, "Event loop is closed");
        return -1;
    }
    return 0;
}

static inline int
cio_loop_check(cio_state *st, PyObject *op)
{
    return PyObject_TypeCheck(op, st->LoopType);
}

int cio_loop_init_type(PyObject *module, cio_state *st);

/* Appends an entry to the ready queue, taking the references it holds.
 * Returns 0, or -1 with MemoryError set (references untouched). */
static inline int
cio_loop_push(LoopObj *loop, uint32_t kind, void *a, void *b, void *c)
{
    if (cio_ring_push(&loop->ready, kind, a, b, c) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

/* Drops the references a ready-queue entry holds. */
void cio_loop_item_release(cio_ring_item *it);

/* The loop's clock, as call_later() and the timers read it: time.monotonic()
 * read in C, or self.time() once that is replaced (on the instance, as a
 * test's mock.patch.object(loop, "time") does, or by a subclass), since
 * asyncio's loop reads its clock through self.time().  Returns 0, or -1
 * with the replacement's exception set. */
int cio_loop_now_replaced(LoopObj *loop, double *now);

static inline int
cio_loop_now(LoopObj *loop, double *now)
{
    if (!loop->time_replaced) {
        *now = cio_clock_now();
        return 0;
    }
    return cio_loop_now_replaced(loop, now);
}

/* Puts a TimerHandle in the loop's heap (taking a new reference for it),
 * or takes it out (dropping that reference). */
int cio_loop_timer_add(LoopObj *loop, TimerHandleObj *t);
void cio_loop_timer_remove(LoopObj *loop, TimerHandleObj *t);

/* Calls loop.call_exception_handler(context).  Returns 0, or -1 if it
 * raised SystemExit/KeyboardInterrupt, which stays set; any other error it
 * raises is printed as unraisable, since there is nowhere left to report it. */
int cio_call_exception_handler(cio_state *st, PyObject *loop, PyObject *context);

/* Checks a callback for call_soon() and friends in debug mode (asyncio makes
 * no check otherwise): callable and not a coroutine or coroutine function
 * (TypeError otherwise).  `method` names the caller in the message.  Returns
 * 0 or -1. */
int cio_check_callback(cio_state *st, PyObject *callback, const char *method);

/* Debug mode: logs that running `what` (a handle; with `io` "read" or
 * "write", a transport or sock_*() operation's I/O) took `seconds`, as
 * slow as slow_callback_duration or slower.  Errors are unraisable. */
void cio_loop_log_slow(LoopObj *loop, PyObject *what, const char *io, double seconds);

/* Corked writes.  While the loop runs a callback (a ready-queue entry, or
 * a transport's event run during dispatch), a stream transport may hold
 * that callback's small writes instead of sending each at once (see
 * transport_stream.c); it notes itself with cio_loop_cork() and the loop
 * sends them all when the callback returns (cio_loop_uncork()), so two
 * write()s in one callback cost one system call.  cio_loop_cork() takes a
 * reference; returns 0 or -1. */
int cio_loop_cork(LoopObj *loop, PyObject *transport);
/* Sends every corked transport's writes.  `rc` is the callback's result:
 * an exception it left set is kept, and the first of its and the sends' is
 * what the -1 returned carries.  `it` is the ready entry that ran (a
 * transport's event run during dispatch passes one made for it): the sends
 * are made in its callback's context, so that a send that fails reports the
 * error and schedules connection_lost() where asyncio would, at write(). */
int cio_loop_uncork(LoopObj *loop, int rc, const cio_ring_item *it);
/* transport.c: sends a transport's corked writes.  Returns 0 or -1. */
int cio_transport_uncork(PyObject *transport);
/* transport.c: the context watcher w's events in direction `which` ran in,
 * if w is a transport (see cio_transport_run_io), else NULL.  Borrowed. */
PyObject *cio_transport_event_context(cio_state *st, PyObject *w, int which);

/* Around one callback: corking on before it, its corked writes sent
 * after.  cio_loop_cork_begin() returns what cio_loop_cork_end() restores
 * (a callback may run a nested iteration); cio_loop_cork_end() returns rc,
 * or -1 if sending failed. */
static inline char
cio_loop_cork_begin(LoopObj *loop)
{
    char was = loop->corking;
    loop->corking = 1;
    return was;
}

static inline int
cio_loop_cork_end(LoopObj *loop, char was, int rc, const cio_ring_item *it)
{
    loop->corking = was;
    return loop->ncorked > 0 ? cio_loop_uncork(loop, rc, it) : rc;
}

/* loop.c: whether a timer is due now (1, 0, or -1 with an error set). */
int cio_loop_timer_due(LoopObj *loop);

/* Decided once the poll has returned, before dispatch (a thread's
 * call_soon_threadsafe() or a signal.signal() handler may have queued a
 * callback meanwhile): transports run during dispatch (io_inline, see
 * notify_watcher() in loop_fd.c) only if nothing is queued and no timer is
 * due.  In asyncio's order those come before the events, and so before what
 * the transports' callbacks schedule: a wait_for() whose deadline passed as
 * the data came still times out. */
static inline int
cio_loop_decide_inline(LoopObj *loop)
{
    loop->io_inline = 0;
    if (cio_ring_len(&loop->ready) > 0) {
        return 0;
    }
    int due = cio_heap_len(&loop->timers) > 0 ? cio_loop_timer_due(loop) : 0;
    loop->io_inline = due == 0;
    return due < 0 ? -1 : 0;
}

/* loop_fd.c: readiness of file descriptors. */
extern PyMethodDef cio_loop_fd_methods[];
/* Hands the poller's fired events to their watchers (see notify_watcher). */
int cio_loop_dispatch_fd_events(LoopObj *loop, int n);
/* Runs a CIO_READY_FD_EVENT entry. */
int cio_loop_run_fd_event(LoopObj *loop, cio_ring_item *it);
/* Drops every fd watcher (loop close). */
void cio_loop_fd_clear(LoopObj *loop);
int cio_loop_fd_traverse(LoopObj *loop, visitproc visit, void *arg);
/* fd of an int or of an object with fileno(), with selectors' errors.
 * Returns the fd or -1. */
int cio_fileobj_to_fd(cio_state *st, PyObject *obj);
/* Makes obj (a new reference is taken) the reader or writer of fd, with a
 * tag, and tells the poller.  The watcher it replaces is handed back in
 * *old (a reference the caller must drop; NULL if none).  On failure
 * (OSError, MemoryError) nothing changed. */
int cio_loop_watch(LoopObj *loop, int fd, int which, PyObject *obj, uint16_t tag, PyObject **old,
                   uint16_t *old_tag);
/* Removes the reader or writer of fd; hands it back like cio_loop_watch. */
void cio_loop_unwatch(LoopObj *loop, int fd, int which, PyObject **old, uint16_t *old_tag);
/* The object owning fd (a transport; borrowed), or NULL. */
PyObject *cio_loop_fd_owner(LoopObj *loop, int fd);
/* Records (or, with NULL, forgets) a borrowed owner for fd. */
int cio_loop_set_fd_owner(LoopObj *loop, int fd, PyObject *owner);
/* RuntimeError if a transport owns fd, as asyncio's loops refuse to let
 * add_reader() or sock_recv() steal a transport's fd.  Returns 0 or -1. */
int cio_loop_ensure_fd_no_transport(LoopObj *loop, int fd);

/* ---- Future and Task (future.c, task.c) ---- */

typedef enum { CIO_PENDING = 0, CIO_CANCELLED, CIO_FINISHED } cio_fut_state;

/* A done-callback.  WAKEUP entries are tasks awaiting the future (fn is the
 * TaskObj): they are woken by a direct call, with no bound method made. */
enum { CIO_CB_CALL = 0, CIO_CB_WAKEUP = 1, CIO_CB_SOCKOP = 2 };

/* sockops.c: a pending sock_*() operation's future is done. */
void cio_sockop_future_done(PyObject *op);

typedef struct {
    PyObject *fn;
    PyObject *ctx; /* contextvars.Context, or NULL (for a wakeup: the task's own) */
    int kind;
} cio_fut_cb;

typedef struct {
    Py_ssize_t len;
    Py_ssize_t cap;
    cio_fut_cb items[];
} cio_fut_cbs;

typedef struct FutureObj {
    PyObject_HEAD
    cio_state *st;
    PyObject *loop;
    cio_fut_cb cb0;   /* the first callback, kept inline */
    cio_fut_cbs *cbs; /* the others, or NULL */
    PyObject *result;
    PyObject *exception;
    PyObject *exception_tb;
    PyObject *source_traceback;
    PyObject *cancel_message;
    PyObject *cancelled_exc;
    PyObject *weakreflist;
    PyObject *dict;       /* attributes set from Python (libraries tag tasks), or NULL */
    PyObject *awaited_by; /* for asyncio.graph (3.14): NULL, one waiter, or a set of them */
    unsigned char state;  /* cio_fut_state */
    char log_tb;
    char blocking;
    char is_task;
} FutureObj;

typedef struct TaskObj {
    FutureObj fut;
    struct TaskObj *prev, *next; /* the module's list of live tasks (not owned) */
    PyObject *coro;
    PyObject *context;
    PyObject *name; /* NULL until asked for: then "Task-<number>" */
    PyObject *fut_waiter;
    unsigned long long number;
    int num_cancels_requested;
    char must_cancel;
    char log_destroy_pending;
} TaskObj;

typedef struct FutureIterObj {
    PyObject_HEAD
    cio_state *st;
    FutureObj *future; /* NULL once exhausted */
} FutureIterObj;

static inline int
cio_future_check_exact(cio_state *st, PyObject *op)
{
    return Py_IS_TYPE(op, st->FutureType) || Py_IS_TYPE(op, st->TaskType);
}

int cio_future_init_types(PyObject *module, cio_state *st);
int cio_task_init_type(PyObject *module, cio_state *st);

/* A new pending Future on loop. */
PyObject *cio_future_new(cio_state *st, PyObject *loop);
/* A new Task running coro on loop (name, context may be NULL). */
PyObject *cio_task_new(cio_state *st, PyObject *coro, PyObject *loop, PyObject *name,
                       PyObject *context);

/* asyncio.graph's record of who awaits a future (0 or -1): tasks, and
 * asyncio's gather() and TaskGroup through future_add_to_awaited_by(). */
int cio_future_awaited_by_add(FutureObj *fut, PyObject *waiter);
int cio_future_awaited_by_discard(FutureObj *fut, PyObject *waiter);

/* Future internals shared with task.c.  Each returns 0 or -1. */
int cio_future_init(FutureObj *fut, PyObject *loop);
int cio_future_set_result(FutureObj *fut, PyObject *result);
int cio_future_set_exception(FutureObj *fut, PyObject *exc);
/* Returns 1 if cancelled now, 0 if it was already done, -1 on error. */
int cio_future_cancel(FutureObj *fut, PyObject *msg);
int cio_future_add_callback(FutureObj *fut, PyObject *fn, PyObject *ctx, int kind);
/* The CancelledError to raise for a cancelled future (new reference). */
PyObject *cio_future_make_cancelled_error(FutureObj *fut);
/* For a done future: NULL with *exc set to the exception to deliver (new
 * reference) -- as result() would raise it -- or the result (new reference)
 * with *exc NULL. */
PyObject *cio_future_outcome(FutureObj *fut, PyObject **exc);
void cio_future_finalize(FutureObj *fut);
/* For finalizers, as asyncio's __del__ methods do: calls the future's
 * loop's exception handler with the dict Py_BuildValue(format, ...) makes,
 * plus "source_traceback" if the future has one.  Any error is printed
 * with PyErr_WriteUnraisable; call it with no exception set. */
void cio_future_report_destroyed(FutureObj *fut, const char *format, ...);
int cio_future_traverse(FutureObj *fut, visitproc visit, void *arg);
int cio_future_clear(FutureObj *fut);

/* Run from `loop`'s ready queue (or, cio_task_step, by an eager start on
 * the task's own loop).  Return 0, or -1 with SystemExit or
 * KeyboardInterrupt set (anything else is reported to `loop`'s exception
 * handler, as a failing callback of it would be, not raised). */
int cio_task_step(PyObject *loop, TaskObj *task, PyObject *exc);
int cio_task_wakeup(PyObject *loop, TaskObj *task, FutureObj *fut);
/* The callable that wakes the task when passed a done future (a new one
 * each time). */
PyObject *cio_task_wakeup_method(TaskObj *task);
/* Takes a task off the module's list of live tasks (idempotent). */
void cio_task_unlink(TaskObj *task);

/* ---- networking (transport*.c, sockops.c) ---- */

#define CIO_READ_BUFFER_SIZE (256 * 1024)
/* A read this big is copied out of the loop's buffer no more: the next read
 * on that fd asks FIONREAD how much is queued and reads it straight into its
 * bytes object (transport_stream.c, sockops.c). */
#define CIO_BIG_READ (32 * 1024)

int cio_transport_init_types(PyObject *module, cio_state *st);
/* The TLS protocol's per-record methods (tls.c). */
int cio_tls_init(PyObject *module, cio_state *st);
int cio_sockops_init(PyObject *module, cio_state *st);
/* An address as the socket module gives it, for AF_INET, AF_INET6 and
 * AF_UNIX (sockops.c). */
PyObject *cio_sockaddr_to_python(const struct sockaddr_storage *ss, socklen_t len);
/* A socket.socket's family (i 0), type (1) or proto (2) as an int, without
 * the enum its property makes; 0, or -1 with an error set (sockops.c). */
int cio_socket_field(cio_state *st, PyObject *sock, Py_ssize_t i, long *out);
extern PyMethodDef cio_stream_loop_methods[];
extern PyMethodDef cio_dgram_loop_methods[];
extern PyMethodDef cio_sockops_loop_methods[];
/* TypeError unless context is a contextvars.Context (what call_soon() and
 * friends take as context=).  Returns 0 or -1. */
int cio_check_context(PyObject *context);
/* Schedules callable(*args) on the loop through a Handle running in context
 * (NULL: a copy of the current one).  args may be NULL.  Returns 0 or -1. */
int cio_loop_call_soon(LoopObj *loop, PyObject *callable, PyObject *args, PyObject *context);
/* The loop's shared read buffer (CIO_READ_BUFFER_SIZE bytes), or NULL with
 * MemoryError. */
char *cio_loop_read_buffer(LoopObj *loop);
/* Reads once from fd, at most max (<= CIO_READ_BUFFER_SIZE) bytes, into a
 * new bytes object *data: through the loop's buffer and a copy of what came,
 * or, when `sized`, straight into an object of the size the kernel says is
 * queued (FIONREAD: one more system call, which pays for itself once reads
 * are big; with nothing reported it reads through the buffer).  EINTR is
 * retried.  Returns the count read (0 at EOF, *data then b""), -2 if it would
 * block, or -1 with an exception set (OSError, MemoryError); *data is NULL
 * on both. */
Py_ssize_t cio_recv_bytes(LoopObj *loop, int fd, Py_ssize_t max, int sized, PyObject **data);

/* ---- helpers (module.c) ---- */

extern PyModuleDef cio_module_def;

/* The module state behind one of our types or a Python subclass of it. */
cio_state *cio_state_from_type(PyTypeObject *type);
/* The arguments of a C method (METH_FASTCALL | METH_KEYWORDS) that takes
 * one, `param`, or none (param NULL): the one is also accepted by name, as
 * by the Python method the C one stands for.  Sets *arg.  Returns 0 or -1
 * with a TypeError. */
int cio_parse_one(const char *name, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                  const char *param, PyObject **arg);

/* After a socket object's method raised: 0 (the error cleared) if it only
 * would have blocked (BlockingIOError, InterruptedError), else -1 with the
 * error still set. */
static inline int
cio_err_would_block(void)
{
    if (PyErr_ExceptionMatches(PyExc_BlockingIOError) ||
        PyErr_ExceptionMatches(PyExc_InterruptedError)) {
        PyErr_Clear();
        return 0;
    }
    return -1;
}

/* After a non-blocking system call failed: 0 if it only would have blocked
 * (EAGAIN), else -1 with OSError set from errno.  EINTR is the caller's
 * business (reads into bytes objects and the transports retry at once, the
 * other sock_*() operations wait). */
static inline int
cio_os_error_unless_eagain(void)
{
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
        return 0;
    }
    PyErr_SetFromErrno(PyExc_OSError);
    return -1;
}

/* Takes the current exception as one normalized object with its traceback
 * attached (NULL if none), and puts one back (stealing it): the 3.12
 * PyErr_GetRaisedException pair, spelled for 3.11 as well. */
static inline PyObject *
cio_err_take(void)
{
#if PY_VERSION_HEX >= 0x030C0000
    return PyErr_GetRaisedException();
#else
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    if (type == NULL) {
        return NULL;
    }
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb != NULL) {
        PyException_SetTraceback(value, tb);
        Py_DECREF(tb);
    }
    Py_DECREF(type);
    return value;
#endif
}

static inline void
cio_err_restore(PyObject *exc /* steals */)
{
#if PY_VERSION_HEX >= 0x030C0000
    PyErr_SetRaisedException(exc);
#else
    PyErr_Restore(Py_NewRef((PyObject *)Py_TYPE(exc)), exc, PyException_GetTraceback(exc));
#endif
}

/* The truth of a value assigned to a boolean attribute: 1/0, or -1 with an
 * exception (also for `del`, value NULL, which these attributes refuse). */
static inline int
cio_setter_truth(PyObject *value)
{
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete attribute");
        return -1;
    }
    return PyObject_IsTrue(value);
}

/* Whether a vectorcall keyword name is `name` (one of the interned
 * strings above): callers' keyword names are interned too, so identity
 * usually answers; an equal string built at run time still matches. */
static inline int
cio_kwname_is(PyObject *key, PyObject *name)
{
    return key == name || PyUnicode_Compare(key, name) == 0;
}

/* Imports the lazily cached asyncio helpers into the state. Returns 0/-1. */
int cio_state_import_asyncio(cio_state *st);

/* loop.get_debug() as 1/0 (read directly from a casyncio loop), -1 on error. */
static inline int
cio_loop_get_debug(cio_state *st, PyObject *loop)
{
    if (cio_loop_check(st, loop)) {
        return ((LoopObj *)loop)->debug;
    }
    PyObject *res = PyObject_CallMethodNoArgs(loop, st->str_get_debug);
    if (res == NULL) {
        return -1;
    }
    int debug = PyObject_IsTrue(res);
    Py_DECREF(res);
    return debug;
}

/* Sets *out to the stack of the innermost Python frame, if there is one.
 * Returns 0/-1. */
int cio_capture_stack(cio_state *st, PyObject **out);

/* In debug mode, where an object is being made: sets *out to the stack of
 * the innermost Python frame (the caller of call_soon(), create_future()...;
 * C methods have no frame of their own), as asyncio's source_traceback.
 * Leaves *out alone outside debug mode. Returns 0/-1. */
static inline int
cio_source_traceback(cio_state *st, PyObject *loop, PyObject **out)
{
    int debug = cio_loop_get_debug(st, loop);
    return debug <= 0 ? debug : cio_capture_stack(st, out);
}

/* True for SystemExit and KeyboardInterrupt: the exceptions a loop lets
 * through instead of reporting. */
int cio_exception_is_fatal(PyObject *exc);

#endif
