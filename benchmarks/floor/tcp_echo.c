/* tcp_echo.c: the echo benchmark with no event loop and no Python -- the
 * floor the echo rows are judged against.
 *
 * The same shape as benchmarks/workloads/echo.py: CLIENTS connections over
 * loopback with TCP_NODELAY, non-blocking sockets watched by one
 * level-triggered epoll set; each client sends a message, the server end
 * writes back what it reads, and the client counts a round trip once the
 * whole message came back.  Everything runs in one thread, as the loops do.
 *
 *   tcp_echo SIZE ROUND_TRIPS_PER_CLIENT CLIENTS [PORT]
 * prints "ROUND_TRIPS SECONDS" (the round trips only, not the set-up).
 *
 * With PORT it is only the clients: they connect to an echo server on
 * 127.0.0.1:PORT (a loop under test, in another process), each does one
 * untimed round trip so that the server has accepted every connection, and
 * then the timed ones.
 *
 *   tcp_echo SIZE --serve
 * is only the server, the floor of a loop's echo server: it listens on
 * 127.0.0.1, prints its port, and echoes (messages of up to SIZE bytes in
 * flight per connection) until its standard input closes. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    int fd;
    int is_client;
    int is_listener;  /* serve mode: the listening socket */
    char *buf;        /* server: bytes read, not yet written back */
    size_t pending;   /* server: how many; client: bytes of the message still to send */
    size_t got;       /* client: bytes of the reply received */
    long done;        /* client: round trips finished */
    int watching_out; /* EPOLLOUT is in the epoll set for this fd */
} conn;

static size_t size;
static char *msg;
static int epfd;

static double
now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Asks epoll for EPOLLOUT or stops asking; a system call only when that
 * changes, as a loop only touches its poller when a write buffer fills or
 * empties. */
static void
watch(conn *c, int out)
{
    if (c->watching_out == out) {
        return;
    }
    c->watching_out = out;
    struct epoll_event ev = {0};
    ev.events = EPOLLIN | (out ? EPOLLOUT : 0);
    ev.data.ptr = c;
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

static void
die(const char *what)
{
    perror(what);
    exit(1);
}

/* Sends what is pending from `from`; returns how much went.  A peer that
 * is gone sends nothing: the next receive sees that it closed. */
static size_t
send_some(int fd, const char *from, size_t len)
{
    ssize_t n = send(fd, from, len, MSG_NOSIGNAL);
    if (n < 0) {
        if (errno == EAGAIN || errno == EINTR || errno == EPIPE || errno == ECONNRESET) {
            return 0;
        }
        die("send");
    }
    return (size_t)n;
}

static void
client_send(conn *c)
{
    size_t sent = send_some(c->fd, msg + (size - c->pending), c->pending);
    c->pending -= sent;
    watch(c, c->pending > 0);
}

/* Receives into rbuf: how much came, 0 if nothing did yet, -1 once the peer
 * closed or reset the connection. */
static ssize_t
receive(conn *c, char *rbuf)
{
    ssize_t got = recv(c->fd, rbuf, 256 * 1024, 0);
    if (got > 0) {
        return got;
    }
    if (got < 0 && (errno == EAGAIN || errno == EINTR)) {
        return 0;
    }
    if (got < 0 && errno != ECONNRESET) {
        die("recv");
    }
    return -1;
}

/* The server end of a connection: writes back what it reads, in order.
 * Returns 0 once the peer is gone. */
static int
server_ready(conn *c, uint32_t events, char *rbuf)
{
    if (events & EPOLLOUT) {
        size_t sent = send_some(c->fd, c->buf, c->pending);
        memmove(c->buf, c->buf + sent, c->pending - sent);
        c->pending -= sent;
        watch(c, c->pending > 0);
    }
    if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
        return 1;
    }
    ssize_t got = receive(c, rbuf);
    if (got < 0) {
        return 0;
    }
    if (c->pending > 0) {
        /* Still writing back earlier data: keep order. */
        memcpy(c->buf + c->pending, rbuf, (size_t)got);
        c->pending += (size_t)got;
    }
    else {
        size_t sent = send_some(c->fd, rbuf, (size_t)got);
        if (sent < (size_t)got) {
            memcpy(c->buf, rbuf + sent, (size_t)got - sent);
            c->pending = (size_t)got - sent;
            watch(c, 1);
        }
    }
    return 1;
}

/* The client end: sends the message again each time all of it came back,
 * per_client times.  Returns 1 when this event finished a round trip. */
static int
client_ready(conn *c, uint32_t events, char *rbuf, long per_client)
{
    if (events & EPOLLOUT) {
        client_send(c);
    }
    if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
        return 0;
    }
    ssize_t got = receive(c, rbuf);
    if (got < 0) {
        fprintf(stderr, "recv: the server closed the connection\n");
        exit(1);
    }
    c->got += (size_t)got;
    if (c->got < size) {
        return 0;
    }
    c->got = 0;
    if (++c->done < per_client) {
        c->pending = size;
        client_send(c);
    }
    return 1;
}

static void
add_conn(conn *c, int fd, int is_client)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    fcntl(fd, F_SETFL, O_NONBLOCK);
    c->fd = fd;
    c->is_client = is_client;
    c->buf = is_client ? NULL : malloc(256 * 1024 + size);
    struct epoll_event ev = {0};
    ev.events = EPOLLIN;
    ev.data.ptr = c;
    epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
}

/* One blocking round trip, before the socket is made non-blocking. */
static void
warm_up(int fd, char *rbuf)
{
    size_t got = 0;
    if (send(fd, msg, size, MSG_NOSIGNAL) != (ssize_t)size) {
        die("warm-up send");
    }
    while (got < size) {
        ssize_t n = recv(fd, rbuf, 256 * 1024, 0);
        if (n <= 0) {
            die("warm-up recv");
        }
        got += (size_t)n;
    }
}

/* Every client does per_client round trips; returns the seconds they took. */
static double
echo(conn *conns, int nconns, long per_client, char *rbuf)
{
    long total = 0, finished = 0;
    struct epoll_event events[256];
    double t0 = now();
    for (int i = 0; i < nconns; i++) {
        if (conns[i].is_client) {
            total += per_client;
            conns[i].pending = size;
            client_send(&conns[i]);
        }
    }
    while (finished < total) {
        int n = epoll_wait(epfd, events, 256, -1);
        for (int e = 0; e < n; e++) {
            conn *c = events[e].data.ptr;
            if (c->is_client) {
                finished += client_ready(c, events[e].events, rbuf, per_client);
            }
            else if (!server_ready(c, events[e].events, rbuf)) {
                fprintf(stderr, "recv: a client closed its connection\n");
                exit(1);
            }
        }
    }
    return now() - t0;
}

/* Serve mode: echoes on every connection lfd accepts until standard input
 * closes (the parent is done with us). */
static void
serve(int lfd, char *rbuf)
{
    conn listener = {.fd = lfd, .is_listener = 1};
    struct epoll_event ev = {0};
    ev.events = EPOLLIN;
    ev.data.ptr = &listener;
    epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &ev);
    ev.data.ptr = NULL; /* standard input */
    epoll_ctl(epfd, EPOLL_CTL_ADD, STDIN_FILENO, &ev);
    struct epoll_event events[256];
    for (;;) {
        int n = epoll_wait(epfd, events, 256, -1);
        for (int e = 0; e < n; e++) {
            conn *c = events[e].data.ptr;
            if (c == NULL) {
                if (read(STDIN_FILENO, rbuf, 256 * 1024) <= 0) {
                    return;
                }
            }
            else if (c->is_listener) {
                int fd = accept(lfd, NULL, NULL);
                conn *accepted = fd < 0 ? NULL : calloc(1, sizeof(conn));
                if (accepted == NULL) {
                    die("accept");
                }
                add_conn(accepted, fd, 0);
            }
            else if (!server_ready(c, events[e].events, rbuf)) {
                close(c->fd);
                free(c->buf);
                free(c);
            }
        }
    }
}

int
main(int argc, char **argv)
{
    int serving = argc == 3 && strcmp(argv[2], "--serve") == 0;
    if (argc != 4 && argc != 5 && !serving) {
        fprintf(stderr,
                "usage: %s SIZE ROUND_TRIPS_PER_CLIENT CLIENTS [PORT]\n"
                "       %s SIZE --serve\n",
                argv[0], argv[0]);
        return 2;
    }
    size = (size_t)atol(argv[1]);
    long per_client = serving ? 0 : atol(argv[2]);
    int clients = serving ? 0 : atoi(argv[3]);
    int external = argc == 5;
    msg = malloc(size);
    char *rbuf = malloc(256 * 1024);
    if (msg == NULL || rbuf == NULL) {
        die("malloc");
    }
    for (size_t i = 0; i < size; i++) {
        msg[i] = (char)i;
    }

    struct sockaddr_in addr = {0};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof(addr);
    int lfd = -1;
    if (external) {
        addr.sin_port = htons((unsigned short)atoi(argv[4]));
    }
    else {
        lfd = socket(AF_INET, SOCK_STREAM, 0);
        if (bind(lfd, (struct sockaddr *)&addr, alen) < 0 || listen(lfd, 128) < 0 ||
            getsockname(lfd, (struct sockaddr *)&addr, &alen) < 0) {
            die("listen");
        }
    }
    epfd = epoll_create1(0);
    if (serving) {
        printf("%d\n", ntohs(addr.sin_port));
        fflush(stdout);
        serve(lfd, rbuf);
        return 0;
    }
    conn *conns = calloc((size_t)clients * 2, sizeof(conn));
    int nconns = 0;
    for (int i = 0; i < clients; i++) {
        int cfd = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(cfd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
            die("connect");
        }
        if (external) {
            warm_up(cfd, rbuf);
        }
        else {
            int sfd = accept(lfd, NULL, NULL);
            if (sfd < 0) {
                die("accept");
            }
            add_conn(&conns[nconns++], sfd, 0);
        }
        add_conn(&conns[nconns++], cfd, 1);
    }
    double seconds = echo(conns, nconns, per_client, rbuf);
    printf("%ld %.9f\n", per_client * clients, seconds);
    return 0;
}
