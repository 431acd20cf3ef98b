/* ring.c: growth of the ready-queue ring (the hot push/pop are inline). */
#include "ring.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void
cio_ring_init(cio_ring *r)
{
    r->buf = NULL;
    r->head = 0;
    r->len = 0;
    r->cap = 0;
}

void
cio_ring_fini(cio_ring *r)
{
    free(r->buf);
    cio_ring_init(r);
}

int
cio_ring_grow(cio_ring *r)
{
    size_t cap = r->cap ? r->cap * 2 : 256;
    cio_ring_item *buf = malloc(cap * sizeof(*buf));
    if (buf == NULL) {
        return -ENOMEM;
    }
    /* Unwrap the old contents to the start of the new buffer. */
    size_t first = r->cap - r->head;
    if (first > r->len) {
        first = r->len;
    }
    if (r->len) {
        memcpy(buf, r->buf + r->head, first * sizeof(*buf));
        memcpy(buf + first, r->buf, (r->len - first) * sizeof(*buf));
    }
    free(r->buf);
    r->buf = buf;
    r->head = 0;
    r->cap = cap;
    return 0;
}
