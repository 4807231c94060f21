/*
 * The floor of an open-model load generator on this machine: the least a single thread
 * can spend per request when it must send each request at its time, not when the last
 * answer came.
 *
 * It does nothing else: one periodic timerfd (one wake-up per arrival, or one per tick
 * when `batch_us` groups arrivals), an epoll loop, keep-alive connections, a fixed
 * `GET /` and just enough parsing to find the end of each answer (Content-Length). No
 * histogram, no timeouts, no flows. `ci/bench-vs-wrk.sh` builds it with the system's C
 * compiler and runs it beside `gauntlet load --rate`, so the CPU the kernel charges for
 * the wake-ups themselves (large on a virtual machine) is measured, not assumed.
 *
 *   open-floor HOST PORT RATE SECONDS CONNECTIONS BATCH_US
 *
 * Prints "answered N late M": answers read, and arrivals that found every connection
 * busy (sent as soon as one was free, so the count of requests stays the schedule's).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 256
#define BUF 65536

struct conn {
    int fd;
    int busy;
    size_t have;
    char buf[BUF];
};

static struct conn conns[MAX_CONNS];
static const char *request;
static size_t request_len;

static int die(const char *what) {
    perror(what);
    exit(3);
}

/* Bytes of the first complete answer in c->buf, or 0 when it is not whole yet. */
static size_t answer_len(struct conn *c) {
    char *end = memmem(c->buf, c->have, "\r\n\r\n", 4);
    if (!end) return 0;
    size_t head = (size_t)(end - c->buf) + 4, body = 0;
    for (char *p = c->buf; p < end; p++) {
        if ((*p == 'C' || *p == 'c') && strncasecmp(p, "content-length:", 15) == 0) {
            body = strtoul(p + 15, NULL, 10);
            break;
        }
    }
    return c->have >= head + body ? head + body : 0;
}

static void send_on(struct conn *c) {
    if (write(c->fd, request, request_len) != (ssize_t)request_len) die("write");
    c->busy = 1;
}

int main(int argc, char **argv) {
    if (argc != 7) {
        fprintf(stderr, "usage: open-floor HOST PORT RATE SECONDS CONNECTIONS BATCH_US\n");
        return 2;
    }
    const char *host = argv[1];
    int port = atoi(argv[2]);
    double rate = atof(argv[3]), seconds = atof(argv[4]);
    int nconns = atoi(argv[5]);
    long batch_us = atol(argv[6]);
    if (rate <= 0 || seconds <= 0 || nconns < 1 || nconns > MAX_CONNS || batch_us < 0) {
        fprintf(stderr, "open-floor: bad arguments\n");
        return 2;
    }
    static char req[256];
    snprintf(req, sizeof req, "GET / HTTP/1.1\r\nHost: %s:%d\r\n\r\n", host, port);
    request = req;
    request_len = strlen(req);

    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) die("epoll_create1");
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) die("inet_pton");
    for (int i = 0; i < nconns; i++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) die("connect");
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        conns[i].fd = fd;
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl");
    }

    /* The timer ticks once per arrival, or once per batch when arrivals are closer. */
    double interval_ns = 1e9 / rate;
    double tick_ns = interval_ns > batch_us * 1000.0 ? interval_ns : batch_us * 1000.0;
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (tfd < 0) die("timerfd_create");
    struct itimerspec its = {0};
    its.it_value.tv_nsec = 1;
    its.it_interval.tv_sec = (time_t)(tick_ns / 1e9);
    its.it_interval.tv_nsec = (long)((long long)tick_ns % 1000000000LL);
    if (timerfd_settime(tfd, 0, &its, NULL) < 0) die("timerfd_settime");
    struct epoll_event tev = {.events = EPOLLIN, .data.u32 = UINT32_MAX};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &tev) < 0) die("epoll_ctl");

    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    uint64_t total = (uint64_t)(rate * seconds), due = 0, sent = 0, answered = 0, late = 0, backlog = 0;
    struct epoll_event events[64];
    while (answered < total) {
        int n = epoll_wait(ep, events, 64, 1000);
        if (n < 0 && errno != EINTR) die("epoll_wait");
        clock_gettime(CLOCK_MONOTONIC, &now);
        double elapsed_ns = (now.tv_sec - t0.tv_sec) * 1e9 + (now.tv_nsec - t0.tv_nsec);
        if (elapsed_ns > (seconds + 5) * 1e9) break; /* bounded even if answers stop */
        for (int i = 0; i < n; i++) {
            if (events[i].data.u32 == UINT32_MAX) {
                uint64_t expirations;
                if (read(tfd, &expirations, sizeof expirations) < 0 && errno != EAGAIN) die("read timerfd");
                uint64_t now_due = (uint64_t)(elapsed_ns / interval_ns) + 1;
                if (now_due > total) now_due = total;
                if (now_due > due) {
                    backlog += now_due - due;
                    due = now_due;
                }
                continue;
            }
            struct conn *c = &conns[events[i].data.u32];
            ssize_t got = read(c->fd, c->buf + c->have, BUF - c->have);
            if (got <= 0) die("read (the server closed the connection)");
            c->have += (size_t)got;
            size_t len;
            while ((len = answer_len(c)) > 0) {
                memmove(c->buf, c->buf + len, c->have - len);
                c->have -= len;
                c->busy = 0;
                answered++;
            }
        }
        /* Every due arrival goes out on a free connection; those that find none wait. */
        for (int i = 0; i < nconns && backlog > 0; i++) {
            if (!conns[i].busy) {
                send_on(&conns[i]);
                backlog--;
                sent++;
            }
        }
        if (backlog > 0) late++;
    }
    printf("answered %llu late %llu\n", (unsigned long long)answered, (unsigned long long)late);
    return answered < total ? 1 : 0;
}
