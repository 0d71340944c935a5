/*
 * gs_pipe.c -- per-server-thread pipelined gearman connection for
 * gearsync_send(): "one send, no wait" per row.
 *
 * gman_do_background() waits for JOB_CREATED: one network round trip per
 * row.  Here each call appends one SUBMIT_JOB_BG packet to a per-thread send
 * buffer and hands it to the socket with one non-blocking send(); the
 * JOB_CREATED / ERROR acks are read back lazily (non-blocking recv) at the
 * start of a later call once 32 are pending or the coarse monotonic clock
 * has ticked (a few ms) since the last read -- the tick is also how an idle
 * connection notices that gearmand went away before it writes into it.
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
 * returns -1 (NULL in SQL) and a reconnect backoff starts.
 *
 * Connection: to the first reachable server of the default list
 * (gs_servers_get), non-blocking connect bounded by the timeout per
 * address, TCP_NODELAY.  The list is re-read when the coarse monotonic clock
 * has moved since the last look (a few ms: no generation counter is
 * exported), and a change moves the connection: pending acks are waited for
 * (bounded), then the socket is closed and the next call connects to the
 * new list.  A failed connect makes calls return -1 at once for a backoff of
 * 100 ms doubling to 2 s (reset by a successful connect), so a down
 * gearmand costs microseconds per row, not a timeout.  A connection lost
 * (EOF, ECONNRESET, EPIPE) is closed, its unacknowledged jobs reported as
 * possibly lost, and the next call reconnects at once (then backoff).
 *
 * Lifetime: the state hangs off the thread's gs_thread (gs_thread.c), which
 * frees it when the thread exits or the library is unloaded; gs_pipe_release
 * first waits -- bounded -- for pending acks, so that jobs still in the
 * kernel's send queue are not discarded by an RST.
 *
 * Unique ids come from gs_thread_unique (no syscall).
 */
#include "gearsync_udf.h"
#include "gs_pipe.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define GP_REQ_SUBMIT_JOB_BG 18
#define GP_RES_JOB_CREATED 8
#define GP_RES_ERROR 19
#define GP_HEADER 12
#define GP_RBUF 8192 /* largest response packet we accept: GP_RBUF bytes */
#define GP_PEER_MAX 300
#define GP_DRAIN_AT 32 /* pending acks that make a call read them */

typedef struct gs_pipe {
    int fd;                      /* -1: not connected */
    char peer[GP_PEER_MAX];      /* "host:port" of fd */
    char servers[GS_SERVERS_MAX_LEN]; /* list fd was chosen from */
    long long servers_checked;   /* coarse clock (ns) of the last look */
    long long drained_at;        /* coarse clock (ns) of the last drain */
    char *sbuf;                  /* unsent bytes are sbuf[soff..slen) */
    size_t soff, slen, scap;
    unsigned char rbuf[GP_RBUF]; /* partial response packet(s) */
    size_t rlen;
    uint64_t outstanding;        /* jobs written, not yet acknowledged */
    uint64_t errors;             /* ERROR responses (jobs refused) */
    uint64_t lost;               /* jobs unacknowledged on a lost connection */
    long long retry_at;          /* monotonic ns; no connect before */
    int backoff_ms;              /* next backoff */
    int reconnect_now;           /* lost a working connection: retry at once */
    int connect_failed_logged;   /* one log line per outage */
} gs_pipe;


/* ---------------------------------------------------------------- time */

static long long gp_now_ns(clockid_t clk)
{
    struct timespec ts;
    clock_gettime(clk, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int gp_timeout_ms(void)
{
    int ms = gs_timeout_get();
    return ms > 0 ? ms : GS_TIMEOUT_DEFAULT_MS;
}

/* ------------------------------------------------------------- logging */

static void gp_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void gp_log(const char *fmt, ...)
{
    char line[768];
    va_list ap;
    int n;
    time_t now = time(NULL);
    struct tm tm;

    localtime_r(&now, &tm);
    n = (int)strftime(line, sizeof line, "%Y-%m-%d %H:%M:%S ", &tm);
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    n = (int)strlen(line);
    line[n++] = '\n';
    if (write(STDERR_FILENO, line, (size_t)n) < 0) {
        /* nowhere else to report it */
    }
}

/* ------------------------------------------------------------- socket */

static void gp_close(gs_pipe *p)
{
    if (p->fd >= 0)
        close(p->fd);
    p->fd = -1;
    p->soff = p->slen = 0;
    p->rlen = 0;
    p->outstanding = 0;
}

/* The connection failed under jobs: report and drop them. */
static void gp_lost(gs_pipe *p, const char *what)
{
    uint64_t n = p->outstanding;

    gp_log("gearsync_send: connection to %s %s, %llu jobs unacknowledged",
           p->peer, what, (unsigned long long)n);
    p->lost += n;
    gp_close(p);
}

static void gp_backoff(gs_pipe *p)
{
    long long now = gp_now_ns(CLOCK_MONOTONIC);

    if (p->backoff_ms < GS_PIPE_BACKOFF_MIN_MS)
        p->backoff_ms = GS_PIPE_BACKOFF_MIN_MS;
    p->retry_at = now + (long long)p->backoff_ms * 1000000LL;
    p->backoff_ms *= 2;
    if (p->backoff_ms > GS_PIPE_BACKOFF_MAX_MS)
        p->backoff_ms = GS_PIPE_BACKOFF_MAX_MS;
    p->reconnect_now = 0;
}

/* Non-blocking connect to one address within timeout_ms; fd or -1. */
static int gp_connect_addr(const struct addrinfo *ai, int timeout_ms)
{
    int fd, one = 1, err = 0;
    socklen_t len = sizeof err;

    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                ai->ai_protocol);
    if (fd < 0)
        return -1;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        struct pollfd pfd = {fd, POLLOUT, 0};
        long long deadline;
        int rc;

        if (errno != EINPROGRESS)
            goto fail;
        deadline = gp_now_ns(CLOCK_MONOTONIC) + (long long)timeout_ms * 1000000LL;
        for (;;) {
            long long left = deadline - gp_now_ns(CLOCK_MONOTONIC);
            if (left <= 0)
                goto fail;
            rc = poll(&pfd, 1, (int)((left + 999999) / 1000000));
            if (rc > 0)
                break;
            if (rc < 0 && errno != EINTR)
                goto fail;
        }
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0)
            goto fail;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
fail:
    close(fd);
    return -1;
}

/* Split "host:port" / "[v6]:port" (normalised entries) into host, port. */
static int gp_split(const char *s, size_t n, char *host, size_t hostsz,
                    char *port, size_t portsz)
{
    const char *colon;
    size_t hl, pl;

    if (n > 0 && s[0] == '[') {
        const char *rb = memchr(s, ']', n);
        if (rb == NULL || rb + 1 >= s + n || rb[1] != ':')
            return -1;
        hl = (size_t)(rb - s) - 1;
        memcpy(host, s + 1, hl < hostsz ? hl : 0);
        colon = rb + 1;
    } else {
        colon = NULL;
        for (size_t i = n; i > 0; i--) {
            if (s[i - 1] == ':') {
                colon = s + i - 1;
                break;
            }
        }
        if (colon == NULL)
            return -1;
        hl = (size_t)(colon - s);
        memcpy(host, s, hl < hostsz ? hl : 0);
    }
    pl = (size_t)(s + n - colon - 1);
    if (hl == 0 || hl >= hostsz || pl == 0 || pl >= portsz)
        return -1;
    host[hl] = '\0';
    memcpy(port, colon + 1, pl);
    port[pl] = '\0';
    return 0;
}

/* Connect to the first reachable server of p->servers.  0 ok, -1 failed
   (backoff started). */
static int gp_connect(gs_pipe *p)
{
    const char *s = p->servers;
    int timeout = gp_timeout_ms();

    while (*s != '\0') {
        const char *comma = strchr(s, ',');
        size_t n = comma ? (size_t)(comma - s) : strlen(s);
        char host[256], port[16];
        struct addrinfo hints, *res = NULL, *ai;

        if (gp_split(s, n, host, sizeof host, port, sizeof port) == 0) {
            memset(&hints, 0, sizeof hints);
            hints.ai_socktype = SOCK_STREAM;
            hints.ai_flags = AI_NUMERICSERV;
            if (getaddrinfo(host, port, &hints, &res) == 0) {
                for (ai = res; ai != NULL; ai = ai->ai_next) {
                    int fd = gp_connect_addr(ai, timeout);
                    if (fd >= 0) {
                        freeaddrinfo(res);
                        p->fd = fd;
                        snprintf(p->peer, sizeof p->peer, "%.*s", (int)n, s);
                        p->soff = p->slen = p->rlen = 0;
                        p->outstanding = 0;
                        p->backoff_ms = GS_PIPE_BACKOFF_MIN_MS;
                        p->retry_at = 0;
                        p->reconnect_now = 0;
                        if (p->connect_failed_logged)
                            gp_log("gearsync_send: connected to %s", p->peer);
                        p->connect_failed_logged = 0;
                        return 0;
                    }
                }
                freeaddrinfo(res);
            }
        }
        s += n;
        if (*s == ',')
            s++;
    }
    if (!p->connect_failed_logged) {
        gp_log("gearsync_send: cannot connect to any of %s; retrying with "
               "backoff (%d..%d ms), jobs meanwhile return NULL",
               p->servers, GS_PIPE_BACKOFF_MIN_MS, GS_PIPE_BACKOFF_MAX_MS);
        p->connect_failed_logged = 1;
    }
    gp_backoff(p);
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
                gp_log("gearsync_send: %s refused a job: %.*s %.*s (%llu "
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
    while (p->soff < p->slen) {
        ssize_t n = send(p->fd, p->sbuf + p->soff, p->slen - p->soff,
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
    if (p->soff == p->slen)
        p->soff = p->slen = 0;
    return 0;
}

/* Block (poll, up to timeout_ms) until outstanding <= max_out and unsent
   bytes <= max_unsent.  0 reached; 1 timed out (connection kept);
   -1 connection lost (closed, reported). */
static int gp_wait(gs_pipe *p, uint64_t max_out, size_t max_unsent,
                   int timeout_ms)
{
    long long deadline =
        gp_now_ns(CLOCK_MONOTONIC) + (long long)timeout_ms * 1000000LL;

    for (;;) {
        struct pollfd pfd;
        long long left;
        int rc;

        if (p->fd < 0)
            return -1;
        if (p->outstanding <= max_out && p->slen - p->soff <= max_unsent)
            return 0;
        left = deadline - gp_now_ns(CLOCK_MONOTONIC);
        if (left <= 0)
            return 1;
        pfd.fd = p->fd;
        pfd.events = (short)(POLLIN | (p->slen > p->soff ? POLLOUT : 0));
        pfd.revents = 0;
        rc = poll(&pfd, 1, (int)((left + 999999) / 1000000));
        if (rc < 0 && errno != EINTR) {
            gp_lost(p, "lost (poll failed)");
            return -1;
        }
        if (rc <= 0)
            continue;
        if (pfd.revents & (POLLIN | POLLERR | POLLHUP)) {
            if (gp_drain(p))
                return -1;
        }
        if (p->fd >= 0 && p->slen > p->soff && gp_write(p)) {
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
    if (p->outstanding > 0 || p->slen > p->soff) {
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

void gs_pipe_release(struct gs_pipe *p, int timeout_ms)
{
    gp_close_graceful(p, timeout_ms);
    free(p->sbuf);
    free(p);
}

static gs_pipe *gp_get(gs_thread **tp)
{
    gs_thread *t = gs_thread_get();
    gs_pipe *p;

    *tp = t;
    if (t == NULL)
        return NULL;
    if (t->pipe != NULL)
        return t->pipe;
    p = calloc(1, sizeof *p);
    if (p == NULL)
        return NULL;
    p->fd = -1;
    p->backoff_ms = GS_PIPE_BACKOFF_MIN_MS;
    p->servers_checked = -1;
    t->pipe = p;
    return p;
}

/* Re-read the server list when the coarse clock moved; a change moves the
   connection. */
static void gp_check_servers(gs_pipe *p)
{
    char now_list[GS_SERVERS_MAX_LEN];
    long long now = gp_now_ns(CLOCK_MONOTONIC_COARSE);

    if (now == p->servers_checked)
        return;
    p->servers_checked = now;
    gs_servers_get(now_list, sizeof now_list);
    if (strcmp(now_list, p->servers) == 0)
        return;
    gp_close_graceful(p, gp_timeout_ms());
    memcpy(p->servers, now_list, sizeof p->servers);
    p->backoff_ms = GS_PIPE_BACKOFF_MIN_MS;
    p->retry_at = 0;
    p->reconnect_now = 0;
    p->connect_failed_logged = 0;
}

/* Connected, acks drained, window open.  0 ready, -1 not (NULL). */
static int gp_ready(gs_pipe *p)
{
    int attempt;

    for (attempt = 0; attempt < 2; attempt++) {
        if (p->fd < 0) {
            if (!p->reconnect_now &&
                gp_now_ns(CLOCK_MONOTONIC) < p->retry_at)
                return -1;
            if (gp_connect(p))
                return -1;
        }
        /* Acks are read when enough are pending or the coarse clock moved
           (a few ms: also how an idle connection notices a restarted
           gearmand), not on every row: a recv() that finds nothing costs as
           much as the send. */
        if ((p->outstanding >= GP_DRAIN_AT || p->drained_at != p->servers_checked) &&
            (p->drained_at = p->servers_checked, gp_drain(p))) {
            p->reconnect_now = 1; /* a working connection died: retry now */
            continue;
        }
        if (p->outstanding >= GS_PIPE_WINDOW ||
            p->slen - p->soff >= GS_PIPE_SBUF_CAP) {
            int timeout = gp_timeout_ms();
            int rc = gp_wait(p, GS_PIPE_WINDOW - 1, GS_PIPE_SBUF_CAP - 1,
                             timeout);
            if (rc == 1) {
                char what[64];
                snprintf(what, sizeof what, "timed out (%d ms, %s full)",
                         timeout,
                         p->outstanding >= GS_PIPE_WINDOW ? "ack window"
                                                          : "send buffer");
                gp_lost(p, what);
                gp_backoff(p);
                return -1;
            }
            if (rc < 0) {
                p->reconnect_now = 1;
                continue;
            }
        }
        return 0;
    }
    return -1;
}

static int gp_reserve(gs_pipe *p, size_t need)
{
    size_t cap;
    char *nb;

    if (p->soff > 0 && p->soff == p->slen)
        p->soff = p->slen = 0;
    if (p->scap - p->slen >= need)
        return 0;
    if (p->soff > 0) { /* compact: the unsent tail goes to the front */
        memmove(p->sbuf, p->sbuf + p->soff, p->slen - p->soff);
        p->slen -= p->soff;
        p->soff = 0;
        if (p->scap - p->slen >= need)
            return 0;
    }
    cap = p->scap ? p->scap : GS_PIPE_SBUF_INITIAL;
    while (cap - p->slen < need) {
        if (cap > SIZE_MAX / 2)
            return -1;
        cap *= 2;
    }
    nb = realloc(p->sbuf, cap);
    if (nb == NULL)
        return -1;
    p->sbuf = nb;
    p->scap = cap;
    return 0;
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
    if (p == NULL)
        return -1;
    gp_check_servers(p);
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
        start = p->slen;
        w = p->sbuf + start;
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
        p->slen = start + GP_HEADER + size;
        p->outstanding++;
        if (gp_write(p) == 0) {
            if (p->slen == 0 && p->scap > GS_PIPE_SBUF_KEEP) { /* after a huge job */
                free(p->sbuf);
                p->sbuf = NULL;
                p->scap = 0;
            }
            *unique_len = ul;
            return 0;
        }
        /* The connection is dead.  If not a byte of this job went out, take
           it back and retry once on a fresh connection; the jobs before it
           are reported as possibly lost. */
        if (p->soff <= start) {
            p->slen = start;
            p->outstanding--;
            gp_lost(p, "lost (send failed)");
            p->reconnect_now = 1;
            continue;
        }
        gp_lost(p, "lost (send failed)");
        p->reconnect_now = 1;
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
    if (p->fd < 0)
        p->reconnect_now = 1;
    if (p->sbuf != NULL && p->slen == 0 && p->scap > GS_PIPE_SBUF_KEEP) {
        free(p->sbuf);
        p->sbuf = NULL;
        p->scap = 0;
    }
    return (long long)(p->outstanding + (p->lost - lost0));
}
