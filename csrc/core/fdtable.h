/* fdtable.h: what the loop watches on each file descriptor.
 *
 * A flat array indexed by fd (fds are small, dense integers), grown on
 * demand.  An entry holds an opaque watcher pointer per direction, each with
 * a tag saying what kind of watcher it is, an owner pointer, the object the
 * fd was given as (so it can be found once that object is closed), and the
 * event mask currently registered with the poller, so the loop can tell the
 * poller exactly what changed.  The core never interprets pointers or tags. */
#ifndef CIO_FDTABLE_H
#define CIO_FDTABLE_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    void *reader;        /* who wants read readiness, or NULL */
    void *writer;        /* who wants write readiness, or NULL */
    void *owner;         /* who owns the fd itself (a transport), or NULL */
    void *fileobj;       /* the object the fd was given as (a socket), or NULL */
    uint32_t events;     /* CIO_POLL_* mask registered with the poller */
    uint16_t reader_tag; /* the layer above's label for reader, */
    uint16_t writer_tag; /* and for writer */
    uint8_t big_read;    /* the layer above's note: the fd's last read was big */
} cio_fd_entry;

typedef struct {
    cio_fd_entry *entries;
    int cap;      /* entries[0..cap) exist, zeroed when unused */
    size_t count; /* entries with a reader or a writer */
} cio_fdtable;

void cio_fdtable_init(cio_fdtable *t);
void cio_fdtable_fini(cio_fdtable *t);

/* The entry for fd, or NULL if fd was never added (or is negative). */
static inline cio_fd_entry *
cio_fdtable_get(cio_fdtable *t, int fd)
{
    if (fd < 0 || fd >= t->cap) {
        return NULL;
    }
    return &t->entries[fd];
}

/* The entry for fd, growing the table if needed.  Returns 0 with *out set,
 * -EBADF for a negative fd, or -ENOMEM. */
int cio_fdtable_ensure(cio_fdtable *t, int fd, cio_fd_entry **out);

/* Keeps `count` right after an entry's owners changed: pass whether the
 * entry was in use before the change. */
void cio_fdtable_update_count(cio_fdtable *t, const cio_fd_entry *e, int was_used);

static inline int
cio_fd_entry_used(const cio_fd_entry *e)
{
    return e->reader != NULL || e->writer != NULL;
}

#endif
