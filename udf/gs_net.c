/*
 * gs_net.c -- non-blocking TCP connect with a timeout, and a poll wrapper
 * with a deadline (no SQL symbols); see gs_net.h.
 */
#include "gs_net.h"
#include "gs_clock.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int gs_net_wait(int fd, short events, uint64_t deadline_ns)
{
    for (;;) {
        struct pollfd pfd = {fd, events, 0};
        uint64_t now = gs_now_ns();
        int rc;

        if (now >= deadline_ns)
            return 0;
        rc = poll(&pfd, 1, (int)((deadline_ns - now + 999999) / 1000000));
        if (rc > 0)
            return pfd.revents;
        if (rc < 0 && errno != EINTR)
            return -1;
    }
}

static int gs_net_connect_addr(const struct addrinfo *ai, int timeout_ms)
{
    int fd, one = 1, err = 0;
    socklen_t len = sizeof err;

    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                ai->ai_protocol);
    if (fd < 0)
        return -1;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        if (errno != EINPROGRESS ||
            gs_net_wait(fd, POLLOUT,
                        gs_now_ns() + (uint64_t)timeout_ms * 1000000ULL) <= 0 ||
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
            close(fd);
            return -1;
        }
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

int gs_net_connect(const char *host, unsigned port, int timeout_ms)
{
    struct addrinfo hints, *res = NULL, *ai;
    char service[16];
    int fd = -1;

    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    snprintf(service, sizeof service, "%u", port);
    if (getaddrinfo(host, service, &hints, &res) != 0)
        return -1;
    for (ai = res; ai != NULL && fd < 0; ai = ai->ai_next)
        fd = gs_net_connect_addr(ai, timeout_ms);
    freeaddrinfo(res);
    return fd;
}
