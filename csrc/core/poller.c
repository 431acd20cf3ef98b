/* poller.c: choosing a poller backend by name. */
#include "poller.h"

#include <stddef.h>
#include <string.h>

const cio_poller_backend *
cio_poller_find(const char *name)
{
    if (name == NULL || strcmp(name, "epoll") == 0) {
        return &cio_poller_epoll;
    }
    if (strcmp(name, "poll") == 0) {
        return &cio_poller_poll;
    }
    return NULL;
}
