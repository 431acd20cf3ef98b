/* loop_fd.c: watching file descriptors, and turning the poller's events into
 * ready-queue entries.
 *
 * Each fd's table entry holds (a strong reference to) a watcher per
 * direction -- the Handle of add_reader()/add_writer(), a transport, or a
 * pending sock_*() operation -- tagged with its kind, plus the event mask
 * registered with the poller, so every change tells the poller exactly the
 * difference.  Readiness is dispatched by appending an entry to the ready
 * queue, as asyncio's selector loop appends the reader's Handle, so I/O
 * callbacks run in the same order relative to call_soon() callbacks as on
 * stock asyncio.  A transport also marks the fd as owned, so add_reader()
 * and sock_*() refuse it, as asyncio's loops do. */
#include "casyncio.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

int cio_stream_io(PyObject *transport, int which);
int cio_dgram_io(PyObject *transport, int which);
int cio_sockop_io(PyObject *op, int which);

/* int(obj.fileno()), or obj itself if it is an int (a new reference);
 * ValueError for an object without a usable fileno(), as asyncio's
 * _ensure_fd_no_transport() gives before it looks at anything else. */
static PyObject *
fileobj_number(cio_state *st, PyObject *obj)
{
    if (PyLong_Check(obj)) {
        return Py_NewRef(obj);
    }
    PyObject *res = PyObject_CallMethodNoArgs(obj, st->str_fileno);
    PyObject *num = res != NULL ? PyNumber_Long(res) : NULL;
    Py_XDECREF(res);
    if (num == NULL &&
        (PyErr_ExceptionMatches(PyExc_AttributeError) || PyErr_ExceptionMatches(PyExc_TypeError) ||
         PyErr_ExceptionMatches(PyExc_ValueError))) {
        PyErr_Clear();
        PyErr_Format(PyExc_ValueError, "Invalid file object: %R", obj);
    }
    return num;
}

/* The fd an int names, as the selector takes it: ValueError if negative,
 * OverflowError (as from epoll's register()) beyond a C int. */
static int
number_to_fd(PyObject *num)
{
    int overflow;
    long fd = PyLong_AsLongAndOverflow(num, &overflow);
    if (fd == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (overflow > 0 || fd > INT_MAX) {
        PyErr_Format(PyExc_OverflowError, "file descriptor %S is greater than maximum", num);
        return -1;
    }
    if (overflow < 0 || fd < 0) {
        PyErr_Format(PyExc_ValueError, "Invalid file descriptor: %S", num);
        return -1;
    }
    return (int)fd;
}

int
cio_fileobj_to_fd(cio_state *st, PyObject *obj)
{
    PyObject *num = fileobj_number(st, obj);
    if (num == NULL) {
        return -1;
    }
    int fd = number_to_fd(num);
    Py_DECREF(num);
    return fd;
}

static uint32_t
wanted_events(const cio_fd_entry *e)
{
    return (e->reader ? CIO_POLL_IN : 0) | (e->writer ? CIO_POLL_OUT : 0);
}

/* Tells the poller about the entry's current watchers. */
static int
sync_poller(LoopObj *self, int fd, cio_fd_entry *e)
{
    uint32_t want = wanted_events(e);
    if (want == e->events) {
        return 0;
    }
    int err = self->backend->modify(self->poller, fd, e->events, want);
    if (err < 0 && want != 0) {
        errno = -err;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    /* A failed removal means the fd is gone already (closed): not watched,
     * which was the goal. */
    e->events = want;
    return 0;
}

/* The file object add_reader()/add_writer() got is kept while a Handle
 * watches the fd: remove_reader(sock) finds the fd by it after sock.close()
 * has made sock.fileno() -1, as the selectors asyncio uses do.  (The kernel
 * dropped the closed fd from the poller already.) */
static void
forget_fileobj(cio_fd_entry *e)
{
    if (e->fileobj != NULL && e->reader_tag != CIO_W_HANDLE && e->writer_tag != CIO_W_HANDLE) {
        PyObject *obj = e->fileobj;
        e->fileobj = NULL;
        Py_DECREF(obj);
    }
}

/* The fd that a Handle watches as `obj`, or -1. */
static int
fd_of_fileobj(LoopObj *self, PyObject *obj)
{
    for (int fd = 0; fd < self->fds.cap; fd++) {
        if (self->fds.entries[fd].fileobj == obj) {
            return fd;
        }
    }
    return -1;
}

int
cio_loop_watch(LoopObj *self, int fd, int which, PyObject *obj, uint16_t tag, PyObject **old,
               uint16_t *old_tag)
{
    cio_fd_entry *e;
    *old = NULL;
    *old_tag = CIO_W_NONE;
    if (cio_loop_check_closed(self) < 0) {
        /* A transport resuming or buffering after its loop closed. */
        return -1;
    }
    if (fd >= self->fds.cap && fcntl(fd, F_GETFD) < 0) {
        /* Not open: say so (as the poller would), before growing the table
         * to an fd number that may be far beyond any open one. */
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    if (cio_fdtable_ensure(&self->fds, fd, &e) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    if (e->reader_tag == CIO_W_WAKEUP) {
        PyErr_Format(PyExc_ValueError, "fd %d is the loop's own wakeup fd", fd);
        return -1;
    }
    void **slot = which == CIO_READ ? &e->reader : &e->writer;
    uint16_t *tag_slot = which == CIO_READ ? &e->reader_tag : &e->writer_tag;
    void *prev = *slot;
    uint16_t prev_tag = *tag_slot;
    int was_used = cio_fd_entry_used(e);
    *slot = obj;
    if (sync_poller(self, fd, e) < 0) {
        *slot = prev;
        return -1;
    }
    Py_INCREF(obj);
    *tag_slot = tag;
    cio_fdtable_update_count(&self->fds, e, was_used);
    forget_fileobj(e);
    *old = prev;
    *old_tag = prev ? prev_tag : CIO_W_NONE;
    return 0;
}

void
cio_loop_unwatch(LoopObj *self, int fd, int which, PyObject **old, uint16_t *old_tag)
{
    *old = NULL;
    *old_tag = CIO_W_NONE;
    cio_fd_entry *e = cio_fdtable_get(&self->fds, fd);
    if (e == NULL) {
        return;
    }
    void **slot = which == CIO_READ ? &e->reader : &e->writer;
    uint16_t *tag_slot = which == CIO_READ ? &e->reader_tag : &e->writer_tag;
    if (*slot == NULL) {
        return;
    }
    *old = *slot;
    *old_tag = *tag_slot;
    *slot = NULL;
    *tag_slot = CIO_W_NONE;
    (void)sync_poller(self, fd, e); /* a removal cannot fail */
    cio_fdtable_update_count(&self->fds, e, 1);
    forget_fileobj(e);
}

PyObject *
cio_loop_fd_owner(LoopObj *self, int fd)
{
    cio_fd_entry *e = cio_fdtable_get(&self->fds, fd);
    return e ? (PyObject *)e->owner : NULL;
}

int
cio_loop_set_fd_owner(LoopObj *self, int fd, PyObject *owner)
{
    cio_fd_entry *e;
    if (owner == NULL) {
        e = cio_fdtable_get(&self->fds, fd);
        if (e != NULL) {
            e->owner = NULL;
        }
        return 0;
    }
    if (cio_fdtable_ensure(&self->fds, fd, &e) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    e->owner = owner;
    return 0;
}

int
cio_loop_ensure_fd_no_transport(LoopObj *self, int fd)
{
    PyObject *owner = cio_loop_fd_owner(self, fd);
    if (owner != NULL) {
        PyErr_Format(PyExc_RuntimeError, "File descriptor %d is used by transport %R", fd, owner);
        return -1;
    }
    return 0;
}

/* Drops a watcher taken out of the table.  A replaced or removed Handle is
 * cancelled, as asyncio does. */
static int
drop_watcher(PyObject *old, uint16_t tag)
{
    int rc = 0;
    if (old != NULL && tag == CIO_W_HANDLE) {
        rc = cio_handle_cancel((HandleObj *)old);
    }
    Py_XDECREF(old);
    return rc;
}

/* ---- add_reader() and friends ---- */

static PyObject *
add_handle(LoopObj *self, int which, const char *fname, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 2) {
        PyErr_Format(PyExc_TypeError, "%s() missing required arguments 'fd' and 'callback'", fname);
        return NULL;
    }
    /* asyncio's order: the file object, whether the loop is closed, then
     * the fd's number. */
    PyObject *num = fileobj_number(self->st, args[0]);
    if (num == NULL) {
        return NULL;
    }
    int fd = cio_loop_check_closed(self) < 0 ? -1 : number_to_fd(num);
    Py_DECREF(num);
    /* The callback is not checked, as asyncio does not: one that is not
     * callable fails each time the fd is ready, and is reported. */
    if (fd < 0 || cio_loop_ensure_fd_no_transport(self, fd) < 0) {
        return NULL;
    }
    PyObject *rest = NULL;
    if (nargs > 2) {
        rest = PyTuple_New(nargs - 2);
        if (rest == NULL) {
            return NULL;
        }
        for (Py_ssize_t i = 2; i < nargs; i++) {
            PyTuple_SET_ITEM(rest, i - 2, Py_NewRef(args[i]));
        }
    }
    HandleObj *h = cio_handle_new(self->st, args[1], rest, (PyObject *)self, NULL);
    Py_XDECREF(rest);
    if (h == NULL) {
        return NULL;
    }
    PyObject *old;
    uint16_t old_tag;
    int rc = cio_loop_watch(self, fd, which, (PyObject *)h, CIO_W_HANDLE, &old, &old_tag);
    Py_DECREF(h);
    if (rc == 0 && !PyLong_Check(args[0])) {
        cio_fd_entry *e = cio_fdtable_get(&self->fds, fd);
        PyObject *prev = e->fileobj;
        e->fileobj = Py_NewRef(args[0]);
        Py_XDECREF(prev);
    }
    if (rc < 0 || drop_watcher(old, old_tag) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
remove_handle(LoopObj *self, int which, PyObject *fdobj)
{
    /* asyncio's order: the file object, whether the loop is closed, then
     * the fd's number. */
    PyObject *num = fileobj_number(self->st, fdobj);
    if (num == NULL) {
        return NULL;
    }
    if (self->closed) {
        Py_DECREF(num);
        Py_RETURN_FALSE;
    }
    int fd = number_to_fd(num);
    Py_DECREF(num);
    if (fd < 0 && PyErr_ExceptionMatches(PyExc_OverflowError)) {
        PyErr_Clear(); /* no such fd can be watched */
        Py_RETURN_FALSE;
    }
    if (fd < 0 && !PyLong_Check(fdobj) && PyErr_ExceptionMatches(PyExc_ValueError)) {
        fd = fd_of_fileobj(self, fdobj); /* a closed socket */
        if (fd >= 0) {
            PyErr_Clear();
        }
    }
    if (fd < 0 || cio_loop_ensure_fd_no_transport(self, fd) < 0) {
        return NULL;
    }
    PyObject *old;
    uint16_t old_tag;
    cio_loop_unwatch(self, fd, which, &old, &old_tag);
    if (old == NULL) {
        Py_RETURN_FALSE;
    }
    if (drop_watcher(old, old_tag) < 0) {
        return NULL;
    }
    Py_RETURN_TRUE;
}

static PyObject *
Loop_add_reader(LoopObj *self, PyObject *const *args, Py_ssize_t nargs)
{
    return add_handle(self, CIO_READ, "add_reader", args, nargs);
}

static PyObject *
Loop_add_writer(LoopObj *self, PyObject *const *args, Py_ssize_t nargs)
{
    return add_handle(self, CIO_WRITE, "add_writer", args, nargs);
}

static PyObject *
Loop_remove_reader(LoopObj *self, PyObject *fd)
{
    return remove_handle(self, CIO_READ, fd);
}

static PyObject *
Loop_remove_writer(LoopObj *self, PyObject *fd)
{
    return remove_handle(self, CIO_WRITE, fd);
}

static PyObject *
Loop__ensure_fd_no_transport(LoopObj *self, PyObject *fdobj)
{
    int fd = cio_fileobj_to_fd(self->st, fdobj);
    if (fd < 0 || cio_loop_ensure_fd_no_transport(self, fd) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
Loop__transport_fd_release(LoopObj *self, PyObject *fdobj)
{
    /* sendfile on a transport uses sock_sendfile() on its fd: hand the fd
     * over for that time.  Returns the owner, to give back afterwards. */
    int fd = cio_fileobj_to_fd(self->st, fdobj);
    if (fd < 0) {
        return NULL;
    }
    PyObject *owner = cio_loop_fd_owner(self, fd);
    cio_loop_set_fd_owner(self, fd, NULL);
    return Py_NewRef(owner ? owner : Py_None);
}

static PyObject *
Loop__transport_fd_restore(LoopObj *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "_transport_fd_restore(fd, transport)");
        return NULL;
    }
    int fd = cio_fileobj_to_fd(self->st, args[0]);
    if (fd < 0) {
        return NULL;
    }
    PyObject *t = args[1];
    if (t != Py_None && !PyObject_TypeCheck(t, self->st->StreamType) &&
        !PyObject_TypeCheck(t, self->st->DgramType)) {
        PyErr_SetString(PyExc_TypeError, "a casyncio transport was expected");
        return NULL;
    }
    /* The pointer is borrowed: a transport clears it before it goes. */
    if (cio_loop_set_fd_owner(self, fd, t == Py_None ? NULL : t) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
Loop__watched_fds(LoopObj *self, PyObject *Py_UNUSED(ignored))
{
    /* {fd: (reader or None, writer or None)}, for tests. */
    PyObject *d = PyDict_New();
    if (d == NULL) {
        return NULL;
    }
    for (int fd = 0; fd < self->fds.cap; fd++) {
        cio_fd_entry *e = &self->fds.entries[fd];
        if (!cio_fd_entry_used(e)) {
            continue;
        }
        PyObject *k = PyLong_FromLong(fd);
        PyObject *v = Py_BuildValue("(OO)", e->reader ? (PyObject *)e->reader : Py_None,
                                    e->writer ? (PyObject *)e->writer : Py_None);
        if (k == NULL || v == NULL || PyDict_SetItem(d, k, v) < 0) {
            Py_XDECREF(k);
            Py_XDECREF(v);
            Py_DECREF(d);
            return NULL;
        }
        Py_DECREF(k);
        Py_DECREF(v);
    }
    return d;
}

PyMethodDef cio_loop_fd_methods[] = {
    {"add_reader", (PyCFunction)(void (*)(void))Loop_add_reader, METH_FASTCALL,
     "add_reader(fd, callback, *args): call callback(*args) when fd is readable."},
    {"add_writer", (PyCFunction)(void (*)(void))Loop_add_writer, METH_FASTCALL,
     "add_writer(fd, callback, *args): call callback(*args) when fd is writable."},
    {"remove_reader", (PyCFunction)Loop_remove_reader, METH_O,
     "Stop watching fd for reading; True if it was watched."},
    {"remove_writer", (PyCFunction)Loop_remove_writer, METH_O,
     "Stop watching fd for writing; True if it was watched."},
    {"_ensure_fd_no_transport", (PyCFunction)Loop__ensure_fd_no_transport, METH_O, NULL},
    {"_watched_fds", (PyCFunction)Loop__watched_fds, METH_NOARGS, NULL},
    {"_transport_fd_release", (PyCFunction)Loop__transport_fd_release, METH_O, NULL},
    {"_transport_fd_restore", (PyCFunction)(void (*)(void))Loop__transport_fd_restore,
     METH_FASTCALL, NULL},
    {NULL, NULL},
};

/* ---- dispatch ---- */

static int
run_watcher_io(PyObject *w, uint16_t tag, int which)
{
    switch (tag) {
    case CIO_W_STREAM:
        return cio_stream_io(w, which);
    case CIO_W_DGRAM:
        return cio_dgram_io(w, which);
    case CIO_W_SOCKOP:
        return cio_sockop_io(w, which);
    }
    return 0;
}

/* Runs a transport's or a sock_*() operation's I/O for one direction; in
 * debug mode, timed like a callback (its protocol's callbacks run in it). */
static int
run_watcher(LoopObj *self, PyObject *w, uint16_t tag, int which)
{
    /* Its I/O may drop the fd table's reference (close, pause_reading). */
    PyObject *obj = Py_NewRef(w);
    int timed = self->debug; /* as it was when the I/O began */
    double t0 = 0.0, t1;
    if (timed && cio_loop_now(self, &t0) < 0) {
        Py_DECREF(obj);
        return -1;
    }
    int rc = run_watcher_io(obj, tag, which);
    if (timed && rc == 0) {
        if (cio_loop_now(self, &t1) < 0) {
            rc = -1;
        }
        else if (t1 - t0 >= self->slow_callback_duration) {
            cio_loop_log_slow(self, obj, which == CIO_READ ? "read" : "write", t1 - t0);
        }
    }
    Py_DECREF(obj);
    return rc;
}

/* Hands one direction of a fired fd to its watcher.  An add_reader/writer
 * Handle is queued, as asyncio does.  A transport or sock_*() operation
 * runs right here when nothing is queued and no timer is due as the poll
 * returns (io_inline, see cio_loop_decide_inline()), as libuv does: a task
 * woken by data_received() then writes its reply in this iteration's batch,
 * before the next poll, which sees the peer's answer at once -- on an echo
 * round trip that is one loop iteration (and one epoll_wait) fewer.  When
 * callbacks were already queued, or a timer is due, the event is queued
 * behind them instead: asyncio promises that those run first (a task
 * scheduled before the data arrived sets up the future data_received()
 * completes; a wait_for() past its deadline times out).  What stays
 * different from asyncio: when run here, what the transport's callbacks
 * schedule runs in this iteration, not the next. */
static int
notify_watcher(LoopObj *self, int fd, cio_fd_entry *e, int which)
{
    PyObject *w = which == CIO_READ ? e->reader : e->writer;
    uint16_t tag = which == CIO_READ ? e->reader_tag : e->writer_tag;
    if (tag == CIO_W_HANDLE) {
        if (((HandleObj *)w)->cancelled) {
            /* Cancelled behind our back: asyncio drops such a watcher here. */
            PyObject *old;
            uint16_t old_tag;
            cio_loop_unwatch(self, fd, which, &old, &old_tag);
            Py_XDECREF(old);
            return 0;
        }
        if (cio_loop_push(self, CIO_READY_HANDLE, w, NULL, NULL) < 0) {
            return -1;
        }
        Py_INCREF(w);
        return 0;
    }
    if (self->io_inline) {
        cio_ring_item it = {.kind = CIO_READY_FD_EVENT,
                            .a = w,
                            .b = (void *)(intptr_t)fd,
                            .c = (void *)(intptr_t)which};
        char was = cio_loop_cork_begin(self);
        return cio_loop_cork_end(self, was, run_watcher(self, w, tag, which), &it);
    }
    if (cio_loop_push(self, CIO_READY_FD_EVENT, w, (void *)(intptr_t)fd, (void *)(intptr_t)which) <
        0) {
        return -1;
    }
    Py_INCREF(w);
    return 0;
}

int
cio_loop_run_fd_event(LoopObj *self, cio_ring_item *it)
{
    int fd = (int)(intptr_t)it->b;
    int which = (int)(intptr_t)it->c;
    cio_fd_entry *e = cio_fdtable_get(&self->fds, fd);
    if (e == NULL) {
        return 0;
    }
    /* A callback that ran before this one may have stopped the watcher
     * (pause_reading, close, a cancelled sock_recv): asyncio cancels the
     * queued handle then, so the event is dropped.  If the fd now has a new
     * watcher, it waits for its own readiness. */
    PyObject *w = which == CIO_READ ? e->reader : e->writer;
    uint16_t tag = which == CIO_READ ? e->reader_tag : e->writer_tag;
    if (w != (PyObject *)it->a) {
        return 0;
    }
    return run_watcher(self, w, tag, which);
}

int
cio_loop_dispatch_fd_events(LoopObj *self, int n)
{
    for (int i = 0; i < n; i++) {
        int fd = self->fired[i].fd;
        uint32_t ev = self->fired[i].events;
        cio_fd_entry *e = cio_fdtable_get(&self->fds, fd);
        if (e == NULL) {
            continue;
        }
        if (e->reader_tag == CIO_W_WAKEUP) {
            /* One read takes (and zeroes) the whole eventfd counter. */
            uint64_t value;
            (void)!read(fd, &value, sizeof(value));
            self->wake_pending = 0;
            continue;
        }
        if ((ev & CIO_POLL_IN) && e->reader != NULL && notify_watcher(self, fd, e, CIO_READ) < 0) {
            return -1;
        }
        /* Re-fetch: the reader may have run Python code that changed the
         * table (or grew it, moving the entries). */
        e = cio_fdtable_get(&self->fds, fd);
        if (e == NULL) {
            continue;
        }
        if ((ev & CIO_POLL_OUT) && e->writer != NULL &&
            notify_watcher(self, fd, e, CIO_WRITE) < 0) {
            return -1;
        }
    }
    return 0;
}

void
cio_loop_fd_clear(LoopObj *self)
{
    for (int fd = 0; fd < self->fds.cap; fd++) {
        cio_fd_entry *e = &self->fds.entries[fd];
        PyObject *r = e->reader, *w = e->writer, *f = e->fileobj;
        if (e->reader_tag == CIO_W_WAKEUP) {
            continue;
        }
        e->reader = e->writer = e->fileobj = NULL;
        e->reader_tag = e->writer_tag = CIO_W_NONE;
        e->owner = NULL;
        if (r != NULL || w != NULL) {
            self->fds.count--;
        }
        Py_XDECREF(r);
        Py_XDECREF(w);
        Py_XDECREF(f);
    }
}

int
cio_loop_fd_traverse(LoopObj *self, visitproc visit, void *arg)
{
    if (self->fds.count == 0) {
        return 0;
    }
    for (int fd = 0; fd < self->fds.cap; fd++) {
        cio_fd_entry *e = &self->fds.entries[fd];
        Py_VISIT((PyObject *)e->reader);
        Py_VISIT((PyObject *)e->writer);
        Py_VISIT((PyObject *)e->fileobj);
    }
    return 0;
}
