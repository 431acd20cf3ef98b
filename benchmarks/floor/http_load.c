/* http_load.c: the load for the http_server row -- keep-alive HTTP/1.1
 * clients in C, so that the client costs the same whichever loop serves.
 *
 *   http_load PORT CLIENTS REQUESTS_PER_CLIENT
 * connects CLIENTS sockets to 127.0.0.1:PORT (TCP_NODELAY, one
 * level-triggered epoll set, one thread), makes one untimed request on each
 * (so the server has accepted every connection), then times
 * REQUESTS_PER_CLIENT requests per connection, one in flight per connection:
 * "GET / HTTP/1.1", then the whole response (its headers up to the blank
 * line, then Content-Length bytes of body).  Prints "REQUESTS SECONDS".
 * Every response must be a 200 with a Content-Length. */
#define _GNU_SOURCE /* memmem() */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RESPONSE_MAX (64 * 1024)

static const char request[] = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: http_load\r\n\r\n";

typedef struct {
    int fd;
    size_t to_send;   /* bytes of the request not sent yet */
    size_t got;       /* bytes of the response received */
    size_t need;      /* the response's whole length, once its headers are in; 0 before */
    long done;        /* requests answered */
    int watching_out; /* EPOLLOUT is in the epoll set for this fd */
    char buf[RESPONSE_MAX];
} client;

static int epfd;

static void
die(const char *what)
{
    perror(what);
    exit(1);
}

static void
fail(const char *what)
{
    fprintf(stderr, "http_load: %s\n", what);
    exit(1);
}

static double
now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* The length of the whole response in buf[0:len] once its headers are all
 * there (the blank line seen); 0 before that. */
static size_t
response_length(const char *buf, size_t len)
{
    const char *end = memmem(buf, len, "\r\n\r\n", 4);
    if (end == NULL) {
        if (len == RESPONSE_MAX) {
            fail("response headers too long");
        }
        return 0;
    }
    size_t head = (size_t)(end - buf) + 4;
    if (len < 12 || memcmp(buf, "HTTP/1.1 200", 12) != 0) {
        fail("not an HTTP/1.1 200 response");
    }
    for (const char *line = memchr(buf, '\n', head); line != NULL && line < end;
         line = memchr(line + 1, '\n', (size_t)(end - line))) {
        if (strncasecmp(line + 1, "content-length:", 15) == 0) {
            size_t body = strtoul(line + 16, NULL, 10);
            if (head + body > RESPONSE_MAX) {
                fail("response too long");
            }
            return head + body;
        }
    }
    fail("a response without Content-Length");
    return 0;
}

/* Sends what is left of the request; asks epoll for EPOLLOUT only while some
 * of it is (a request is small: it goes in one send()). */
static void
send_request(client *c)
{
    const char *from = request + (sizeof(request) - 1 - c->to_send);
    ssize_t n = send(c->fd, from, c->to_send, MSG_NOSIGNAL);
    if (n < 0) {
        if (errno != EAGAIN && errno != EINTR) {
            die("send");
        }
        n = 0;
    }
    c->to_send -= (size_t)n;
    int out = c->to_send > 0;
    if (out != c->watching_out) {
        c->watching_out = out;
        struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0), .data.ptr = c};
        epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
    }
}

/* Reads what came; returns 1 when that finished a response. */
static int
receive(client *c)
{
    ssize_t n = recv(c->fd, c->buf + c->got, RESPONSE_MAX - c->got, 0);
    if (n == 0) {
        fail("the server closed a connection");
    }
    if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) {
            return 0;
        }
        die("recv");
    }
    c->got += (size_t)n;
    if (c->need == 0) {
        c->need = response_length(c->buf, c->got);
    }
    if (c->need == 0 || c->got < c->need) {
        return 0;
    }
    if (c->got > c->need) {
        fail("bytes after the response (one request is in flight)");
    }
    c->got = c->need = 0;
    return 1;
}

/* One blocking request, before the socket is made non-blocking. */
static void
warm_up(client *c)
{
    c->to_send = sizeof(request) - 1;
    if (send(c->fd, request, c->to_send, MSG_NOSIGNAL) != (ssize_t)c->to_send) {
        die("warm-up send");
    }
    c->to_send = 0;
    while (!receive(c)) {
    }
}

int
main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: http_load PORT CLIENTS REQUESTS_PER_CLIENT\n");
        return 2;
    }
    int port = atoi(argv[1]), nclients = atoi(argv[2]);
    long per_client = atol(argv[3]);
    if (port <= 0 || nclients <= 0 || per_client <= 0) {
        fail("PORT, CLIENTS and REQUESTS_PER_CLIENT must be positive");
    }
    client *clients = calloc((size_t)nclients, sizeof(client));
    epfd = epoll_create1(0);
    if (clients == NULL || epfd < 0) {
        die("setup");
    }
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (int i = 0; i < nclients; i++) {
        client *c = &clients[i];
        int one = 1;
        c->fd = socket(AF_INET, SOCK_STREAM, 0);
        if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
            die("connect");
        }
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        warm_up(c);
        fcntl(c->fd, F_SETFL, O_NONBLOCK);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev);
    }

    long total = per_client * nclients, finished = 0;
    struct epoll_event events[256];
    double t0 = now();
    for (int i = 0; i < nclients; i++) {
        clients[i].to_send = sizeof(request) - 1;
        send_request(&clients[i]);
    }
    while (finished < total) {
        int n = epoll_wait(epfd, events, 256, -1);
        if (n < 0 && errno != EINTR) {
            die("epoll_wait");
        }
        for (int e = 0; e < n; e++) {
            client *c = events[e].data.ptr;
            if (events[e].events & EPOLLOUT) {
                send_request(c);
            }
            if ((events[e].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && receive(c)) {
                finished++;
                if (++c->done < per_client) {
                    c->to_send = sizeof(request) - 1;
                    send_request(c);
                }
            }
        }
    }
    printf("%ld %.9f\n", total, now() - t0);
    return 0;
}
