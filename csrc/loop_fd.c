/* loop_fd.c: watching file descriptors (add_reader/add_writer and their
 * removal) and turning the poller's events into ready-queue entries.
 *
 * Each fd's table entry owns (a strong reference to) the Handle of its
 * reader and of its writer, and records the event mask registered with the
 * poller, so every change tells the poller exactly the difference.  Events
 * are dispatched by appending the watcher's Handle to the ready queue, as
 * asyncio's selector loop does, so I/O callbacks run in the same order
 * relative to call_soon() callbacks as on stock asyncio. */
#include "casyncio.h"

#include <errno.h>
#include <unistd.h>

enum { READER, WRITER };

/* fd from an int or an object with fileno(), with the errors selectors
 * give: ValueError for a bad file object or a negative number. */
static int
fileobj_to_fd(cio_state *st, PyObject *obj)
{
    long fd;
    if (PyLong_Check(obj)) {
        fd = PyLong_AsLong(obj);
        if (fd == -1 && PyErr_Occurred()) {
            return -1;
        }
    }
    else {
        PyObject *res = PyObject_CallMethodNoArgs(obj, st->str_fileno);
        if (res != NULL) {
            fd = PyLong_AsLong(res);
            Py_DECREF(res);
        }
        if (res == NULL || (fd == -1 && PyErr_Occurred())) {
            if (PyErr_ExceptionMatches(PyExc_AttributeError) ||
                PyErr_ExceptionMatches(PyExc_TypeError) ||
                PyErr_ExceptionMatches(PyExc_ValueError)) {
                PyErr_Clear();
                PyErr_Format(PyExc_ValueError, "Invalid file object: %R", obj);
            }
            return -1;
        }
    }
    if (fd < 0 || fd > INT_MAX) {
        PyErr_Format(PyExc_ValueError, "Invalid file descriptor: %ld", fd);
        return -1;
    }
    return (int)fd;
}

static uint32_t
wanted_events(const cio_fd_entry *e)
{
    return (e->reader ? CIO_POLL_IN : 0) | (e->writer ? CIO_POLL_OUT : 0);
}

/* Tells the poller about the entry's current owners.  On failure the
 * caller restores the owners. */
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
    /* Removal failing means the fd is gone already (closed): not watched,
     * which was the goal. */
    e->events = want;
    return 0;
}

static PyObject *
add_watcher(LoopObj *self, int which, const char *fname, PyObject *const *args,
            Py_ssize_t nargs)
{
    if (nargs < 2) {
        PyErr_Format(PyExc_TypeError, "%s() missing required arguments 'fd' and 'callback'",
                     fname);
        return NULL;
    }
    if (cio_loop_check_closed(self) < 0) {
        return NULL;
    }
    int fd = fileobj_to_fd(self->st, args[0]);
    if (fd < 0) {
        return NULL;
    }
    if (cio_check_callback(self->st, args[1], fname, self->debug) < 0) {
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
    cio_fd_entry *e;
    int err = cio_fdtable_ensure(&self->fds, fd, &e);
    if (err < 0) {
        Py_DECREF(h);
        return PyErr_NoMemory();
    }
    if (e->tag == CIO_FD_TAG_WAKEUP) {
        Py_DECREF(h);
        PyErr_Format(PyExc_ValueError, "fd %d is the loop's own wakeup fd", fd);
        return NULL;
    }
    void **slot = which == READER ? &e->reader : &e->writer;
    HandleObj *old = *slot;
    int was_used = cio_fd_entry_used(e);
    *slot = h;
    if (sync_poller(self, fd, e) < 0) {
        *slot = old;
        Py_DECREF(h);
        return NULL;
    }
    cio_fdtable_update_count(&self->fds, e, was_used);
    if (old != NULL) {
        /* As asyncio: replacing a watcher cancels the old Handle. */
        int rc = cio_handle_cancel(old);
        Py_DECREF(old);
        if (rc < 0) {
            return NULL;
        }
    }
    Py_RETURN_NONE;
}

static PyObject *
remove_watcher(LoopObj *self, int which, PyObject *fdobj)
{
    if (self->closed) {
        Py_RETURN_FALSE;
    }
    int fd = fileobj_to_fd(self->st, fdobj);
    if (fd < 0) {
        return NULL;
    }
    cio_fd_entry *e = cio_fdtable_get(&self->fds, fd);
    void **slot = e ? (which == READER ? &e->reader : &e->writer) : NULL;
    if (slot == NULL || *slot == NULL) {
        Py_RETURN_FALSE;
    }
    HandleObj *old = *slot;
    *slot = NULL;
    (void)sync_poller(self, fd, e); /* cannot fail for a removal */
    cio_fdtable_update_count(&self->fds, e, 1);
    int rc = cio_handle_cancel(old);
    Py_DECREF(old);
    if (rc < 0) {
        return NULL;
    }
    Py_RETURN_TRUE;
}

static PyObject *
Loop_add_reader(LoopObj *self, PyObject *const *args, Py_ssize_t nargs)
{
    return add_watcher(self, READER, "add_reader", args, nargs);
}

static PyObject *
Loop_add_writer(LoopObj *self, PyObject *const *args, Py_ssize_t nargs)
{
    return add_watcher(self, WRITER, "add_writer", args, nargs);
}

static PyObject *
Loop_remove_reader(LoopObj *self, PyObject *fd)
{
    return remove_watcher(self, READER, fd);
}

static PyObject *
Loop_remove_writer(LoopObj *self, PyObject *fd)
{
    return remove_watcher(self, WRITER, fd);
}

static PyObject *
Loop__watched_fds(LoopObj *self, PyObject *Py_UNUSED(ignored))
{
    /* {fd: (reader Handle or None, writer Handle or None)}, for tests. */
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
    {"_watched_fds", (PyCFunction)Loop__watched_fds, METH_NOARGS, NULL},
    {NULL, NULL},
};

/* Queues the watcher in *slot, or drops it if it was cancelled behind our
 * back (asyncio removes such a watcher at this point too). */
static int
dispatch_one(LoopObj *self, int fd, cio_fd_entry *e, void **slot)
{
    HandleObj *h = *slot;
    if (h->cancelled) {
        *slot = NULL;
        (void)sync_poller(self, fd, e);
        cio_fdtable_update_count(&self->fds, e, 1);
        Py_DECREF(h);
        return 0;
    }
    return cio_loop_push(self, CIO_READY_HANDLE, Py_NewRef(h), NULL, NULL) < 0 ? -1 : 0;
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
        if (e->tag == CIO_FD_TAG_WAKEUP) {
            uint64_t value;
            while (read(fd, &value, sizeof(value)) == sizeof(value)) {
            }
            self->wake_pending = 0;
            continue;
        }
        if ((ev & CIO_POLL_IN) && e->reader != NULL &&
            dispatch_one(self, fd, e, &e->reader) < 0) {
            return -1;
        }
        if ((ev & CIO_POLL_OUT) && e->writer != NULL &&
            dispatch_one(self, fd, e, &e->writer) < 0) {
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
        HandleObj *r = e->reader, *w = e->writer;
        e->reader = e->writer = NULL;
        if (r != NULL || w != NULL) {
            self->fds.count--;
        }
        Py_XDECREF(r);
        Py_XDECREF(w);
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
    }
    return 0;
}
