/* heap.c: binary min-heap of (when, seq, node) entries.
 *
 * Invariant: for every slot i > 0, items[(i-1)/2] orders before items[i], and
 * items[i].node->index == i. */
#include "heap.h"

#include <errno.h>
#include <stdlib.h>

static inline int
before(const cio_heap_entry *a, const cio_heap_entry *b)
{
    if (a->when != b->when) {
        return a->when < b->when;
    }
    return a->seq < b->seq;
}

static inline void
place(cio_heap *h, size_t i, const cio_heap_entry *e)
{
    h->items[i] = *e;
    e->node->index = i;
}

static void
sift_up(cio_heap *h, size_t i)
{
    cio_heap_entry e = h->items[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!before(&e, &h->items[parent])) {
            break;
        }
        place(h, i, &h->items[parent]);
        i = parent;
    }
    place(h, i, &e);
}

static void
sift_down(cio_heap *h, size_t i)
{
    cio_heap_entry e = h->items[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= h->len) {
            break;
        }
        if (child + 1 < h->len && before(&h->items[child + 1], &h->items[child])) {
            child++;
        }
        if (!before(&h->items[child], &e)) {
            break;
        }
        place(h, i, &h->items[child]);
        i = child;
    }
    place(h, i, &e);
}

void
cio_heap_init(cio_heap *h)
{
    h->items = NULL;
    h->len = 0;
    h->cap = 0;
    h->next_seq = 0;
}

void
cio_heap_fini(cio_heap *h)
{
    for (size_t i = 0; i < h->len; i++) {
        h->items[i].node->index = CIO_HEAP_DETACHED;
    }
    free(h->items);
    cio_heap_init(h);
}

int
cio_heap_push(cio_heap *h, cio_heap_node *n, double when)
{
    if (h->len == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 64;
        cio_heap_entry *items = realloc(h->items, cap * sizeof(*items));
        if (items == NULL) {
            return -ENOMEM;
        }
        h->items = items;
        h->cap = cap;
    }
    cio_heap_entry e = {when, h->next_seq++, n};
    h->len++;
    place(h, h->len - 1, &e);
    sift_up(h, h->len - 1);
    return 0;
}

cio_heap_node *
cio_heap_pop(cio_heap *h)
{
    if (h->len == 0) {
        return NULL;
    }
    cio_heap_node *top = h->items[0].node;
    cio_heap_remove(h, top);
    return top;
}

void
cio_heap_remove(cio_heap *h, cio_heap_node *n)
{
    size_t i = n->index;
    n->index = CIO_HEAP_DETACHED;
    h->len--;
    if (i == h->len) {
        return;
    }
    /* Move the last entry into the hole, then restore order in whichever
     * direction it is violated. */
    cio_heap_entry last = h->items[h->len];
    place(h, i, &last);
    if (i > 0 && before(&last, &h->items[(i - 1) / 2])) {
        sift_up(h, i);
    }
    else {
        sift_down(h, i);
    }
}
