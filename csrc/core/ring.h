/* ring.h: the ready queue, a growable ring buffer of fixed-size entries.
 *
 * Entries are plain structs (a kind and three pointers) that the layer above
 * interprets: a Handle to run, a task step, a future callback.  Scheduling
 * internal work therefore costs a struct copy, not an object.  The capacity
 * is always a power of two so that wrapping is a mask; the buffer only grows
 * (a loop that once had a burst of work keeps the room for the next one).
 *
 * Invariant: 0 <= len <= cap, entries live at (head + i) & (cap - 1). */
#ifndef CIO_RING_H
#define CIO_RING_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t kind;
    void *a;
    void *b;
    void *c;
} cio_ring_item;

typedef struct {
    cio_ring_item *buf;
    size_t head;
    size_t len;
    size_t cap; /* power of two, or 0 before the first push */
} cio_ring;

void cio_ring_init(cio_ring *r);
/* Frees the buffer; whatever the entries point to is the caller's business
 * (drain with cio_ring_pop first). */
void cio_ring_fini(cio_ring *r);

/* Doubles the capacity.  Returns 0 or -ENOMEM (the ring is unchanged). */
int cio_ring_grow(cio_ring *r);

static inline size_t
cio_ring_len(const cio_ring *r)
{
    return r->len;
}

/* Appends at the tail.  Returns 0 or -ENOMEM. */
static inline int
cio_ring_push(cio_ring *r, uint32_t kind, void *a, void *b, void *c)
{
    if (r->len == r->cap) {
        int err = cio_ring_grow(r);
        if (err) {
            return err;
        }
    }
    cio_ring_item *it = &r->buf[(r->head + r->len) & (r->cap - 1)];
    it->kind = kind;
    it->a = a;
    it->b = b;
    it->c = c;
    r->len++;
    return 0;
}

/* Removes the head into *out.  Returns 1, or 0 when the ring is empty. */
static inline int
cio_ring_pop(cio_ring *r, cio_ring_item *out)
{
    if (r->len == 0) {
        return 0;
    }
    *out = r->buf[r->head];
    r->head = (r->head + 1) & (r->cap - 1);
    r->len--;
    return 1;
}

#endif
