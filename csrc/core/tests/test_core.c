/* test_core.c: unit tests for the pure-C core (clock, heap, ring, fdtable,
 * pollers).
 *
 * One test per behaviour.  `test_core --list` prints the test names and
 * `test_core NAME` runs one and exits 0 on success; pytest runs each name in
 * its own child process with a timeout (tests/test_core_c.py), as libuv's
 * runner does, so a crash or a hang fails one test, not the whole run. */
#include "../clock.h"
#include "../fdtable.h"
#include "../heap.h"
#include "../poller.h"
#include "../ring.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            return 1;                                                                \
        }                                                                            \
    } while (0)

/* ---- clock ---- */

static int
test_clock_monotonic(void)
{
    double prev = cio_clock_now();
    for (int i = 0; i < 100000; i++) {
        double now = cio_clock_now();
        CHECK(now >= prev);
        prev = now;
    }
    return 0;
}

static int
test_clock_advances(void)
{
    double t0 = cio_clock_now();
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
    double dt = cio_clock_now() - t0;
    CHECK(dt >= 0.019);
    CHECK(dt < 1.0);
    return 0;
}

static int
test_clock_resolution(void)
{
    double r = cio_clock_resolution();
    CHECK(r > 0.0);
    CHECK(r <= 0.001);
    return 0;
}

static int
test_clock_delay_to_ms(void)
{
    CHECK(cio_clock_delay_to_ms(0.0, 1000) == 0);
    CHECK(cio_clock_delay_to_ms(-5.0, 1000) == 0);
    CHECK(cio_clock_delay_to_ms(NAN, 1000) == 0);
    /* Rounds up: a poller woken early would spin until the deadline. */
    CHECK(cio_clock_delay_to_ms(0.0001, 1000) == 1);
    CHECK(cio_clock_delay_to_ms(0.001, 1000) == 1);
    CHECK(cio_clock_delay_to_ms(0.0011, 1000) == 2);
    CHECK(cio_clock_delay_to_ms(2.5, 1000) == 1000);
    CHECK(cio_clock_delay_to_ms(INFINITY, 1000) == 1000);
    return 0;
}

/* ---- heap ---- */

typedef struct {
    cio_heap_node node;
    double when;
    int id; /* insertion order */
} tnode;

#define TNODE(n) ((tnode *)((char *)(n) - offsetof(tnode, node)))

static int
test_heap_orders_by_deadline(void)
{
    cio_heap h;
    cio_heap_init(&h);
    double whens[] = {5, 1, 4, 2, 3, 0.5, 9, 7};
    tnode nodes[8];
    for (int i = 0; i < 8; i++) {
        cio_heap_node_init(&nodes[i].node);
        nodes[i].when = whens[i];
        CHECK(cio_heap_push(&h, &nodes[i].node, whens[i]) == 0);
        CHECK(cio_heap_node_attached(&nodes[i].node));
    }
    CHECK(cio_heap_len(&h) == 8);
    CHECK(cio_heap_peek_when(&h) == 0.5);
    double prev = -1;
    for (int i = 0; i < 8; i++) {
        cio_heap_node *n = cio_heap_pop(&h);
        CHECK(n != NULL);
        CHECK(!cio_heap_node_attached(n));
        CHECK(TNODE(n)->when >= prev);
        prev = TNODE(n)->when;
    }
    CHECK(cio_heap_pop(&h) == NULL);
    CHECK(cio_heap_peek(&h) == NULL);
    cio_heap_fini(&h);
    return 0;
}

static int
test_heap_equal_deadlines_fifo(void)
{
    /* The case where a plain heapq loses FIFO order. */
    enum { N = 1000 };
    cio_heap h;
    cio_heap_init(&h);
    static tnode nodes[N];
    for (int i = 0; i < N; i++) {
        cio_heap_node_init(&nodes[i].node);
        CHECK(cio_heap_push(&h, &nodes[i].node, 42.0) == 0);
    }
    for (int i = 0; i < N; i++) {
        CHECK(cio_heap_pop(&h) == &nodes[i].node);
    }
    cio_heap_fini(&h);
    return 0;
}

static int
test_heap_remove_anywhere(void)
{
    enum { N = 500 };
    cio_heap h;
    cio_heap_init(&h);
    static tnode nodes[N];
    srand(1234);
    for (int i = 0; i < N; i++) {
        cio_heap_node_init(&nodes[i].node);
        nodes[i].when = (double)(rand() % 50);
        nodes[i].id = i;
        CHECK(cio_heap_push(&h, &nodes[i].node, nodes[i].when) == 0);
    }
    /* Remove every third node from wherever it sits. */
    for (int i = 0; i < N; i += 3) {
        cio_heap_remove(&h, &nodes[i].node);
        CHECK(!cio_heap_node_attached(&nodes[i].node));
    }
    /* Every remaining node keeps its own slot right, and the keys stored in
     * the heap are the ones pushed. */
    for (size_t i = 0; i < h.len; i++) {
        CHECK(cio_heap_at(&h, i)->index == i);
        CHECK(h.items[i].when == TNODE(cio_heap_at(&h, i))->when);
    }
    tnode *prev = NULL;
    size_t count = 0;
    cio_heap_node *n;
    while ((n = cio_heap_pop(&h)) != NULL) {
        tnode *t = TNODE(n);
        CHECK(t->id % 3 != 0);
        if (prev) {
            CHECK(prev->when < t->when || (prev->when == t->when && prev->id < t->id));
        }
        prev = t;
        count++;
    }
    CHECK(count == N - (N + 2) / 3);
    cio_heap_fini(&h);
    return 0;
}

static int
test_heap_reinsert_after_pop(void)
{
    cio_heap h;
    cio_heap_init(&h);
    tnode a, b;
    cio_heap_node_init(&a.node);
    cio_heap_node_init(&b.node);
    CHECK(cio_heap_push(&h, &a.node, 1) == 0);
    CHECK(cio_heap_push(&h, &b.node, 1) == 0);
    CHECK(cio_heap_pop(&h) == &a.node);
    /* a gets a new sequence number: it now goes after b. */
    CHECK(cio_heap_push(&h, &a.node, 1) == 0);
    CHECK(cio_heap_pop(&h) == &b.node);
    CHECK(cio_heap_pop(&h) == &a.node);
    cio_heap_fini(&h);
    return 0;
}

static int
test_heap_fini_detaches(void)
{
    cio_heap h;
    cio_heap_init(&h);
    tnode a;
    cio_heap_node_init(&a.node);
    CHECK(cio_heap_push(&h, &a.node, 3) == 0);
    cio_heap_fini(&h);
    CHECK(!cio_heap_node_attached(&a.node));
    CHECK(cio_heap_len(&h) == 0);
    return 0;
}

static int
test_heap_random_against_sorted(void)
{
    /* Random pushes, pops and removals, checked against a brute-force
     * reference: pops always give the minimum (when, seq) left. */
    enum { N = 2000 };
    static tnode nodes[N];
    static int alive[N];
    cio_heap h;
    cio_heap_init(&h);
    srand(99);
    int next = 0;
    for (int step = 0; step < 20000; step++) {
        int op = rand() % 3;
        if (op == 0 && next < N) {
            cio_heap_node_init(&nodes[next].node);
            nodes[next].when = (double)(rand() % 100);
            nodes[next].id = next;
            CHECK(cio_heap_push(&h, &nodes[next].node, nodes[next].when) == 0);
            alive[next] = 1;
            next++;
        }
        else if (op == 1 && cio_heap_len(&h) > 0) {
            int best = -1;
            for (int i = 0; i < next; i++) {
                if (alive[i] && (best < 0 || nodes[i].when < nodes[best].when)) {
                    best = i;
                }
            }
            cio_heap_node *n = cio_heap_pop(&h);
            CHECK(n == &nodes[best].node);
            alive[best] = 0;
        }
        else if (op == 2 && next > 0) {
            int i = rand() % next;
            if (alive[i]) {
                cio_heap_remove(&h, &nodes[i].node);
                alive[i] = 0;
            }
        }
    }
    cio_heap_fini(&h);
    return 0;
}

/* ---- ring ---- */

static int
test_ring_fifo(void)
{
    cio_ring r;
    cio_ring_init(&r);
    cio_ring_item it;
    CHECK(cio_ring_pop(&r, &it) == 0);
    for (uintptr_t i = 0; i < 10; i++) {
        CHECK(cio_ring_push(&r, (uint32_t)i, (void *)i, NULL, NULL) == 0);
    }
    CHECK(cio_ring_len(&r) == 10);
    for (uintptr_t i = 0; i < 10; i++) {
        CHECK(cio_ring_pop(&r, &it) == 1);
        CHECK(it.kind == i && it.a == (void *)i);
    }
    CHECK(cio_ring_len(&r) == 0);
    cio_ring_fini(&r);
    return 0;
}

static int
test_ring_wraps_and_grows(void)
{
    /* Interleave pushes and pops so head wraps around before each growth;
     * order must survive every unwrap. */
    cio_ring r;
    cio_ring_init(&r);
    uintptr_t next_in = 0, next_out = 0;
    for (int round = 0; round < 2000; round++) {
        for (int k = 0; k < 7; k++) {
            CHECK(cio_ring_push(&r, 0, (void *)next_in++, NULL, NULL) == 0);
        }
        for (int k = 0; k < 5; k++) {
            cio_ring_item it;
            CHECK(cio_ring_pop(&r, &it) == 1);
            CHECK(it.a == (void *)next_out++);
        }
    }
    CHECK(cio_ring_len(&r) == next_in - next_out);
    CHECK((r.cap & (r.cap - 1)) == 0);
    cio_ring_item it;
    while (cio_ring_pop(&r, &it)) {
        CHECK(it.a == (void *)next_out++);
    }
    CHECK(next_out == next_in);
    cio_ring_fini(&r);
    return 0;
}

static int
test_ring_keeps_all_fields(void)
{
    cio_ring r;
    cio_ring_init(&r);
    int x, y, z;
    CHECK(cio_ring_push(&r, 7, &x, &y, &z) == 0);
    cio_ring_item it;
    CHECK(cio_ring_pop(&r, &it) == 1);
    CHECK(it.kind == 7 && it.a == &x && it.b == &y && it.c == &z);
    cio_ring_fini(&r);
    return 0;
}

/* ---- fdtable ---- */

static int
test_fdtable_grows_and_counts(void)
{
    cio_fdtable t;
    cio_fdtable_init(&t);
    cio_fd_entry *e;
    CHECK(cio_fdtable_get(&t, 3) == NULL);
    CHECK(cio_fdtable_ensure(&t, -1, &e) == -EBADF);
    CHECK(cio_fdtable_ensure(&t, 5000, &e) == 0);
    CHECK(t.cap > 5000);
    CHECK(e->reader == NULL && e->writer == NULL && e->events == 0);
    int was = cio_fd_entry_used(e);
    e->reader = &t;
    cio_fdtable_update_count(&t, e, was);
    CHECK(t.count == 1);
    /* Growing keeps what was there. */
    CHECK(cio_fdtable_ensure(&t, 100000, &e) == 0);
    CHECK(cio_fdtable_get(&t, 5000)->reader == &t);
    CHECK(cio_fdtable_get(&t, 4999)->reader == NULL);
    e = cio_fdtable_get(&t, 5000);
    was = cio_fd_entry_used(e);
    e->reader = NULL;
    cio_fdtable_update_count(&t, e, was);
    CHECK(t.count == 0);
    cio_fdtable_fini(&t);
    return 0;
}

/* ---- pollers: each test runs on both backends ---- */

static int
find_event(cio_poll_event *ev, int n, int fd, uint32_t *events)
{
    for (int i = 0; i < n; i++) {
        if (ev[i].fd == fd) {
            *events = ev[i].events;
            return 1;
        }
    }
    return 0;
}

static int
poller_readable_writable(const cio_poller_backend *be)
{
    cio_poller *p;
    CHECK(be->init(&p) == 0);
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    cio_poll_event ev[8];
    uint32_t got;

    /* Nothing to read yet: a zero timeout returns at once with no event. */
    CHECK(be->modify(p, sv[0], 0, CIO_POLL_IN) == 0);
    CHECK(be->wait(p, ev, 8, 0) == 0);

    CHECK(write(sv[1], "x", 1) == 1);
    int n = be->wait(p, ev, 8, 1000);
    CHECK(n == 1);
    CHECK(find_event(ev, n, sv[0], &got) && (got & CIO_POLL_IN));

    /* Add write interest: a fresh socket is writable at once. */
    CHECK(be->modify(p, sv[0], CIO_POLL_IN, CIO_POLL_IN | CIO_POLL_OUT) == 0);
    n = be->wait(p, ev, 8, 1000);
    CHECK(find_event(ev, n, sv[0], &got));
    CHECK(got & CIO_POLL_OUT);

    /* Drop read interest: only the write side is reported. */
    CHECK(be->modify(p, sv[0], CIO_POLL_IN | CIO_POLL_OUT, CIO_POLL_OUT) == 0);
    n = be->wait(p, ev, 8, 1000);
    CHECK(find_event(ev, n, sv[0], &got) && got == CIO_POLL_OUT);

    /* Remove entirely: nothing is reported although data is pending. */
    CHECK(be->modify(p, sv[0], CIO_POLL_OUT, 0) == 0);
    CHECK(be->wait(p, ev, 8, 0) == 0);

    close(sv[0]);
    close(sv[1]);
    be->close(p);
    return 0;
}

static int
poller_timeout(const cio_poller_backend *be)
{
    cio_poller *p;
    CHECK(be->init(&p) == 0);
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    CHECK(be->modify(p, sv[0], 0, CIO_POLL_IN) == 0);
    cio_poll_event ev[4];
    double t0 = cio_clock_now();
    CHECK(be->wait(p, ev, 4, 50) == 0);
    double dt = cio_clock_now() - t0;
    CHECK(dt >= 0.045 && dt < 1.0);
    close(sv[0]);
    close(sv[1]);
    be->close(p);
    return 0;
}

static int
poller_hangup_wakes_both(const cio_poller_backend *be)
{
    /* The peer closes: a reader must wake (to read EOF), and a writer must
     * wake (to fail its write), as with Python's selectors. */
    cio_poller *p;
    CHECK(be->init(&p) == 0);
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    CHECK(be->modify(p, sv[0], 0, CIO_POLL_IN) == 0);
    close(sv[1]);
    cio_poll_event ev[4];
    uint32_t got;
    int n = be->wait(p, ev, 4, 1000);
    CHECK(n == 1 && find_event(ev, n, sv[0], &got) && (got & CIO_POLL_IN));
    close(sv[0]);
    be->close(p);
    return 0;
}

static int
poller_fd_reused_after_close(const cio_poller_backend *be)
{
    /* Close a watched fd without telling the poller, reuse its number, and
     * register the new file: the backend must cope (epoll: EEXIST/ENOENT). */
    cio_poller *p;
    CHECK(be->init(&p) == 0);
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    int fd = sv[0];
    CHECK(be->modify(p, fd, 0, CIO_POLL_IN) == 0);
    close(sv[0]);
    close(sv[1]);
    /* The stale registration is removed without an error... */
    CHECK(be->modify(p, fd, CIO_POLL_IN, 0) == 0);
    int sv2[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv2) == 0);
    CHECK(sv2[0] == fd);
    /* ...and the reused number registers and works. */
    CHECK(be->modify(p, sv2[0], 0, CIO_POLL_IN) == 0);
    CHECK(write(sv2[1], "y", 1) == 1);
    cio_poll_event ev[4];
    uint32_t got;
    int n = be->wait(p, ev, 4, 1000);
    CHECK(n == 1 && find_event(ev, n, fd, &got) && (got & CIO_POLL_IN));
    /* Also: a MOD on an fd the kernel forgot falls back to ADD. */
    close(sv2[0]);
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    CHECK(sv[0] == fd);
    CHECK(be->modify(p, fd, CIO_POLL_IN, CIO_POLL_IN | CIO_POLL_OUT) == 0);
    n = be->wait(p, ev, 4, 1000);
    CHECK(n == 1 && find_event(ev, n, fd, &got) && (got & CIO_POLL_OUT));
    close(sv[0]);
    close(sv[1]);
    close(sv2[1]);
    be->close(p);
    return 0;
}

static int
poller_many_fds(const cio_poller_backend *be)
{
    enum { N = 200 };
    cio_poller *p;
    CHECK(be->init(&p) == 0);
    int pairs[N][2];
    for (int i = 0; i < N; i++) {
        CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, pairs[i]) == 0);
        CHECK(be->modify(p, pairs[i][0], 0, CIO_POLL_IN) == 0);
    }
    /* Make every odd one readable, then unregister a few of those. */
    for (int i = 1; i < N; i += 2) {
        CHECK(write(pairs[i][1], "z", 1) == 1);
    }
    for (int i = 1; i < N; i += 10) {
        CHECK(be->modify(p, pairs[i][0], CIO_POLL_IN, 0) == 0);
    }
    static cio_poll_event ev[N];
    int n = be->wait(p, ev, N, 1000);
    CHECK(n == N / 2 - N / 10);
    for (int k = 0; k < n; k++) {
        int i;
        for (i = 0; i < N && pairs[i][0] != ev[k].fd; i++) {
        }
        CHECK(i < N && i % 2 == 1 && i % 10 != 1);
    }
    /* A small fired[] array is respected; the rest comes next time. */
    CHECK(be->wait(p, ev, 3, 0) == 3);
    for (int i = 0; i < N; i++) {
        close(pairs[i][0]);
        close(pairs[i][1]);
    }
    be->close(p);
    return 0;
}

static int
poller_closed_fd(const cio_poller_backend *be)
{
    /* Registering a closed fd fails as epoll_ctl() does (EBADF), and an fd
     * closed while watched is not reported (epoll forgets it; poll must not
     * spin on POLLNVAL), yet it can still be removed and reused. */
    cio_poller *p;
    CHECK(be->init(&p) == 0);
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    int fd = sv[0];
    close(sv[0]);
    CHECK(be->modify(p, fd, 0, CIO_POLL_IN) == -EBADF);
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    CHECK(sv[0] == fd);
    CHECK(be->modify(p, fd, 0, CIO_POLL_IN) == 0);
    close(sv[0]);
    cio_poll_event ev[4];
    CHECK(be->wait(p, ev, 4, 0) == 0);
    CHECK(be->wait(p, ev, 4, 0) == 0);
    /* Reuse the number: the new file is watched and reported. */
    int sv2[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv2) == 0);
    CHECK(sv2[0] == fd);
    CHECK(be->modify(p, fd, CIO_POLL_IN, CIO_POLL_IN) == 0);
    CHECK(write(sv2[1], "q", 1) == 1);
    uint32_t got;
    int n = be->wait(p, ev, 4, 1000);
    CHECK(n == 1 && find_event(ev, n, fd, &got) && (got & CIO_POLL_IN));
    CHECK(be->modify(p, fd, CIO_POLL_IN, 0) == 0);
    close(sv[1]);
    close(sv2[0]);
    close(sv2[1]);
    be->close(p);
    return 0;
}

static int
poller_find(void)
{
    CHECK(cio_poller_find(NULL) == &cio_poller_epoll);
    CHECK(cio_poller_find("epoll") == &cio_poller_epoll);
    CHECK(cio_poller_find("poll") == &cio_poller_poll);
    CHECK(cio_poller_find("kqueue") == NULL);
    return 0;
}

static int
test_epoll_regular_file_refused(void)
{
    /* epoll cannot watch regular files; the caller gets -EPERM, like
     * Python's EpollSelector raises PermissionError. poll accepts them. */
    char path[] = "/tmp/cio_test_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    unlink(path);
    cio_poller *p;
    CHECK(cio_poller_epoll.init(&p) == 0);
    CHECK(cio_poller_epoll.modify(p, fd, 0, CIO_POLL_IN) == -EPERM);
    cio_poller_epoll.close(p);
    CHECK(cio_poller_poll.init(&p) == 0);
    CHECK(cio_poller_poll.modify(p, fd, 0, CIO_POLL_IN) == 0);
    cio_poll_event ev[2];
    CHECK(cio_poller_poll.wait(p, ev, 2, 0) == 1);
    cio_poller_poll.close(p);
    close(fd);
    return 0;
}

#define BOTH(name)                               \
    static int test_epoll_##name(void)           \
    {                                            \
        return poller_##name(&cio_poller_epoll); \
    }                                            \
    static int test_poll_##name(void)            \
    {                                            \
        return poller_##name(&cio_poller_poll);  \
    }

BOTH(readable_writable)
BOTH(timeout)
BOTH(hangup_wakes_both)
BOTH(fd_reused_after_close)
BOTH(many_fds)
BOTH(closed_fd)

typedef struct {
    const char *name;
    int (*fn)(void);
} test_case;

#define T(name)  {#name, test_##name}
#define TB(name) T(epoll_##name), T(poll_##name)

static const test_case tests[] = {
    T(clock_monotonic),
    T(clock_advances),
    T(clock_resolution),
    T(clock_delay_to_ms),
    T(heap_orders_by_deadline),
    T(heap_equal_deadlines_fifo),
    T(heap_remove_anywhere),
    T(heap_reinsert_after_pop),
    T(heap_fini_detaches),
    T(heap_random_against_sorted),
    T(ring_fifo),
    T(ring_wraps_and_grows),
    T(ring_keeps_all_fields),
    T(fdtable_grows_and_counts),
    {"poller_find", poller_find},
    T(epoll_regular_file_refused),
    TB(readable_writable),
    TB(timeout),
    TB(hangup_wakes_both),
    TB(fd_reused_after_close),
    TB(many_fds),
    TB(closed_fd),
};

int
main(int argc, char **argv)
{
    size_t ntests = sizeof(tests) / sizeof(tests[0]);
    if (argc == 2 && strcmp(argv[1], "--list") == 0) {
        for (size_t i = 0; i < ntests; i++) {
            printf("%s\n", tests[i].name);
        }
        return 0;
    }
    if (argc != 2) {
        fprintf(stderr, "usage: %s --list | TEST\n", argv[0]);
        return 2;
    }
    for (size_t i = 0; i < ntests; i++) {
        if (strcmp(argv[1], tests[i].name) == 0) {
            int rc = tests[i].fn();
            printf("%s: %s\n", tests[i].name, rc ? "FAIL" : "ok");
            return rc;
        }
    }
    fprintf(stderr, "no such test: %s\n", argv[1]);
    return 2;
}
