/* fdtable.c: the fd-indexed table of watchers. */
#include "fdtable.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void
cio_fdtable_init(cio_fdtable *t)
{
    t->entries = NULL;
    t->cap = 0;
    t->count = 0;
}

void
cio_fdtable_fini(cio_fdtable *t)
{
    free(t->entries);
    cio_fdtable_init(t);
}

int
cio_fdtable_ensure(cio_fdtable *t, int fd, cio_fd_entry **out)
{
    if (fd < 0) {
        return -EBADF;
    }
    if (fd >= t->cap) {
        int cap = t->cap ? t->cap : 64;
        while (cap <= fd) {
            if (cap > (1 << 29)) {
                return -ENOMEM;
            }
            cap *= 2;
        }
        cio_fd_entry *entries = realloc(t->entries, (size_t)cap * sizeof(*entries));
        if (entries == NULL) {
            return -ENOMEM;
        }
        memset(entries + t->cap, 0, (size_t)(cap - t->cap) * sizeof(*entries));
        t->entries = entries;
        t->cap = cap;
    }
    *out = &t->entries[fd];
    return 0;
}

void
cio_fdtable_update_count(cio_fdtable *t, const cio_fd_entry *e, int was_used)
{
    int used = cio_fd_entry_used(e);
    if (used && !was_used) {
        t->count++;
    }
    else if (!used && was_used) {
        t->count--;
    }
}
