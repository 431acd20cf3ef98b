/* heap.h: the timer heap.
 *
 * A binary min-heap ordered by (when, seq).  `seq` is stamped at push time
 * from a counter, so timers with equal deadlines come out in the order they
 * were scheduled (FIFO), which a bare heap does not promise.
 *
 * The keys live in the heap's own array, next to a pointer to the owner's
 * intrusive node: sifting compares entries of one contiguous array, instead
 * of chasing a pointer into a scattered timer object per comparison (with
 * 100k+ timers pending that was a cache miss per level).  The node records
 * its slot, so a cancelled timer leaves the heap at once in O(log n).
 *
 * Pushing allocates nothing but the occasional growth of the array; the
 * nodes live inside their owners (the TimerHandle objects). */
#ifndef CIO_HEAP_H
#define CIO_HEAP_H

#include <stddef.h>
#include <stdint.h>

#define CIO_HEAP_DETACHED ((size_t)-1)

typedef struct cio_heap_node {
    size_t index; /* slot in the heap, or CIO_HEAP_DETACHED */
} cio_heap_node;

typedef struct {
    double when;  /* deadline; never NaN (callers map NaN first) */
    uint64_t seq; /* tie-breaker, set by cio_heap_push */
    cio_heap_node *node;
} cio_heap_entry;

typedef struct {
    cio_heap_entry *items;
    size_t len;
    size_t cap;
    uint64_t next_seq;
} cio_heap;

void cio_heap_init(cio_heap *h);
/* Frees the array; the nodes belong to their owners and are left detached. */
void cio_heap_fini(cio_heap *h);

static inline void
cio_heap_node_init(cio_heap_node *n)
{
    n->index = CIO_HEAP_DETACHED;
}

static inline int
cio_heap_node_attached(const cio_heap_node *n)
{
    return n->index != CIO_HEAP_DETACHED;
}

static inline size_t
cio_heap_len(const cio_heap *h)
{
    return h->len;
}

/* The earliest node, or NULL when empty. */
static inline cio_heap_node *
cio_heap_peek(const cio_heap *h)
{
    return h->len ? h->items[0].node : NULL;
}

/* The earliest deadline; only for a non-empty heap. */
static inline double
cio_heap_peek_when(const cio_heap *h)
{
    return h->items[0].when;
}

/* The node in slot i (0 <= i < len), for walking every entry. */
static inline cio_heap_node *
cio_heap_at(const cio_heap *h, size_t i)
{
    return h->items[i].node;
}

/* Inserts a detached node with deadline `when`.  Returns 0, or -ENOMEM (the
 * heap is unchanged). */
int cio_heap_push(cio_heap *h, cio_heap_node *n, double when);

/* Removes and returns the earliest node, or NULL when empty. */
cio_heap_node *cio_heap_pop(cio_heap *h);

/* Removes an attached node from anywhere in the heap. */
void cio_heap_remove(cio_heap *h, cio_heap_node *n);

#endif
