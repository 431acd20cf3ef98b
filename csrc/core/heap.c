/* heap.c: binary min-heap over intrusive nodes, ordered by (when, seq).
 *
 * Invariant: for every slot i > 0, items[(i-1)/2] orders before items[i], and
 * items[i]->index == i. */
#include "heap.h"

#include <errno.h>
#include <stdlib.h>

static inline int
before(const cio_heap_node *a, const cio_heap_node *b)
{
    if (a->when != b->when) {
        return a->when < b->when;
    }
    return a->seq < b->seq;
}

static inline void
place(cio_heap *h, size_t i, cio_heap_node *n)
{
    h->items[i] = n;
    n->index = i;
}

static void
sift_up(cio_heap *h, size_t i)
{
    cio_heap_node *n = h->items[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!before(n, h->items[parent])) {
            break;
        }
        place(h, i, h->items[parent]);
        i = parent;
    }
    place(h, i, n);
}

static void
sift_down(cio_heap *h, size_t i)
{
    cio_heap_node *n = h->items[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= h->len) {
            break;
        }
        if (child + 1 < h->len && before(h->items[child + 1], h->items[child])) {
            child++;
        }
        if (!before(h->items[child], n)) {
            break;
        }
        place(h, i, h->items[child]);
        i = child;
    }
    place(h, i, n);
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
        h->items[i]->index = CIO_HEAP_DETACHED;
    }
    free(h->items);
    cio_heap_init(h);
}

int
cio_heap_push(cio_heap *h, cio_heap_node *n)
{
    if (h->len == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 64;
        cio_heap_node **items = realloc(h->items, cap * sizeof(*items));
        if (items == NULL) {
            return -ENOMEM;
        }
        h->items = items;
        h->cap = cap;
    }
    n->seq = h->next_seq++;
    h->items[h->len] = n;
    n->index = h->len;
    h->len++;
    sift_up(h, h->len - 1);
    return 0;
}

cio_heap_node *
cio_heap_pop(cio_heap *h)
{
    if (h->len == 0) {
        return NULL;
    }
    cio_heap_node *top = h->items[0];
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
    /* Move the last node into the hole, then restore order in whichever
     * direction it is violated. */
    cio_heap_node *last = h->items[h->len];
    place(h, i, last);
    if (i > 0 && before(last, h->items[(i - 1) / 2])) {
        sift_up(h, i);
    }
    else {
        sift_down(h, i);
    }
}
