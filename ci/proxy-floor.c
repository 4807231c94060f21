/*
 * The floor of a TCP proxy on this machine: the least one thread can spend per proxied
 * request when it forwards bytes between two sockets and does nothing else.
 *
 * One epoll loop, level-triggered; each readable socket gets one read(2) of up to
 * 64 KiB and the bytes are written to the other side (blocking writes: the messages of
 * the bench are small). No toxics, no API, no counters. `ci/bench-proxy.sh` builds it
 * with the system's C compiler and puts wrk through it beside `gauntlet proxy`, so the
 * kernel's share of a proxied request (two more TCP receives and sends) is measured,
 * not assumed.
 *
 *   proxy-floor LISTEN_PORT UPSTREAM_HOST UPSTREAM_PORT
 *
 * Prints "listening on 127.0.0.1:PORT" once ready (PORT 0 picks a free one) and runs
 * until killed.
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
#include <unistd.h>

#define MAX_FDS 65536

/* The other end of each descriptor, or -1. */
static int peer[MAX_FDS];

static void die(const char *what) {
    perror(what);
    exit(3);
}

static void close_pair(int ep, int fd) {
    int other = peer[fd];
    epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
    close(fd);
    peer[fd] = -1;
    if (other >= 0) {
        epoll_ctl(ep, EPOLL_CTL_DEL, other, NULL);
        close(other);
        peer[other] = -1;
    }
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: proxy-floor LISTEN_PORT UPSTREAM_HOST UPSTREAM_PORT\n");
        return 2;
    }
    for (int i = 0; i < MAX_FDS; i++) peer[i] = -1;
    struct sockaddr_in up = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[3]))};
    if (inet_pton(AF_INET, argv[2], &up.sin_addr) != 1) die("inet_pton");

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1]))};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(lfd, 1024) < 0) die("listen");
    socklen_t len = sizeof addr;
    getsockname(lfd, (struct sockaddr *)&addr, &len);
    printf("listening on 127.0.0.1:%d\n", ntohs(addr.sin_port));
    fflush(stdout);

    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event lev = {.events = EPOLLIN, .data.fd = lfd};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev);
    static char buf[65536];
    struct epoll_event events[128];
    for (;;) {
        int n = epoll_wait(ep, events, 128, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            if (fd == lfd) {
                int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
                if (c < 0) continue;
                int u = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
                if (u < 0 || c >= MAX_FDS || u >= MAX_FDS || connect(u, (struct sockaddr *)&up, sizeof up) < 0) {
                    close(c);
                    if (u >= 0) close(u);
                    continue;
                }
                setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                setsockopt(u, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                peer[c] = u;
                peer[u] = c;
                struct epoll_event ce = {.events = EPOLLIN, .data.fd = c};
                struct epoll_event ue = {.events = EPOLLIN, .data.fd = u};
                epoll_ctl(ep, EPOLL_CTL_ADD, c, &ce);
                epoll_ctl(ep, EPOLL_CTL_ADD, u, &ue);
                continue;
            }
            if (peer[fd] < 0) continue;
            ssize_t got = read(fd, buf, sizeof buf);
            if (got <= 0) {
                close_pair(ep, fd);
                continue;
            }
            for (ssize_t off = 0; off < got;) {
                ssize_t w = write(peer[fd], buf + off, (size_t)(got - off));
                if (w <= 0) {
                    close_pair(ep, fd);
                    break;
                }
                off += w;
            }
        }
    }
}
