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
 *     breaker (gs_breaker.c, shared with gman_*) lets it through;
 *   - while fewer than GS_SENDER_INFLIGHT batches are unacknowledged, takes
 *     the oldest queued record's Gearman function and gathers the queued
 *     records of that function (up to GS_BATCH_RECORDS / GS_BATCH_BYTES)
 *     into one SUBMIT_JOB_BG whose workload is an envelope (version and
 *     payload per record, HMAC when a secret is set) and whose unique id is
 *     the batch's ("gs-<nonce>-<batch>"); nothing waits when idle, so a lone
 *     row goes out at once, and rows arriving while a batch is in flight
 *     batch up;
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
 * A change of the default list moves the connection (unacknowledged
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
#include <unistd.h>

#define GS_REQ_SUBMIT_JOB_BG 18
#define GS_RES_JOB_CREATED 8
#define GS_RES_ERROR 19
#define GS_PACKET_HEADER 12
#define GS_RBUF 8192           /* largest answer packet accepted */
#define GS_UNIQUE_BUF 64
#define GS_BATCH_LOOK 4096     /* records looked at to fill one batch */
#define GS_RETRY_MS 50         /* disconnected: how often to try a server */
#define GS_OUT_KEEP (1024UL * 1024UL) /* an idle out buffer above: freed */
#define GS_SENDER_STACK (512UL * 1024UL)

typedef struct {
    uint64_t id;            /* unique id suffix */
    unsigned n;             /* records */
    size_t payload;         /* their payload bytes */
    uint64_t sent_ns;       /* when encoded into the out buffer */
    uint32_t offs[GS_BATCH_RECORDS]; /* ring offsets */
} gs_batch;

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
    int fd;                      /* -1: not connected */
    char peer[GS_ADDR_LEN];
    gs_route route;              /* the default list */
    int connect_failed_logged;
    gs_buf out;                  /* packets to write: out.data[ooff..out.len) */
    size_t ooff;
    unsigned char rbuf[GS_RBUF];
    size_t rlen;
    gs_batch inflight[GS_SENDER_INFLIGHT]; /* ring of unacknowledged batches */
    unsigned ihead, icount;
    uint64_t batched;            /* records put into batches (re-sends not counted) */
    size_t seen_end;             /* the queue's head when it was last looked at */
    uint64_t nonce, batches;
    gs_hmac_key key;
    int sign;
    uint64_t refused_logged, errors, resent;
    uint64_t refused_log_ns;
} S;

/* ------------------------------------------------------------ connection */

static void gs_disconnect(const char *why)
{
    unsigned recs = 0, i;

    if (S.fd < 0)
        return;
    for (i = 0; i < S.icount; i++)
        recs += S.inflight[(S.ihead + i) % GS_SENDER_INFLIGHT].n;
    if (S.icount > 0) /* an idle connection just reconnects on demand */
        gs_log("gearsync_send: connection to %s %s; %u batches (%u records) "
               "unacknowledged, to be re-sent",
               S.peer, why, S.icount, recs);
    close(S.fd);
    S.fd = -1;
    S.out.len = S.ooff = 0;
    S.rlen = 0;
}

static size_t gs_encode(gs_batch *b);
static int gs_read(void);

/* Connect to the first server whose breaker lets it through, then queue
   the unacknowledged batches again, in order.  0 connected. */
static int gs_connect(void)
{
    int timeout = gs_timeout_get(GS_TIMEOUT_BG);
    unsigned k, i;

    for (k = 0; k < S.route.count; k++) {
        const gs_server *sv = &S.route.servers[k];
        int fd;

        if (!gs_breaker_allow(S.route.addrs[k], gs_now_ns()))
            continue;
        fd = gs_net_connect(sv->host, sv->port, timeout);
        gs_breaker_report(S.route.addrs[k], fd >= 0);
        if (fd < 0)
            continue;
        S.fd = fd;
        memcpy(S.peer, S.route.addrs[k], sizeof S.peer);
        S.out.len = S.ooff = 0;
        S.rlen = 0;
        for (i = 0; i < S.icount; i++) {
            gs_encode(&S.inflight[(S.ihead + i) % GS_SENDER_INFLIGHT]);
            S.resent++;
        }
        if (S.connect_failed_logged || S.icount > 0)
            gs_log("gearsync_send: connected to %s; re-sending %u "
                   "unacknowledged batches",
                   S.peer, S.icount);
        S.connect_failed_logged = 0;
        return 0;
    }
    if (!S.connect_failed_logged) {
        gs_log("gearsync_send: cannot connect to any of %s; records wait in "
               "the queue (%llu now) while each server's breaker allows a "
               "retry",
               S.route.list, (unsigned long long)gs_queue_pending(&gs_q));
        S.connect_failed_logged = 1;
    }
    return -1;
}

/* Follow the default list; a change moves the connection. */
static void gs_follow_list(void)
{
    char old[GS_SERVERS_MAX_LEN];
    int rc;

    if (S.route.gen == gs_servers_generation())
        return;
    memcpy(old, S.route.list, sizeof old);
    rc = gs_route_refresh(&S.route, NULL);
    if (rc < 0)
        S.route.count = 0;
    if (rc != 0 && strcmp(old, S.route.list) != 0) {
        /* collect the answers of the batches in flight (bounded by their
           deadline) so that only what gearmand never took moves along */
        if (S.fd >= 0 && S.icount > 0) {
            uint64_t due = S.inflight[S.ihead].sent_ns +
                           (uint64_t)gs_timeout_get(GS_TIMEOUT_BG) * 1000000ULL;
            while (S.fd >= 0 && S.icount > 0 && gs_read() == 0 &&
                   S.icount > 0 && gs_net_wait(S.fd, POLLIN, due) > 0)
                ;
        }
        gs_disconnect("closed: the server list changed");
        S.connect_failed_logged = 0;
    }
}

/* ------------------------------------------------------------- batches */

static void gs_put32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* Append batch b's SUBMIT_JOB_BG packet to the out buffer.  0 on ENOMEM
   (the batch stays unacknowledged and is re-sent on the next connection). */
static size_t gs_encode(gs_batch *b)
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
    if (gs_buf_reserve(&S.out, GS_PACKET_HEADER + size))
        return 0;
    p = (unsigned char *)S.out.data + S.out.len;
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
    S.out.len += GS_PACKET_HEADER + size;
    b->sent_ns = gs_now_ns();
    return GS_PACKET_HEADER + size;
}

/* Gather the next batch: the queued records of the oldest queued record's
   function.  The walk starts at the ring's tail (only this thread moves
   it): before the first queued record lie at most the records in flight.
   1 a batch was queued for writing, 0 nothing to send. */
static int gs_next_batch(void)
{
    size_t end = gs_queue_end(&gs_q), off;
    gs_batch *b;
    const gs_rec *first;
    unsigned looked = 0;

    S.seen_end = end;
    off = gs_queue_skip(&gs_q, gs_q.tail, end);
    while (off != end && gs_queue_rec(&gs_q, off)->state != GS_REC_QUEUED)
        off = gs_queue_skip(&gs_q, off + gs_queue_rec(&gs_q, off)->size, end);
    if (off == end)
        return 0;
    first = gs_queue_rec(&gs_q, off);
    b = &S.inflight[(S.ihead + S.icount) % GS_SENDER_INFLIGHT];
    b->id = ++S.batches;
    b->n = 0;
    b->payload = 0;
    while (off != end && b->n < GS_BATCH_RECORDS && looked++ < GS_BATCH_LOOK) {
        gs_rec *r = gs_queue_rec(&gs_q, off);
        if (r->state == GS_REC_QUEUED && r->flen == first->flen &&
            memcmp(gs_rec_function(r), gs_rec_function(first), r->flen) == 0) {
            if (b->n > 0 && b->payload + r->plen > GS_BATCH_BYTES)
                break;
            r->state = GS_REC_SENT;
            b->offs[b->n++] = (uint32_t)off;
            b->payload += r->plen;
        }
        off = gs_queue_skip(&gs_q, off + r->size, end);
    }
    S.batched += b->n;
    S.icount++;
    if (gs_encode(b) == 0)
        gs_disconnect("dropped: out of memory for a batch");
    return 1;
}

/* The oldest batch was answered: its records are done. */
static void gs_batch_done(int refused)
{
    gs_batch *b;
    unsigned i;

    if (S.icount == 0)
        return;
    b = &S.inflight[S.ihead];
    for (i = 0; i < b->n; i++)
        gs_queue_rec(&gs_q, b->offs[i])->state = GS_REC_DONE;
    if (refused) {
        S.errors += b->n;
        if ((S.errors & (S.errors - 1)) == 0 || b->n > 1) /* 1, 2, 4, ... */
            gs_log("gearsync_send: %s refused a batch of %u records (lost; "
                   "%llu refused so far)",
                   S.peer, b->n, (unsigned long long)S.errors);
    }
    S.ihead = (S.ihead + 1) % GS_SENDER_INFLIGHT;
    S.icount--;
    gs_queue_release(&gs_q);
}

/* ---------------------------------------------------------------- I/O */

static uint32_t gs_be32(const unsigned char *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 |
           (uint32_t)b[3];
}

/* Read every answer available now.  0 ok, -1 the connection is dead
   (closed). */
static int gs_read(void)
{
    for (;;) {
        ssize_t n;
        size_t off = 0;
        int short_read;

        n = recv(S.fd, S.rbuf + S.rlen, sizeof S.rbuf - S.rlen, MSG_DONTWAIT);
        if (n == 0) {
            gs_disconnect("lost (closed by the server)");
            return -1;
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            gs_disconnect(errno == ECONNRESET ? "lost (reset)" : "lost");
            return -1;
        }
        short_read = (size_t)n < sizeof S.rbuf - S.rlen;
        S.rlen += (size_t)n;
        while (S.rlen - off >= GS_PACKET_HEADER) {
            const unsigned char *h = S.rbuf + off;
            uint32_t type = gs_be32(h + 4), size = gs_be32(h + 8);
            if (memcmp(h, "\0RES", 4) != 0 || size > GS_RBUF - GS_PACKET_HEADER) {
                gs_disconnect("dropped (bad answer)");
                return -1;
            }
            if (S.rlen - off < GS_PACKET_HEADER + (size_t)size)
                break;
            if (type == GS_RES_JOB_CREATED || type == GS_RES_ERROR)
                gs_batch_done(type == GS_RES_ERROR);
            off += GS_PACKET_HEADER + size;
        }
        memmove(S.rbuf, S.rbuf + off, S.rlen - off);
        S.rlen -= off;
        if (short_read) /* drained (more would wake the poll): spare a recv */
            return 0;
    }
}

/* Write what the out buffer holds.  0 ok (maybe partly), -1 dead. */
static int gs_write(void)
{
    while (S.ooff < S.out.len) {
        ssize_t n = send(S.fd, S.out.data + S.ooff, S.out.len - S.ooff,
                         MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0) {
            S.ooff += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        gs_disconnect("lost (send failed)");
        return -1;
    }
    S.out.len = S.ooff = 0;
    if (S.out.cap > GS_OUT_KEEP) { /* after a huge record */
        free(S.out.data);
        S.out.data = NULL;
        S.out.cap = 0;
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

/* The loop.  Acknowledgements are read lazily: with a batch in flight and
   nothing queued behind it, the sender sleeps on its eventfd (and the
   batch's deadline) only, and reads the answer with the recv it makes before
   the next write anyway -- a lone row costs it one wakeup, not two.  It
   watches the socket when idle (to see a close at once), and when records
   wait behind the batch in flight, a flush waits, or the library unloads. */
static void *gs_sender_main(void *arg)
{
    struct sched_param batch = {0};
    uint64_t stop_deadline = 0;
    int quiet = 0; /* polled since the last write: no answer, no close */

    (void)arg;
    pthread_setname_np(pthread_self(), "gearsync_send"); /* in ps / top -H */
    /* SCHED_BATCH: a woken sender does not preempt the server thread that woke
       it (a trigger mid-statement); it runs beside it or when it blocks. */
    pthread_setschedparam(pthread_self(), SCHED_BATCH, &batch);
    for (;;) {
        struct pollfd pfd[2];
        uint64_t now = gs_now_ns(), wait_ns = UINT64_MAX;
        uint64_t tmo_ns = (uint64_t)gs_timeout_get(GS_TIMEOUT_BG) * 1000000ULL;
        gs_queue_stats st = gs_queue_look(&gs_q);
        int eager, rc;
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
        if (S.fd < 0 && st.pending > 0) {
            if (gs_connect() == 0) {
                quiet = 1;
            } else {
                if (stop_deadline != 0)
                    break; /* unloading, no server: do not wait */
                wait_ns = GS_RETRY_MS * 1000000ULL;
            }
        }
        if (S.fd >= 0) {
            /* answers that came, and a close by gearmand, are seen before
               writing: unless the socket was just polled quiet, read it */
            if (!quiet && gs_read() != 0)
                continue;
            quiet = 0;
            while (S.icount < GS_SENDER_INFLIGHT && gs_next_batch())
                ;
            if (S.fd >= 0 && gs_write() != 0)
                continue;
        }
        if (S.fd >= 0 && S.icount > 0) {
            uint64_t due = S.inflight[S.ihead].sent_ns + tmo_ns;
            if (now >= due) {
                char why[64];
                if (gs_read() != 0) /* a late answer may be waiting */
                    continue;
                if (S.icount > 0 &&
                    gs_now_ns() >= S.inflight[S.ihead].sent_ns + tmo_ns) {
                    snprintf(why, sizeof why, "timed out (no answer in %d ms)",
                             gs_timeout_get(GS_TIMEOUT_BG));
                    gs_breaker_report(S.peer, 0);
                    gs_disconnect(why);
                }
                continue;
            }
            if (due - now < wait_ns)
                wait_ns = due - now;
        }
        /* records queued behind a full window: the answer is awaited */
        eager = S.fd >= 0 && S.icount > 0 &&
                (st.accepted > S.batched || st.waiters > 0 || stop_deadline);
        if (S.fd >= 0 && S.icount == GS_SENDER_INFLIGHT &&
            st.accepted > S.batched) {
            /* a new record changes nothing: no wakeup wanted */
        } else if (S.fd >= 0 || st.pending == 0) {
            if (!gs_queue_sleep(&gs_q, S.fd >= 0 ? S.seen_end : st.head))
                continue; /* records arrived meanwhile */
            pfd[nfds].fd = gs_wake_fd;
            pfd[nfds].events = POLLIN;
            nfds++;
        }
        if (S.fd >= 0 && (S.icount == 0 || eager || S.ooff < S.out.len)) {
            pfd[nfds].fd = S.fd;
            pfd[nfds].events = (short)((S.icount == 0 || eager ? POLLIN : 0) |
                                       (S.ooff < S.out.len ? POLLOUT : 0));
            nfds++;
        }
        rc = poll(pfd, nfds,
                  wait_ns == UINT64_MAX ? -1 : (int)((wait_ns + 999999) / 1000000));
        if (rc < 0 && errno != EINTR)
            gs_log("gearsync_send: poll failed: %s", strerror(errno));
        for (nfds_t i = 0; rc > 0 && i < nfds; i++) {
            if (pfd[i].fd == gs_wake_fd) {
                uint64_t v;
                if ((pfd[i].revents & POLLIN) && read(gs_wake_fd, &v, sizeof v) < 0) {
                    /* EAGAIN: another wake was already read */
                }
            } else if (S.fd >= 0 && (pfd[i].events & POLLIN)) {
                if (pfd[i].revents & (POLLIN | POLLERR | POLLHUP))
                    quiet = gs_read() == 0;
                else
                    quiet = 1; /* polled: nothing came, not even a close */
            }
        }
        if (rc == 0 && S.fd >= 0 && nfds > 0 && pfd[nfds - 1].fd == S.fd &&
            (pfd[nfds - 1].events & POLLIN))
            quiet = 1;
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
    int rc;

    if (gs_queue_init(&gs_q, gs_config_queue_bytes()))
        return -1;
    gs_wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (gs_wake_fd < 0) {
        gs_queue_destroy(&gs_q);
        return -1;
    }
    memset(&S, 0, sizeof S);
    S.fd = -1;
    S.nonce = gs_nonce_new();
    S.sign = slen > 0;
    if (S.sign)
        gs_hmac_key_init(&S.key, secret, slen);
    gs_route_refresh(&S.route, NULL);
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
        if (S.fd >= 0)
            close(S.fd);
        free(S.out.data);
        memset(&S.key, 0, sizeof S.key);
        close(gs_wake_fd);
        gs_wake_fd = -1;
        gs_queue_destroy(&gs_q);
    }
    gs_state = GS_SENDER_OFF;
    pthread_mutex_unlock(&gs_start_lock);
}
