/* poller.h: the I/O poller's backend contract.
 *
 * A backend is four functions over opaque state, in the manner of Redis'
 * ae_epoll.c: init, modify, wait, close.  `wait` only fills the caller's
 * fired[] array; it never calls back into the loop, so the loop decides what
 * to do with each event after the wait returns (and re-checks its own fd
 * state, since an earlier callback may have changed it).
 *
 * Errors are returned as -errno and nothing aborts; the Python layer turns
 * them into OSError.  Error and hang-up conditions are reported as both
 * CIO_POLL_IN and CIO_POLL_OUT, as Python's selectors do, so that whoever
 * watches the fd gets to see the failure when it reads or writes. */
#ifndef CIO_POLLER_H
#define CIO_POLLER_H

#include <stdint.h>

#define CIO_POLL_IN  0x1u
#define CIO_POLL_OUT 0x2u

typedef struct {
    int fd;
    uint32_t events; /* CIO_POLL_IN | CIO_POLL_OUT */
} cio_poll_event;

typedef struct cio_poller cio_poller;

typedef struct {
    const char *name;
    /* Creates a poller.  Returns 0 with *out set, or -errno. */
    int (*init)(cio_poller **out);
    /* Changes fd's registered interest from old_events to new_events (either
     * may be 0: add, remove).  Returns 0 or -errno. */
    int (*modify)(cio_poller *p, int fd, uint32_t old_events, uint32_t new_events);
    /* Waits up to timeout_ms (-1: forever, 0: do not block) and fills at most
     * max events.  Returns how many, or -errno (-EINTR on a signal). */
    int (*wait)(cio_poller *p, cio_poll_event *fired, int max, int timeout_ms);
    /* Releases everything; p is invalid afterwards. */
    void (*close)(cio_poller *p);
} cio_poller_backend;

extern const cio_poller_backend cio_poller_epoll;
extern const cio_poller_backend cio_poller_poll;

/* The backend called `name` ("epoll", "poll"), or NULL. */
const cio_poller_backend *cio_poller_find(const char *name);

#endif
