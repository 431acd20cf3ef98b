/* poller_epoll.c: the default backend, level-triggered epoll.
 *
 * Pitfalls handled here (libev's ev_epoll.c header is the checklist):
 * - the kernel drops an fd from the epoll set by itself when the last
 *   descriptor of its open file is closed, so after a close and reuse of the
 *   number, EPOLL_CTL_MOD may fail with ENOENT (re-add) and EPOLL_CTL_ADD with
 *   EEXIST (modify instead);
 * - removing an fd that was already closed fails with EBADF or ENOENT, which
 *   is harmless: the goal, not being watched, holds;
 * - regular files cannot be watched (EPERM); that is reported to the caller,
 *   as Python's EpollSelector does.
 * Forked children share the epoll set with their parent; a loop must not be
 * used across fork(), as with asyncio's own loops. */
#include "poller.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

#define MAX_BATCH 1024

struct cio_poller {
    int epfd;
    struct epoll_event events[MAX_BATCH];
};

static int
epoll_init(cio_poller **out)
{
    cio_poller *p = malloc(sizeof(*p));
    if (p == NULL) {
        return -ENOMEM;
    }
    p->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (p->epfd < 0) {
        int err = errno;
        free(p);
        return -err;
    }
    *out = p;
    return 0;
}

static uint32_t
to_epoll(uint32_t events)
{
    uint32_t ev = 0;
    if (events & CIO_POLL_IN) {
        ev |= EPOLLIN;
    }
    if (events & CIO_POLL_OUT) {
        ev |= EPOLLOUT;
    }
    return ev;
}

static int
ctl(int epfd, int op, int fd, uint32_t events)
{
    struct epoll_event ev = {0};
    ev.events = to_epoll(events);
    ev.data.fd = fd;
    return epoll_ctl(epfd, op, fd, &ev) == 0 ? 0 : errno;
}

static int
epoll_modify(cio_poller *p, int fd, uint32_t old_events, uint32_t new_events)
{
    int err;
    if (new_events == 0) {
        if (old_events == 0) {
            return 0;
        }
        err = ctl(p->epfd, EPOLL_CTL_DEL, fd, 0);
        if (err == ENOENT || err == EBADF) {
            err = 0;
        }
        return -err;
    }
    if (old_events == 0) {
        err = ctl(p->epfd, EPOLL_CTL_ADD, fd, new_events);
        if (err == EEXIST) {
            err = ctl(p->epfd, EPOLL_CTL_MOD, fd, new_events);
        }
    }
    else {
        err = ctl(p->epfd, EPOLL_CTL_MOD, fd, new_events);
        if (err == ENOENT) {
            err = ctl(p->epfd, EPOLL_CTL_ADD, fd, new_events);
        }
    }
    return -err;
}

static int
epoll_wait_events(cio_poller *p, cio_poll_event *fired, int max, int timeout_ms)
{
    if (max > MAX_BATCH) {
        max = MAX_BATCH;
    }
    int n = epoll_wait(p->epfd, p->events, max, timeout_ms);
    if (n < 0) {
        return -errno;
    }
    for (int i = 0; i < n; i++) {
        uint32_t ev = p->events[i].events;
        uint32_t out = 0;
        /* As in Python's selectors: anything but plain EPOLLOUT wakes the
         * reader, anything but plain EPOLLIN wakes the writer. */
        if (ev & ~(uint32_t)EPOLLOUT) {
            out |= CIO_POLL_IN;
        }
        if (ev & ~(uint32_t)EPOLLIN) {
            out |= CIO_POLL_OUT;
        }
        fired[i].fd = p->events[i].data.fd;
        fired[i].events = out;
    }
    return n;
}

static void
epoll_close(cio_poller *p)
{
    close(p->epfd);
    free(p);
}

const cio_poller_backend cio_poller_epoll = {
    "epoll", epoll_init, epoll_modify, epoll_wait_events, epoll_close,
};
