/*
 * gs_net.h -- TCP plumbing shared by the library's own protocol code
 * (gs_net.c).
 */
#ifndef GEARSYNC_GS_NET_H
#define GEARSYNC_GS_NET_H

#include "gearsync_udf.h"

/* Connect to host:port (each address getaddrinfo gives, in order) within
   timeout_ms per address.  The socket is non-blocking, close-on-exec, with
   TCP_NODELAY.  Returns the fd, or -1. */
int gs_net_connect(const char *host, unsigned port, int timeout_ms) GS_HIDDEN;

/* poll(2) on one fd until an event in `events` or the deadline (ns,
   CLOCK_MONOTONIC) passes, retrying on EINTR.  Returns revents, 0 when the
   deadline passed, -1 on a poll error. */
int gs_net_wait(int fd, short events, uint64_t deadline_ns) GS_HIDDEN;

#endif /* GEARSYNC_GS_NET_H */
