/*
 * gs_sender.c -- one sender thread per mysqld for gearsync_send (no SQL
 * symbols); see gs_sender.h.
 *
 * Producers (server threads in gearsync_send): gs_queue_put copies the
 * record into the ring under the queue's mutex and, only when the sender
 * sleeps waiting for records, writes its eventfd.  Nothing is allocated and
 * no syscall is made per row while the sender is busy.
 *
 * The sender thread, started on first use:
 *   - connects to the first server of the default list whose circuit
 *     breaker (gs_breaker.c, shared with gman_*) lets it through -- or,
 *     with spread = on (gs_config.c), keeps one connection per server of
 *     the list (spread mode, below);
 *   - while fewer than GS_SENDER_INFLIGHT batches are unacknowledged, takes
 *     the oldest queued record's Gearman function and gathers the queued
 *     records of that function (up to GS_BATCH_RECORDS / GS_BATCH_BYTES)
 *     into one SUBMIT_JOB_BG whose workload is an envelope (version and
 *     payload per record, HMAC when a secret is set) and whose unique id is
 *     the batch's ("gs-<nonce>-<batch>"); nothing waits when idle, so a lone
 *     row goes out at once, and rows arriving while a batch is in flight
 *     batch up -- unless linger_us (gs_config.c) is set: then a batch of
 *     fewer than GS_BATCH_RECORDS waits until linger after the
 *     connection's previous one (never while a flush waits or the library
 *     unloads), so rows a little apart share a job;
 *   - reads JOB_CREATED / ERROR answers (gearmand answers in order): the
 *     oldest batch is done, its records are freed from the ring;
 *   - a dead connection -- EOF or an error on read (the socket is polled
 *     while idle and read once more right before each write, so a close by
 *     gearmand is seen before writing into it), a failed write, or no answer
 *     within the background timeout (hung: the server's breaker opens) --
 *     is closed; the sender reconnects to the same server or the next of
 *     the list and re-sends the unacknowledged batches first, in order and
 *     with the same unique ids (gearmand folds a re-sent job into the one it
 *     still holds), then continues.  At-least-once: a batch gearmand had
 *     queued before the connection died can arrive twice.
 * Spread mode: connection i belongs to server i of the list.  A record with
 * a route goes to the connection that owns (route % N): server (route % N)
 * while it is connected, else the next connected one in ring order; a
 * record without a route goes to whichever connection gathers first (the
 * connection after the one that last took such records goes first: turn by
 * turn per batch, whatever the loop's rhythm).  A
 * batch holds one function's records for one connection.  A dead
 * connection's unacknowledged batches are queued again (their records back
 * to QUEUED, in ring order, under new unique ids) and so go to the server
 * that now owns their routes; a server that is down is tried again each
 * time its breaker allows (every GS_RETRY_MS at most), and once connected
 * takes its routes back.  So one route keeps one server while the set of
 * connected servers does not change; around a change, one route's records
 * can be on two servers at once (the versions order them).
 * A change of the default list moves the connections (unacknowledged
 * batches are re-sent to the new list).  Per-function lists
 * (gman_servers_set(list, function)) are not used by gearsync_send.
 *
 * What can still be lost, each one error-log line with its count: records
 * refused because the queue was full (gearsync_send returned NULL), records
 * not acknowledged when the library is unloaded (after a bounded attempt to
 * deliver them), and batches gearmand answered with ERROR.  A mysqld that
 * dies loses what was queued or unacknowledged, silently.
 *
 * Lifetime: gs_sender_stop (the library destructor) closes the queue, wakes
 * and joins the thread.  The thread resolves host names with getaddrinfo;
 * numeric addresses never touch NSS.
 */
#include "gs_sender.h"
#include "gs_breaker.h"
#include "gs_buf.h"
#include "gs_clock.h"
#include "gs_config.h"
#include "gs_envelope.h"
#include "gs_log.h"
#include "gs_net.h"
#include "gs_queue.h"
#include "gs_servers.h"
#include "gs_timeouts.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define GS_REQ_SUBMIT_JOB_BG 18
#define GS_RES_JOB_CREATED 8
#define GS_RES_ERROR 19
#define GS_PACKET_HEADER 12
#define GS_RBUF 8192           /* largest answer packet accepted */
#define GS_UNIQUE_BUF 64
#define GS_BATCH_LOOK 4096     /* records looked at to fill one batch */
#define GS_RETRY_MS 50         /* a server down: how often to try it */
#define GS_OUT_KEEP (1024UL * 1024UL) /* an idle out buffer above: freed */
#define GS_SENDER_STACK (512UL * 1024UL)

typedef struct {
    uint64_t id;            /* unique id suffix */
    unsigned n;             /* records */
    size_t payload;         /* their payload bytes */
    uint64_t sent_ns;       /* when encoded into the out buffer */
    uint32_t offs[GS_BATCH_RECORDS]; /* ring offsets */
} gs_batch;

/* One connection to a job server.  First-reachable mode uses conn[0] for
   whichever server answers; spread mode keeps conn[i] for server i. */
typedef struct {
    int fd;                      /* -1: not connected */
    char peer[GS_ADDR_LEN];
    int connect_failed_logged;   /* spread: this server's outage was logged */
    int quiet;                   /* polled since the last write: nothing came */
    gs_buf out;                  /* packets to write: out.data[ooff..out.len) */
    size_t ooff;
    unsigned char rbuf[GS_RBUF];
    size_t rlen;
    gs_batch inflight[GS_SENDER_INFLIGHT]; /* ring of unacknowledged batches */
    unsigned ihead, icount;
    uint64_t last_ns;            /* when its last new batch was encoded */
} gs_conn;

enum { GS_SENDER_OFF = 0, GS_SENDER_RUNNING = 1, GS_SENDER_FAILED = 2 };

/* Shared with producers: the queue (its own lock), the eventfd, state. */
static pthread_mutex_t gs_start_lock = PTHREAD_MUTEX_INITIALIZER;
static int gs_state;           /* GS_SENDER_*; atomic, written under start_lock */
static int gs_stop;            /* atomic: the thread must finish */
static gs_queue gs_q;
static int gs_wake_fd = -1;
static pthread_t gs_thread_id;

/* The sender thread's own state. */
static struct {
    gs_route route;              /* the default list */
    int spread;                  /* spread = on (read once, at start) */
    unsigned nconn;              /* connections in use: 1, or route.count */
    gs_conn conn[GS_MAX_SERVERS];
    int owner[GS_MAX_SERVERS];   /* spread: route % nconn -> live conn, -1 */
    int connect_failed_logged;   /* "cannot connect to any" was logged */
    unsigned turn;               /* spread: the connection that goes first */
    uint64_t batched;            /* records put into batches (re-sends not counted) */
    size_t seen_end;             /* the queue's head when it was last looked at */
    uint64_t linger_ns;          /* linger_us (read once, at start) */
    int hold;                    /* this pass: small batches may linger */
    int lingering;               /* this pass: a connection holds records back */
    uint64_t nonce, batches;
    gs_hmac_key key;
    int sign;
    uint64_t refused_logged, errors, resent, requeued;
    uint64_t refused_log_ns;
} S;

/* ------------------------------------------------------------ connection */

static unsigned gs_conn_records(const gs_conn *c)
{
    unsigned recs = 0, i;

    for (i = 0; i < c->icount; i++)
        recs += c->inflight[(c->ihead + i) % GS_SENDER_INFLIGHT].n;
    return recs;
}

/* Spread mode: the batches of a connection that died go back to the queue
   (their records are queued again, in ring order, for the server that now
   owns their route); first-reachable mode keeps them to re-send them on the
   next connection, with their unique ids. */
static void gs_requeue(gs_conn *c)
{
    unsigned i, k;

    for (i = 0; i < c->icount; i++) {
        gs_batch *b = &c->inflight[(c->ihead + i) % GS_SENDER_INFLIGHT];
        for (k = 0; k < b->n; k++)
            gs_queue_rec(&gs_q, b->offs[k])->state = GS_REC_QUEUED;
        S.batched -= b->n;
        S.requeued += b->n;
    }
    c->ihead = c->icount = 0;
}

static void gs_disconnect(gs_conn *c, const char *why)
{
    if (c->fd < 0)
        return;
    if (c->icount > 0) /* an idle connection just reconnects on demand */
        gs_log("gearsync_send: connection to %s %s; %u batches (%u records) "
               "unacknowledged, to be re-sent%s",
               c->peer, why, c->icount, gs_conn_records(c),
               S.spread ? " to the server that now owns their route" : "");
    close(c->fd);
    c->fd = -1;
    c->out.len = c->ooff = 0;
    c->rlen = 0;
    c->quiet = 0;
    if (S.spread)
        gs_requeue(c);
}

static size_t gs_encode(gs_conn *c, gs_batch *b);
static int gs_read(gs_conn *c);

/* Try server k of the list for connection c (its breaker permitting); on
   success queue c's unacknowledged batches again, in order.  0 connected. */
static int gs_try_server(gs_conn *c, unsigned k)
{
    int timeout = gs_timeout_get(GS_TIMEOUT_BG);
    const gs_server *sv = &S.route.servers[k];
    unsigned i;
    int fd;

    if (!gs_breaker_allow(S.route.addrs[k], gs_now_ns()))
        return -1;
    fd = gs_net_connect(sv->host, sv->port, timeout);
    gs_breaker_report(S.route.addrs[k], fd >= 0);
    if (fd < 0)
        return -1;
    c->fd = fd;
    memcpy(c->peer, S.route.addrs[k], sizeof c->peer);
    c->out.len = c->ooff = 0;
    c->rlen = 0;
    c->quiet = 1;
    for (i = 0; i < c->icount; i++) {
        gs_encode(c, &c->inflight[(c->ihead + i) % GS_SENDER_INFLIGHT]);
        S.resent++;
    }
    if (S.connect_failed_logged || c->connect_failed_logged || c->icount > 0)
        gs_log("gearsync_send: connected to %s; re-sending %u "
               "unacknowledged batches",
               c->peer, c->icount);
    S.connect_failed_logged = c->connect_failed_logged = 0;
    return 0;
}

/* Connect what is missing; returns how many connections are up.
   First-reachable: conn[0] to the first server whose breaker lets it
   through.  Spread: conn[i] to server i, for each one down. */
static unsigned gs_connect(void)
{
    unsigned k, live = 0;

    if (!S.spread) {
        gs_conn *c = &S.conn[0];
        for (k = 0; c->fd < 0 && k < S.route.count; k++)
            gs_try_server(c, k);
        live = c->fd >= 0;
    } else {
        for (k = 0; k < S.nconn; k++) {
            gs_conn *c = &S.conn[k];
            if (c->fd < 0 && gs_try_server(c, k) != 0 &&
                !c->connect_failed_logged) {
                gs_log("gearsync_send: cannot connect to %s; its routes go to "
                       "the next live server of %s while its breaker allows "
                       "a retry",
                       S.route.addrs[k], S.route.list);
                c->connect_failed_logged = 1;
            }
            live += c->fd >= 0;
        }
    }
    if (live == 0 && !S.connect_failed_logged) {
        gs_log("gearsync_send: cannot connect to any of %s; records wait in "
               "the queue (%llu now) while each server's breaker allows a "
               "retry",
               S.route.list, (unsigned long long)gs_queue_pending(&gs_q));
        S.connect_failed_logged = 1;
    }
    return live;
}

/* Follow the default list; a change moves the connections. */
static void gs_follow_list(void)
{
    char old[GS_SERVERS_MAX_LEN];
    int rc;
    unsigned k;

    if (S.route.gen == gs_servers_generation())
        return;
    memcpy(old, S.route.list, sizeof old);
    rc = gs_route_refresh(&S.route, NULL);
    if (rc < 0)
        S.route.count = 0;
    if (rc != 0 && strcmp(old, S.route.list) != 0) {
        /* collect the answers of the batches in flight (bounded by their
           deadline) so that only what gearmand never took moves along */
        for (k = 0; k < S.nconn; k++) {
            gs_conn *c = &S.conn[k];
            if (c->fd >= 0 && c->icount > 0) {
                uint64_t due = c->inflight[c->ihead].sent_ns +
                               (uint64_t)gs_timeout_get(GS_TIMEOUT_BG) * 1000000ULL;
                while (c->fd >= 0 && c->icount > 0 && gs_read(c) == 0 &&
                       c->icount > 0 && gs_net_wait(c->fd, POLLIN, due) > 0)
                    ;
            }
            gs_disconnect(c, "closed: the server list changed");
            c->connect_failed_logged = 0;
        }
        S.connect_failed_logged = 0;
    }
    S.nconn = S.spread ? S.route.count : 1;
}

/* ------------------------------------------------------------- batches */

static void gs_put32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* Append batch b's SUBMIT_JOB_BG packet to c's out buffer.  0 on ENOMEM
   (the batch stays unacknowledged and is re-sent on the next connection). */
static size_t gs_encode(gs_conn *c, gs_batch *b)
{
    const gs_rec *first = gs_queue_rec(&gs_q, b->offs[0]);
    char unique[GS_UNIQUE_BUF];
    size_t flen = first->flen, ulen, wlen, size;
    unsigned char *p, *w;
    unsigned i;

    ulen = (size_t)snprintf(unique, sizeof unique, "gs-%016llx-%llx",
                            (unsigned long long)S.nonce,
                            (unsigned long long)b->id);
    wlen = gs_env_size(b->n, b->payload, S.sign);
    size = flen + 1 + ulen + 1 + wlen;
    if (gs_buf_reserve(&c->out, GS_PACKET_HEADER + size))
        return 0;
    p = (unsigned char *)c->out.data + c->out.len;
    memcpy(p, "\0REQ", 4);
    gs_put32(p + 4, GS_REQ_SUBMIT_JOB_BG);
    gs_put32(p + 8, (uint32_t)size);
    p += GS_PACKET_HEADER;
    memcpy(p, gs_rec_function(first), flen);
    p += flen;
    *p++ = '\0';
    memcpy(p, unique, ulen);
    p += ulen;
    *p++ = '\0';
    w = p;
    p = gs_env_begin(p, S.sign);
    for (i = 0; i < b->n; i++) {
        const gs_rec *r = gs_queue_rec(&gs_q, b->offs[i]);
        p = gs_env_record(p, r->version, gs_rec_payload(r), r->plen);
    }
    if (S.sign)
        gs_env_sign(&S.key, gs_rec_function(first), flen, w, (size_t)(p - w),
                    p);
    c->out.len += GS_PACKET_HEADER + size;
    b->sent_ns = gs_now_ns();
    return GS_PACKET_HEADER + size;
}

/* Spread mode: which live connection owns each route (route % nconn): that
   server when it is connected, else the next connected one in ring order. */
static void gs_owners(void)
{
    unsigned i, k;

    for (i = 0; i < S.nconn; i++) {
        S.owner[i] = -1;
        for (k = 0; k < S.nconn; k++) {
            unsigned j = (i + k) % S.nconn;
            if (S.conn[j].fd >= 0) {
                S.owner[i] = (int)j;
                break;
            }
        }
    }
}

/* Whether connection ci may take record r: always in first-reachable mode;
   in spread mode when it owns r's route, or r has none. */
static int gs_mine(const gs_rec *r, unsigned ci)
{
    return !S.spread || r->route == 0 ||
           S.owner[r->route % S.nconn] == (int)ci;
}

/* Gather c's next batch: the queued records it may take of the function of
   the oldest one.  The walk starts at the ring's tail (only this thread
   moves it); before the first such record lie the records in flight and,
   in spread mode, those of other servers (at most GS_BATCH_LOOK per
   connection are looked at).  1 a batch was queued for writing, 0 nothing
   to send. */
static int gs_next_batch(gs_conn *c)
{
    unsigned ci = (unsigned)(c - S.conn);
    size_t end = gs_queue_end(&gs_q), off;
    gs_batch *b;
    const gs_rec *first;
    unsigned looked = 0, skipped = 0, skip_max = GS_BATCH_LOOK * S.nconn;
    int unrouted = 0;

    S.seen_end = end;
    off = gs_queue_skip(&gs_q, gs_q.tail, end);
    while (off != end) {
        const gs_rec *r = gs_queue_rec(&gs_q, off);
        if (r->state == GS_REC_QUEUED && gs_mine(r, ci))
            break;
        if (S.spread && ++skipped > skip_max)
            return 0;
        off = gs_queue_skip(&gs_q, off + r->size, end);
    }
    if (off == end)
        return 0;
    first = gs_queue_rec(&gs_q, off);
    b = &c->inflight[(c->ihead + c->icount) % GS_SENDER_INFLIGHT];
    b->id = ++S.batches;
    b->n = 0;
    b->payload = 0;
    while (off != end && b->n < GS_BATCH_RECORDS && looked++ < GS_BATCH_LOOK) {
        gs_rec *r = gs_queue_rec(&gs_q, off);
        if (r->state == GS_REC_QUEUED && r->flen == first->flen &&
            gs_mine(r, ci) &&
            memcmp(gs_rec_function(r), gs_rec_function(first), r->flen) == 0) {
            if (b->n > 0 && b->payload + r->plen > GS_BATCH_BYTES)
                break;
            r->state = GS_REC_SENT;
            b->offs[b->n++] = (uint32_t)off;
            b->payload += r->plen;
            unrouted |= r->route == 0;
        }
        off = gs_queue_skip(&gs_q, off + r->size, end);
    }
    S.batched += b->n;
    c->icount++;
    if (S.spread && unrouted) /* the next records without a route: the next connection */
        S.turn = (ci + 1) % S.nconn;
    if (gs_encode(c, b) == 0)
        gs_disconnect(c, "dropped: out of memory for a batch");
    else
        c->last_ns = b->sent_ns; /* the linger counts from here */
    return 1;
}

/* c's oldest batch was answered: its records are done. */
static void gs_batch_done(gs_conn *c, int refused)
{
    gs_batch *b;
    unsigned i;

    if (c->icount == 0)
        return;
    b = &c->inflight[c->ihead];
    for (i = 0; i < b->n; i++)
        gs_queue_rec(&gs_q, b->offs[i])->state = GS_REC_DONE;
    if (refused) {
        S.errors += b->n;
        if ((S.errors & (S.errors - 1)) == 0 || b->n > 1) /* 1, 2, 4, ... */
            gs_log("gearsync_send: %s refused a batch of %u records (lost; "
                   "%llu refused so far)",
                   c->peer, b->n, (unsigned long long)S.errors);
    }
    c->ihead = (c->ihead + 1) % GS_SENDER_INFLIGHT;
    c->icount--;
    gs_queue_release(&gs_q);
}

/* ---------------------------------------------------------------- I/O */

static uint32_t gs_be32(const unsigned char *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 |
           (uint32_t)b[3];
}

/* Read every answer available now on c.  0 ok, -1 the connection is dead
   (closed). */
static int gs_read(gs_conn *c)
{
    for (;;) {
        ssize_t n;
        size_t off = 0;
        int short_read;

        n = recv(c->fd, c->rbuf + c->rlen, sizeof c->rbuf - c->rlen,
                 MSG_DONTWAIT);
        if (n == 0) {
            gs_disconnect(c, "lost (closed by the server)");
            return -1;
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            gs_disconnect(c, errno == ECONNRESET ? "lost (reset)" : "lost");
            return -1;
        }
        short_read = (size_t)n < sizeof c->rbuf - c->rlen;
        c->rlen += (size_t)n;
        while (c->rlen - off >= GS_PACKET_HEADER) {
            const unsigned char *h = c->rbuf + off;
            uint32_t type = gs_be32(h + 4), size = gs_be32(h + 8);
            if (memcmp(h, "\0RES", 4) != 0 || size > GS_RBUF - GS_PACKET_HEADER) {
                gs_disconnect(c, "dropped (bad answer)");
                return -1;
            }
            if (c->rlen - off < GS_PACKET_HEADER + (size_t)size)
                break;
            if (type == GS_RES_JOB_CREATED || type == GS_RES_ERROR)
                gs_batch_done(c, type == GS_RES_ERROR);
            off += GS_PACKET_HEADER + size;
        }
        memmove(c->rbuf, c->rbuf + off, c->rlen - off);
        c->rlen -= off;
        if (short_read) /* drained (more would wake the poll): spare a recv */
            return 0;
    }
}

/* Write what c's out buffer holds.  0 ok (maybe partly), -1 dead. */
static int gs_write(gs_conn *c)
{
    while (c->ooff < c->out.len) {
        ssize_t n = send(c->fd, c->out.data + c->ooff, c->out.len - c->ooff,
                         MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0) {
            c->ooff += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        gs_disconnect(c, "lost (send failed)");
        return -1;
    }
    c->out.len = c->ooff = 0;
    if (c->out.cap > GS_OUT_KEEP) { /* after a huge record */
        free(c->out.data);
        c->out.data = NULL;
        c->out.cap = 0;
    }
    return 0;
}

static void gs_log_refused(uint64_t now, uint64_t refused)
{
    if (refused == S.refused_logged || now - S.refused_log_ns < 1000000000ULL)
        return;
    gs_log("gearsync_send: queue full (%zu MiB queued or unacknowledged): "
           "%llu records refused (NULL returned) since the last report",
           gs_q.cap >> 20, (unsigned long long)(refused - S.refused_logged));
    S.refused_logged = refused;
    S.refused_log_ns = now;
}

/* --------------------------------------------------------------- thread */

/* One connection's turn: read what came (unless just polled quiet), fill
   its window, write, and check its oldest batch's deadline (*wait_ns is
   lowered to it).  0 ok; -1 something changed (a connection died, a late
   answer came): the loop starts over. */
static int gs_conn_turn(gs_conn *c, uint64_t now, uint64_t tmo_ns,
                        uint64_t *wait_ns)
{
    uint64_t due;

    if (!c->quiet && gs_read(c) != 0)
        return -1;
    c->quiet = 0;
    if (S.hold && c->icount < GS_SENDER_INFLIGHT && now < c->last_ns + S.linger_ns) {
        /* linger: the records queued so far would make a small job; let
           them gather until linger after this connection's last one */
        S.lingering = 1;
        if (c->last_ns + S.linger_ns - now < *wait_ns)
            *wait_ns = c->last_ns + S.linger_ns - now;
    } else {
        while (c->fd >= 0 && c->icount < GS_SENDER_INFLIGHT && gs_next_batch(c))
            ;
    }
    if (c->fd < 0 || gs_write(c) != 0)
        return -1;
    if (c->icount == 0)
        return 0;
    due = c->inflight[c->ihead].sent_ns + tmo_ns;
    if (now >= due) {
        char why[64];
        if (gs_read(c) != 0) /* a late answer may be waiting */
            return -1;
        if (c->icount > 0 && gs_now_ns() >= c->inflight[c->ihead].sent_ns + tmo_ns) {
            snprintf(why, sizeof why, "timed out (no answer in %d ms)",
                     gs_timeout_get(GS_TIMEOUT_BG));
            gs_breaker_report(c->peer, 0);
            gs_disconnect(c, why);
        }
        return -1;
    }
    if (due - now < *wait_ns)
        *wait_ns = due - now;
    return 0;
}

/* The loop.  Acknowledgements are read lazily: with a batch in flight and
   nothing queued behind it, the sender sleeps on its eventfd (and the
   batch's deadline) only, and reads the answer with the recv it makes before
   the next write anyway -- a lone row costs it one wakeup, not two.  It
   watches a socket when its connection is idle (to see a close at once),
   and when records wait behind the batch in flight, a flush waits, or the
   library unloads.  In spread mode every connection takes its turn. */
static void *gs_sender_main(void *arg)
{
    struct sched_param batch = {0};
    uint64_t stop_deadline = 0;

    (void)arg;
    pthread_setname_np(pthread_self(), "gearsync_send"); /* in ps / top -H */
    /* SCHED_BATCH: a woken sender does not preempt the server thread that woke
       it (a trigger mid-statement); it runs beside it or when it blocks. */
    pthread_setschedparam(pthread_self(), SCHED_BATCH, &batch);
    for (;;) {
        struct pollfd pfd[GS_MAX_SERVERS + 1];
        gs_conn *pconn[GS_MAX_SERVERS + 1];
        uint64_t now = gs_now_ns(), wait_ns = UINT64_MAX;
        uint64_t tmo_ns = (uint64_t)gs_timeout_get(GS_TIMEOUT_BG) * 1000000ULL;
        gs_queue_stats st = gs_queue_look(&gs_q);
        unsigned k, live = 0, room = 0;
        int queued, again = 0, rc;
        nfds_t nfds = 0;

        if (__atomic_load_n(&gs_stop, __ATOMIC_ACQUIRE)) {
            if (stop_deadline == 0)
                stop_deadline = now + tmo_ns;
            if (st.pending == 0 || now >= stop_deadline)
                break;
            wait_ns = stop_deadline - now;
        }
        gs_log_refused(now, st.refused);
        gs_follow_list();
        if (st.pending > 0) {
            live = gs_connect();
            if (live == 0 && stop_deadline != 0)
                break; /* unloading, no server: do not wait */
            if (live < S.nconn) /* try the missing ones again soon */
                wait_ns = wait_ns < GS_RETRY_MS * 1000000ULL
                              ? wait_ns : GS_RETRY_MS * 1000000ULL;
        }
        if (S.spread)
            gs_owners();
        /* linger only for what makes small jobs, never while a flush
           waits or the library unloads */
        S.hold = S.linger_ns > 0 && stop_deadline == 0 && st.waiters == 0 &&
                 st.accepted - S.batched < GS_BATCH_RECORDS;
        S.lingering = 0;
        live = 0;
        /* spread: S.turn (moved on by gs_next_batch when a connection took
           records without a route) goes first, so that those go to all */
        for (k = 0; k < S.nconn && !again; k++) {
            gs_conn *c = &S.conn[(S.turn + k) % S.nconn];
            if (c->fd < 0)
                continue;
            if (gs_conn_turn(c, now, tmo_ns, &wait_ns) != 0) {
                again = 1;
                break;
            }
            live++;
            room += c->icount < GS_SENDER_INFLIGHT;
        }
        if (again)
            continue;
        queued = st.accepted > S.batched;
        if (live > 0 && room == 0 && queued) {
            /* every window full, records queued behind: a new record changes
               nothing, no wakeup wanted */
        } else if (S.lingering) {
            /* records wait for company until the linger ends (wait_ns); a
               new record needs no wakeup, a flush's kick does */
            pfd[nfds].fd = gs_wake_fd;
            pfd[nfds].events = POLLIN;
            pconn[nfds] = NULL;
            nfds++;
        } else if (live > 0 || st.pending == 0) {
            if (!gs_queue_sleep(&gs_q, live > 0 ? S.seen_end : st.head))
                continue; /* records arrived meanwhile */
            pfd[nfds].fd = gs_wake_fd;
            pfd[nfds].events = POLLIN;
            pconn[nfds] = NULL;
            nfds++;
        }
        for (k = 0; k < S.nconn; k++) {
            gs_conn *c = &S.conn[k];
            /* records queued behind a batch in flight: the answer is awaited */
            int eager = c->icount > 0 &&
                        (queued || st.waiters > 0 || stop_deadline);
            short ev;
            if (c->fd < 0)
                continue;
            ev = (short)((c->icount == 0 || eager ? POLLIN : 0) |
                         (c->ooff < c->out.len ? POLLOUT : 0));
            if (ev == 0)
                continue;
            pfd[nfds].fd = c->fd;
            pfd[nfds].events = ev;
            pconn[nfds] = c;
            nfds++;
        }
        if (wait_ns == UINT64_MAX) {
            rc = ppoll(pfd, nfds, NULL, NULL);
        } else {
            struct timespec ts;
            ts.tv_sec = (time_t)(wait_ns / 1000000000ULL);
            ts.tv_nsec = (long)(wait_ns % 1000000000ULL);
            rc = ppoll(pfd, nfds, &ts, NULL);
        }
        if (rc < 0) {
            if (errno != EINTR)
                gs_log("gearsync_send: poll failed: %s", strerror(errno));
            continue;
        }
        for (nfds_t i = 0; i < nfds; i++) {
            gs_conn *c = pconn[i];
            if (c == NULL) {
                uint64_t v;
                if ((pfd[i].revents & POLLIN) && read(gs_wake_fd, &v, sizeof v) < 0) {
                    /* EAGAIN: another wake was already read */
                }
            } else if (c->fd >= 0 && (pfd[i].events & POLLIN)) {
                if (pfd[i].revents & (POLLIN | POLLERR | POLLHUP))
                    c->quiet = gs_read(c) == 0;
                else
                    c->quiet = 1; /* polled: nothing came, not even a close */
            }
        }
    }
    return NULL;
}

/* gearsync_send_flush is waiting: wake the sender so that it reads the
   answers now rather than lazily. */
static void gs_sender_kick(void)
{
    uint64_t one = 1;

    if (write(gs_wake_fd, &one, sizeof one) < 0) {
        /* EAGAIN: the counter is full, the sender is awake anyway */
    }
}

static uint64_t gs_nonce_new(void)
{
    uint64_t n = 0;

    if (getrandom(&n, sizeof n, GRND_NONBLOCK) != (ssize_t)sizeof n)
        n = gs_clock_ns(CLOCK_REALTIME) ^ ((uint64_t)getpid() << 40) ^
            (uint64_t)(uintptr_t)&n;
    return n;
}

/* Start the thread (under gs_start_lock).  0 running. */
static int gs_sender_start(void)
{
    const unsigned char *secret;
    size_t slen = gs_config_secret(&secret);
    pthread_attr_t attr;
    sigset_t all, old;
    unsigned k;
    int rc;

    if (gs_queue_init(&gs_q, gs_config_queue_bytes()))
        return -1;
    gs_wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (gs_wake_fd < 0) {
        gs_queue_destroy(&gs_q);
        return -1;
    }
    memset(&S, 0, sizeof S);
    for (k = 0; k < GS_MAX_SERVERS; k++)
        S.conn[k].fd = -1;
    S.nonce = gs_nonce_new();
    S.sign = slen > 0;
    if (S.sign)
        gs_hmac_key_init(&S.key, secret, slen);
    S.spread = gs_config_spread();
    S.linger_ns = (uint64_t)gs_config_linger_us() * 1000ULL;
    gs_route_refresh(&S.route, NULL);
    S.nconn = S.spread ? S.route.count : 1;
    /* the thread takes no signal of mysqld's */
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, GS_SENDER_STACK);
    rc = pthread_create(&gs_thread_id, &attr, gs_sender_main, NULL);
    pthread_attr_destroy(&attr);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        close(gs_wake_fd);
        gs_wake_fd = -1;
        gs_queue_destroy(&gs_q);
        return -1;
    }
    return 0;
}

static int gs_sender_ready(void)
{
    int state = __atomic_load_n(&gs_state, __ATOMIC_ACQUIRE);

    if (state == GS_SENDER_RUNNING)
        return 0;
    if (state == GS_SENDER_FAILED)
        return -1;
    pthread_mutex_lock(&gs_start_lock);
    if (gs_state == GS_SENDER_OFF) {
        if (gs_sender_start() == 0) {
            __atomic_store_n(&gs_state, GS_SENDER_RUNNING, __ATOMIC_RELEASE);
        } else {
            gs_log("gearsync_send: cannot start the sender thread (out of "
                   "memory or threads); gearsync_send returns NULL");
            __atomic_store_n(&gs_state, GS_SENDER_FAILED, __ATOMIC_RELEASE);
        }
    }
    state = gs_state;
    pthread_mutex_unlock(&gs_start_lock);
    return state == GS_SENDER_RUNNING ? 0 : -1;
}

int gs_sender_submit(const char *function, size_t flen, const void *payload,
                     size_t plen, uint32_t route, uint64_t version)
{
    int wake;

    if (flen == 0 || flen > GS_FUNCTION_NAME_MAX || gs_sender_ready())
        return -1;
    if (GS_REC_HEADER + flen + plen > gs_queue_record_max(&gs_q))
        return -1;
    if (gs_queue_put(&gs_q, function, (uint16_t)flen, payload, (uint32_t)plen,
                     route, version, &wake) == 0)
        return -1;
    if (wake)
        gs_sender_kick();
    return 0;
}

long long gs_sender_flush(int timeout_ms)
{
    if (__atomic_load_n(&gs_state, __ATOMIC_ACQUIRE) != GS_SENDER_RUNNING)
        return 0;
    return (long long)gs_queue_wait_done(
        &gs_q, gs_now_ns() + (uint64_t)timeout_ms * 1000000ULL, gs_sender_kick);
}

void gs_sender_stop(void)
{
    uint64_t lost;
    unsigned k;

    pthread_mutex_lock(&gs_start_lock);
    if (gs_state == GS_SENDER_RUNNING) {
        gs_queue_close(&gs_q);
        __atomic_store_n(&gs_stop, 1, __ATOMIC_RELEASE);
        gs_sender_kick();
        pthread_join(gs_thread_id, NULL);
        lost = gs_queue_pending(&gs_q);
        if (lost > 0)
            gs_log("gearsync_send: library unloaded with %llu records not "
                   "acknowledged by gearmand (lost)",
                   (unsigned long long)lost);
        for (k = 0; k < GS_MAX_SERVERS; k++) {
            if (S.conn[k].fd >= 0)
                close(S.conn[k].fd);
            free(S.conn[k].out.data);
        }
        memset(&S.key, 0, sizeof S.key);
        close(gs_wake_fd);
        gs_wake_fd = -1;
        gs_queue_destroy(&gs_q);
    }
    gs_state = GS_SENDER_OFF;
    pthread_mutex_unlock(&gs_start_lock);
}
