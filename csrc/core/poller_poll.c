/* poller_poll.c: the portable backend, poll(2).
 *
 * Keeps a dense pollfd array plus an fd -> slot map; removal swaps the last
 * slot into the hole, so the array never has gaps and `wait` hands the kernel
 * exactly the watched fds.  O(n) per wait, which is what poll costs anyway;
 * its value is portability and a second implementation for the test suite. */
#include "poller.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>

struct cio_poller {
    struct pollfd *pfds;
    int *fd_of; /* index -> fd, kept apart because a parked slot's pfds
                   entry holds -1 (see poll_wait) */
    int len;
    int cap;
    int *slot_of; /* fd -> index in pfds, or -1 */
    int slot_cap;
};

static int
poll_init(cio_poller **out)
{
    cio_poller *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        return -ENOMEM;
    }
    *out = p;
    return 0;
}

static short
to_poll(uint32_t events)
{
    short ev = 0;
    if (events & CIO_POLL_IN) {
        ev |= POLLIN;
    }
    if (events & CIO_POLL_OUT) {
        ev |= POLLOUT;
    }
    return ev;
}

static int
ensure_slot_map(cio_poller *p, int fd)
{
    if (fd < p->slot_cap) {
        return 0;
    }
    int cap = p->slot_cap ? p->slot_cap : 64;
    while (cap <= fd) {
        cap *= 2;
    }
    int *map = realloc(p->slot_of, (size_t)cap * sizeof(*map));
    if (map == NULL) {
        return -ENOMEM;
    }
    for (int i = p->slot_cap; i < cap; i++) {
        map[i] = -1;
    }
    p->slot_of = map;
    p->slot_cap = cap;
    return 0;
}

static int
poll_modify(cio_poller *p, int fd, uint32_t old_events, uint32_t new_events)
{
    (void)old_events;
    if (fd < 0) {
        return -EBADF;
    }
    int slot = fd < p->slot_cap ? p->slot_of[fd] : -1;
    if (new_events == 0) {
        if (slot < 0) {
            return 0;
        }
        p->len--;
        if (slot != p->len) {
            p->pfds[slot] = p->pfds[p->len];
            p->fd_of[slot] = p->fd_of[p->len];
            p->slot_of[p->fd_of[slot]] = slot;
        }
        p->slot_of[fd] = -1;
        return 0;
    }
    if (slot >= 0) {
        /* The fd may have been parked after POLLNVAL (see poll_wait). */
        p->pfds[slot].fd = fd;
        p->pfds[slot].events = to_poll(new_events);
        return 0;
    }
    /* poll() accepts any number and reports POLLNVAL later; refuse a closed
     * fd now, as epoll_ctl() does. */
    if (fcntl(fd, F_GETFD) < 0) {
        return -errno;
    }
    int err = ensure_slot_map(p, fd);
    if (err) {
        return err;
    }
    if (p->len == p->cap) {
        int cap = p->cap ? p->cap * 2 : 64;
        struct pollfd *pfds = realloc(p->pfds, (size_t)cap * sizeof(*pfds));
        if (pfds == NULL) {
            return -ENOMEM;
        }
        p->pfds = pfds;
        int *fd_of = realloc(p->fd_of, (size_t)cap * sizeof(*fd_of));
        if (fd_of == NULL) {
            return -ENOMEM;
        }
        p->fd_of = fd_of;
        p->cap = cap;
    }
    slot = p->len++;
    p->pfds[slot].fd = fd;
    p->fd_of[slot] = fd;
    p->pfds[slot].events = to_poll(new_events);
    p->pfds[slot].revents = 0;
    p->slot_of[fd] = slot;
    return 0;
}

static int
poll_wait(cio_poller *p, cio_poll_event *fired, int max, int timeout_ms)
{
    int n = poll(p->pfds, (nfds_t)p->len, timeout_ms);
    if (n < 0) {
        return -errno;
    }
    int count = 0;
    for (int i = 0; i < p->len && count < max && n > 0; i++) {
        short rev = p->pfds[i].revents;
        if (rev == 0) {
            continue;
        }
        n--;
        if (rev & POLLNVAL) {
            /* Closed while watched.  epoll forgets such an fd by itself and
             * reports nothing; do the same rather than spin on POLLNVAL:
             * park the slot (a negative fd is ignored by poll) until the
             * owner removes or re-registers it. */
            p->pfds[i].fd = -1;
            continue;
        }
        uint32_t out = 0;
        if (rev & ~POLLOUT) {
            out |= CIO_POLL_IN;
        }
        if (rev & ~POLLIN) {
            out |= CIO_POLL_OUT;
        }
        fired[count].fd = p->pfds[i].fd;
        fired[count].events = out;
        count++;
    }
    return count;
}

static void
poll_close(cio_poller *p)
{
    free(p->pfds);
    free(p->fd_of);
    free(p->slot_of);
    free(p);
}

const cio_poller_backend cio_poller_poll = {
    "poll", poll_init, poll_modify, poll_wait, poll_close,
};
