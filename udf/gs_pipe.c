/*
 * gs_pipe.c -- per-server-thread pipelined gearman connection for
 * gearsync_send(): "one send, no wait" per row.
 *
 * gman_do_background() waits for JOB_CREATED: one network round trip per
 * row.  Here each call appends one SUBMIT_JOB_BG packet to a per-thread send
 * buffer and hands it to the socket with one non-blocking send(); the
 * JOB_CREATED / ERROR acks are read back lazily (non-blocking recv) at the
 * start of a later call once 32 are pending or the coarse monotonic clock
 * (gs_coarse_ns) has ticked (a few ms) since the last read -- the tick is
 * also how an idle connection notices that gearmand went away before it
 * writes into it.
 * Nothing is allocated per row once the buffers are warm, and no syscall is
 * made per row besides that send (plus one recv per 32 rows or per tick).
 *
 * Wire format (own encoder, no libgearman):
 *   request  "\0REQ" u32be type=18 (SUBMIT_JOB_BG) u32be size
 *            function "\0" unique "\0" workload
 *   response "\0RES" u32be type u32be size args:
 *            8  JOB_CREATED (handle)  -- one ack
 *            19 ERROR (code "\0" text) -- one ack, job refused (counted, logged)
 *   gearmand answers one packet per request, in order.
 *
 * Flow control: at most GS_PIPE_WINDOW (1024) jobs unacknowledged and
 * GS_PIPE_SBUF_CAP (1 MiB) unsent bytes per thread; beyond that a call
 * blocks in poll() up to the timeout (gs_timeout_get(), default 250 ms) for
 * acks / writability.  If the window is still full then, the server is
 * taken as hung: the connection is closed (its unacknowledged jobs are
 * reported on stderr -- mysqld's error log -- as possibly lost), the call
 * returns -1 (NULL in SQL) and the server's circuit breaker opens.
 *
 * Connection: to the first server of the default list (a gs_route,
 * refreshed when the server-list generation moved) whose circuit breaker
 * (gs_breaker.c, shared with the gman_* functions) lets it through;
 * non-blocking connect bounded by the timeout per address, TCP_NODELAY
 * (gs_net.c).  A change of the default list moves the connection: pending
 * acks are waited for (bounded), then the socket is closed and the next
 * call connects to the new list.  A failed connect opens that server's
 * breaker (100 ms doubling to 2 s), so while every server is down calls
 * return -1 at the cost of a mutex and a clock read, not a timeout.  A
 * connection lost (EOF, ECONNRESET, EPIPE) is closed, its unacknowledged
 * jobs reported as possibly lost, and the next call reconnects at once.
 *
 * Lifetime: the state hangs off the thread's GS_SLOT_PIPE slot
 * (gs_thread.c), freed when the thread exits or the library is unloaded;
 * gp_release first waits -- bounded -- for pending acks, so that jobs still
 * in the kernel's send queue are not discarded by an RST.
 *
 * Unique ids come from gs_thread_unique (no syscall).
 */
#include "gs_pipe.h"
#include "gs_breaker.h"
#include "gs_buf.h"
#include "gs_clock.h"
#include "gs_log.h"
#include "gs_net.h"
#include "gs_servers.h"
#include "gs_thread.h"
#include "gs_timeouts.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define GP_REQ_SUBMIT_JOB_BG 18
#define GP_RES_JOB_CREATED 8
#define GP_RES_ERROR 19
#define GP_HEADER 12
#define GP_RBUF 8192 /* largest response packet we accept: GP_RBUF bytes */
#define GP_DRAIN_AT 32 /* pending acks that make a call read them */

typedef struct gs_pipe {
    int fd;                      /* -1: not connected */
    char peer[GS_ADDR_LEN];      /* "host:port" of fd */
    gs_route route;              /* the default list fd was chosen from */
    uint64_t drained_at;         /* coarse clock (ns) of the last drain */
    gs_buf sb;                   /* unsent bytes are sb.data[soff..sb.len) */
    size_t soff;
    unsigned char rbuf[GP_RBUF]; /* partial response packet(s) */
    size_t rlen;
    uint64_t outstanding;        /* jobs written, not yet acknowledged */
    uint64_t errors;             /* ERROR responses (jobs refused) */
    uint64_t lost;               /* jobs unacknowledged on a lost connection */
    int connect_failed_logged;   /* one log line per outage */
} gs_pipe;

static int gp_timeout_ms(void)
{
    return gs_timeout_get(GS_TIMEOUT_BG);
}

/* ------------------------------------------------------------- socket */

static void gp_close(gs_pipe *p)
{
    if (p->fd >= 0)
        close(p->fd);
    p->fd = -1;
    p->soff = p->sb.len = 0;
    p->rlen = 0;
    p->outstanding = 0;
}

/* The connection failed under jobs: report and drop them. */
static void gp_lost(gs_pipe *p, const char *what)
{
    uint64_t n = p->outstanding;

    gs_log("gearsync_send: connection to %s %s, %llu jobs unacknowledged",
           p->peer, what, (unsigned long long)n);
    p->lost += n;
    gp_close(p);
}

/* Connect to the first server of the route whose breaker lets it through.
   0 ok, -1 none (calls return NULL until a breaker lets a probe through). */
static int gp_connect(gs_pipe *p)
{
    int timeout = gp_timeout_ms();
    unsigned k;

    for (k = 0; k < p->route.count; k++) {
        const gs_server *sv = &p->route.servers[k];
        int fd;

        if (!gs_breaker_allow(p->route.addrs[k], gs_now_ns()))
            continue;
        fd = gs_net_connect(sv->host, sv->port, timeout);
        gs_breaker_report(p->route.addrs[k], fd >= 0);
        if (fd < 0)
            continue;
        p->fd = fd;
        memcpy(p->peer, p->route.addrs[k], sizeof p->peer);
        p->soff = p->sb.len = p->rlen = 0;
        p->outstanding = 0;
        if (p->connect_failed_logged)
            gs_log("gearsync_send: connected to %s", p->peer);
        p->connect_failed_logged = 0;
        return 0;
    }
    if (!p->connect_failed_logged) {
        gs_log("gearsync_send: cannot connect to any of %s; retrying as each "
               "server's breaker allows, jobs meanwhile return NULL",
               p->route.list);
        p->connect_failed_logged = 1;
    }
    return -1;
}

static uint32_t gp_be32(const unsigned char *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 |
           (uint32_t)b[3];
}

static void gp_put32(char *b, uint32_t v)
{
    b[0] = (char)(v >> 24);
    b[1] = (char)(v >> 16);
    b[2] = (char)(v >> 8);
    b[3] = (char)v;
}

/* Parse whole response packets in rbuf.  0 ok, -1 protocol error. */
static int gp_parse(gs_pipe *p)
{
    size_t off = 0;

    while (p->rlen - off >= GP_HEADER) {
        const unsigned char *h = p->rbuf + off;
        uint32_t type = gp_be32(h + 4), size = gp_be32(h + 8);

        if (memcmp(h, "\0RES", 4) != 0 || size > GP_RBUF - GP_HEADER)
            return -1;
        if (p->rlen - off < GP_HEADER + (size_t)size)
            break;
        if (type == GP_RES_JOB_CREATED || type == GP_RES_ERROR) {
            if (p->outstanding > 0)
                p->outstanding--;
        }
        if (type == GP_RES_ERROR) {
            p->errors++;
            if ((p->errors & (p->errors - 1)) == 0) { /* 1, 2, 4, 8, ... */
                const char *a = (const char *)h + GP_HEADER;
                size_t codelen = strnlen(a, size);
                const char *text = codelen < size ? a + codelen + 1 : "";
                int textlen = codelen < size ? (int)(size - codelen - 1) : 0;
                gs_log("gearsync_send: %s refused a job: %.*s %.*s (%llu "
                       "refused by this thread so far)",
                       p->peer, (int)codelen, a, textlen, text,
                       (unsigned long long)p->errors);
            }
        }
        off += GP_HEADER + size;
    }
    if (off > 0) {
        memmove(p->rbuf, p->rbuf + off, p->rlen - off);
        p->rlen -= off;
    }
    return 0;
}

/* Read every ack available now.  0 ok, -1 connection lost (closed). */
static int gp_drain(gs_pipe *p)
{
    for (;;) {
        ssize_t n = recv(p->fd, p->rbuf + p->rlen, sizeof p->rbuf - p->rlen,
                         MSG_DONTWAIT);
        if (n > 0) {
            p->rlen += (size_t)n;
            if (gp_parse(p)) {
                gp_lost(p, "sent a bad packet");
                return -1;
            }
            if (p->rlen < sizeof p->rbuf && (size_t)n < sizeof p->rbuf / 2)
                return 0; /* short read: nothing more queued (likely) */
            continue;
        }
        if (n == 0) {
            gp_lost(p, "lost (closed by the server)");
            return -1;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return 0;
        if (errno == EINTR)
            continue;
        gp_lost(p, errno == ECONNRESET ? "lost (reset)" : "lost");
        return -1;
    }
}

/* Write buffered bytes now.  0 ok (maybe partly), -1 connection lost
   (NOT closed: the caller decides what the pending bytes were). */
static int gp_write(gs_pipe *p)
{
    while (p->soff < p->sb.len) {
        ssize_t n = send(p->fd, p->sb.data + p->soff, p->sb.len - p->soff,
                         MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0) {
            p->soff += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        return -1;
    }
    if (p->soff == p->sb.len)
        p->soff = p->sb.len = 0;
    return 0;
}

/* Block (poll, up to timeout_ms) until outstanding <= max_out and unsent
   bytes <= max_unsent.  0 reached; 1 timed out (connection kept);
   -1 connection lost (closed, reported). */
static int gp_wait(gs_pipe *p, uint64_t max_out, size_t max_unsent,
                   int timeout_ms)
{
    uint64_t deadline = gs_now_ns() + (uint64_t)timeout_ms * 1000000ULL;

    for (;;) {
        int ev;

        if (p->fd < 0)
            return -1;
        if (p->outstanding <= max_out && p->sb.len - p->soff <= max_unsent)
            return 0;
        ev = gs_net_wait(p->fd,
                         (short)(POLLIN | (p->sb.len > p->soff ? POLLOUT : 0)),
                         deadline);
        if (ev == 0)
            return 1;
        if (ev < 0) {
            gp_lost(p, "lost (poll failed)");
            return -1;
        }
        if (ev & (POLLIN | POLLERR | POLLHUP)) {
            if (gp_drain(p))
                return -1;
        }
        if (p->fd >= 0 && p->sb.len > p->soff && gp_write(p)) {
            gp_lost(p, "lost (send failed)");
            return -1;
        }
    }
}

/* Wait (bounded) for pending acks, then close; report what is left. */
static void gp_close_graceful(gs_pipe *p, int timeout_ms)
{
    if (p->fd < 0)
        return;
    if (p->outstanding > 0 || p->sb.len > p->soff) {
        if (gp_wait(p, 0, 0, timeout_ms) != 0) {
            if (p->fd >= 0)
                gp_lost(p, "closed with jobs pending");
            return;
        }
    } else if (gp_drain(p)) { /* read stray bytes: close with FIN, not RST */
        return;
    }
    gp_close(p);
}

/* ------------------------------------------------------- thread state */

static void gp_release(void *state, int timeout_ms)
{
    gs_pipe *p = state;

    gp_close_graceful(p, timeout_ms);
    free(p->sb.data);
    free(p);
}

static void gp_init(void *state)
{
    ((gs_pipe *)state)->fd = -1;
}

static gs_pipe *gp_get(gs_thread **tp)
{
    return gs_thread_state(tp, GS_SLOT_PIPE, sizeof(gs_pipe), gp_release,
                           gp_init);
}

/* Follow the default list: a change moves the connection.  0 ok, -1 the
   list cannot be parsed. */
static int gp_check_servers(gs_pipe *p)
{
    int rc;

    if (p->route.gen == gs_servers_generation())
        return 0;
    if (p->fd >= 0 && p->route.gen != 0) {
        char old[GS_SERVERS_MAX_LEN];
        memcpy(old, p->route.list, sizeof old);
        rc = gs_route_refresh(&p->route, NULL);
        if (rc != 0 || strcmp(old, p->route.list) != 0)
            gp_close_graceful(p, gp_timeout_ms());
    } else {
        rc = gs_route_refresh(&p->route, NULL);
    }
    if (rc == 1)
        p->connect_failed_logged = 0;
    return rc < 0 ? -1 : 0;
}

/* Connected, acks drained, window open.  0 ready, -1 not (NULL). */
static int gp_ready(gs_pipe *p)
{
    int attempt;

    for (attempt = 0; attempt < 2; attempt++) {
        uint64_t tick;

        if (p->fd < 0 && gp_connect(p))
            return -1;
        /* Acks are read when enough are pending or the coarse clock moved
           (a few ms: also how an idle connection notices a restarted
           gearmand), not on every row: a recv() that finds nothing costs as
           much as the send. */
        tick = gs_coarse_ns();
        if ((p->outstanding >= GP_DRAIN_AT || p->drained_at != tick) &&
            (p->drained_at = tick, gp_drain(p)))
            continue; /* a working connection died: reconnect now */
        if (p->outstanding >= GS_PIPE_WINDOW ||
            p->sb.len - p->soff >= GS_PIPE_SBUF_CAP) {
            int timeout = gp_timeout_ms();
            int rc = gp_wait(p, GS_PIPE_WINDOW - 1, GS_PIPE_SBUF_CAP - 1,
                             timeout);
            if (rc == 1) {
                char what[64];
                snprintf(what, sizeof what, "timed out (%d ms, %s full)",
                         timeout,
                         p->outstanding >= GS_PIPE_WINDOW ? "ack window"
                                                          : "send buffer");
                gs_breaker_report(p->peer, 0);
                gp_lost(p, what);
                return -1;
            }
            if (rc < 0)
                continue;
        }
        return 0;
    }
    return -1;
}

static int gp_reserve(gs_pipe *p, size_t need)
{
    if (p->soff > 0 && p->soff == p->sb.len)
        p->soff = p->sb.len = 0;
    if (p->soff > 0 && p->sb.cap - p->sb.len < need) {
        /* compact: the unsent tail goes to the front */
        memmove(p->sb.data, p->sb.data + p->soff, p->sb.len - p->soff);
        p->sb.len -= p->soff;
        p->soff = 0;
    }
    return gs_buf_reserve(&p->sb, need);
}

/* An empty send buffer that grew past GS_PIPE_SBUF_KEEP (a huge job) is
   freed. */
static void gp_trim(gs_pipe *p)
{
    if (p->sb.len == 0 && p->sb.cap > GS_PIPE_SBUF_KEEP) {
        free(p->sb.data);
        p->sb.data = NULL;
        p->sb.cap = 0;
    }
}

int gs_pipe_send(const char *function, size_t flen, const char *unique,
                 size_t ulen, const char *workload, size_t wlen,
                 char *unique_out, size_t *unique_len)
{
    gs_thread *t;
    gs_pipe *p;
    size_t start, size, ul;
    char *w;
    int attempt;

    if (function == NULL || flen == 0 || flen > GS_PIPE_FUNCTION_MAX ||
        memchr(function, '\0', flen) != NULL)
        return -1;
    if (unique != NULL && ulen > 0 &&
        (ulen > GS_PIPE_UNIQUE_MAX || memchr(unique, '\0', ulen) != NULL))
        return -1;
    if (workload == NULL)
        wlen = 0;
    if (wlen > (size_t)UINT32_MAX - flen - GS_PIPE_UNIQUE_MAX - 2)
        return -1;
    p = gp_get(&t);
    if (p == NULL || gp_check_servers(p))
        return -1;
    if (unique != NULL && ulen > 0) {
        memcpy(unique_out, unique, ulen);
        unique_out[ulen] = '\0';
        ul = ulen;
    } else {
        gs_thread_unique(t, unique_out);
        ul = strlen(unique_out);
    }
    size = flen + 1 + ul + 1 + wlen;
    for (attempt = 0; attempt < 2; attempt++) {
        if (gp_ready(p))
            return -1;
        if (gp_reserve(p, GP_HEADER + size))
            return -1;
        start = p->sb.len;
        w = p->sb.data + start;
        memcpy(w, "\0REQ", 4);
        gp_put32(w + 4, GP_REQ_SUBMIT_JOB_BG);
        gp_put32(w + 8, (uint32_t)size);
        w += GP_HEADER;
        memcpy(w, function, flen);
        w += flen;
        *w++ = '\0';
        memcpy(w, unique_out, ul);
        w += ul;
        *w++ = '\0';
        if (wlen)
            memcpy(w, workload, wlen);
        p->sb.len = start + GP_HEADER + size;
        p->outstanding++;
        if (gp_write(p) == 0) {
            gp_trim(p);
            *unique_len = ul;
            return 0;
        }
        /* The connection is dead.  If not a byte of this job went out, take
           it back and retry once on a fresh connection; the jobs before it
           are reported as possibly lost. */
        if (p->soff <= start) {
            p->sb.len = start;
            p->outstanding--;
            gp_lost(p, "lost (send failed)");
            continue;
        }
        gp_lost(p, "lost (send failed)");
        return -1;
    }
    return -1;
}

long long gs_pipe_flush(void)
{
    gs_thread *t;
    gs_pipe *p = gp_get(&t);
    uint64_t lost0;

    if (p == NULL || p->fd < 0)
        return 0;
    lost0 = p->lost;
    if (gp_drain(p) == 0)
        gp_wait(p, 0, 0, gp_timeout_ms());
    gp_trim(p);
    return (long long)(p->outstanding + (p->lost - lost0));
}
