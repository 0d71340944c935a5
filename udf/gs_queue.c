/*
 * gs_queue.c -- the bounded record ring of gearsync_send (no SQL symbols),
 * see gs_queue.h.
 *
 * Layout: records are placed at the head, 8-aligned.  A record that does not
 * fit before the ring's end goes to offset 0; the bytes skipped at the end
 * are a pad record (or, when fewer than a header's bytes are left, skipped
 * implicitly).  `used` counts live and skipped bytes between tail and head;
 * a placement must leave at least one byte free, so head == tail means
 * empty.  The consumer frees records in ring order once they are done.
 */
#include "gs_queue.h"
#include "gs_clock.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

int gs_queue_init(gs_queue *q, size_t cap)
{
    pthread_condattr_t ca;

    memset(q, 0, sizeof *q);
    cap &= ~(size_t)7;
    q->ring = malloc(cap);
    if (q->ring == NULL)
        return -1;
    q->cap = cap;
    pthread_mutex_init(&q->lock, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&q->done_cond, &ca);
    pthread_condattr_destroy(&ca);
    return 0;
}

void gs_queue_destroy(gs_queue *q)
{
    if (q->ring == NULL)
        return;
    pthread_cond_destroy(&q->done_cond);
    pthread_mutex_destroy(&q->lock);
    free(q->ring);
    q->ring = NULL;
}

/* Where a record of need bytes goes (*pos) and how many bytes at the ring's
   end it skips (*waste).  0: no room. */
static int gs_queue_fit(const gs_queue *q, size_t need, size_t *pos,
                        size_t *waste)
{
    *waste = 0;
    if (q->head >= q->tail) { /* free: [head, cap) and [0, tail) */
        if (q->cap - q->head >= need) {
            *pos = q->head;
        } else {
            if (need > q->tail)
                return 0;
            *waste = q->cap - q->head;
            *pos = 0;
        }
    } else { /* free: [head, tail) */
        if (need > q->tail - q->head)
            return 0;
        *pos = q->head;
    }
    return q->used + *waste + need < q->cap;
}

uint64_t gs_queue_put(gs_queue *q, const char *function, uint16_t flen,
                      const void *payload, uint32_t plen, uint32_t route,
                      uint64_t version, int *wake)
{
    size_t need = (GS_REC_HEADER + flen + (size_t)plen + 7) & ~(size_t)7;
    size_t pos, waste;
    uint64_t serial = 0;
    gs_rec *r;

    *wake = 0;
    pthread_mutex_lock(&q->lock);
    if (q->closed || need > gs_queue_record_max(q) ||
        !gs_queue_fit(q, need, &pos, &waste)) {
        q->refused++;
        goto out;
    }
    if (waste >= GS_REC_HEADER) { /* mark the skipped end */
        r = gs_queue_rec(q, q->head);
        memset(r, 0, sizeof *r);
        r->size = (uint32_t)waste;
        r->kind = GS_REC_PAD;
    }
    r = gs_queue_rec(q, pos);
    r->size = (uint32_t)need;
    r->flen = flen;
    r->state = GS_REC_QUEUED;
    r->kind = GS_REC_DATA;
    r->plen = plen;
    r->route = route;
    r->version = version;
    r->serial = serial = ++q->accepted;
    memcpy(r + 1, function, flen);
    if (plen > 0)
        memcpy((unsigned char *)(r + 1) + flen, payload, plen);
    q->head = pos + need == q->cap ? 0 : pos + need;
    q->used += waste + need;
    if (q->sleeping) {
        q->sleeping = 0;
        *wake = 1;
    }
out:
    pthread_mutex_unlock(&q->lock);
    return serial;
}

size_t gs_queue_end(gs_queue *q)
{
    size_t end;

    pthread_mutex_lock(&q->lock);
    end = q->head;
    pthread_mutex_unlock(&q->lock);
    return end;
}

size_t gs_queue_skip(const gs_queue *q, size_t off, size_t end)
{
    for (;;) {
        if (off == end)
            return end;
        if (q->cap - off < GS_REC_HEADER ||
            gs_queue_rec(q, off)->kind == GS_REC_PAD) {
            off = 0;
            continue;
        }
        return off;
    }
}

size_t gs_queue_release(gs_queue *q)
{
    uint64_t before;
    size_t tail;

    pthread_mutex_lock(&q->lock);
    before = q->done_upto;
    while (q->used > 0) {
        size_t off = q->tail;
        gs_rec *r;
        if (q->cap - off < GS_REC_HEADER) {
            q->used -= q->cap - off;
            q->tail = 0;
            continue;
        }
        r = gs_queue_rec(q, off);
        if (r->kind == GS_REC_PAD) {
            q->used -= r->size;
            q->tail = 0;
            continue;
        }
        if (r->state != GS_REC_DONE)
            break;
        q->used -= r->size;
        q->tail = off + r->size == q->cap ? 0 : off + r->size;
    }
    q->done_upto = q->used == 0 ? q->accepted
                                : gs_queue_rec(q, q->tail)->serial - 1;
    if (q->done_upto != before && q->waiters > 0)
        pthread_cond_broadcast(&q->done_cond);
    tail = q->tail;
    pthread_mutex_unlock(&q->lock);
    return tail;
}

int gs_queue_sleep(gs_queue *q, size_t end)
{
    int sleep;

    pthread_mutex_lock(&q->lock);
    sleep = q->head == end;
    q->sleeping = sleep;
    pthread_mutex_unlock(&q->lock);
    return sleep;
}

void gs_queue_close(gs_queue *q)
{
    pthread_mutex_lock(&q->lock);
    q->closed = 1;
    pthread_mutex_unlock(&q->lock);
}

uint64_t gs_queue_wait_done(gs_queue *q, uint64_t deadline_ns,
                            void (*kick)(void))
{
    struct timespec ts = {(time_t)(deadline_ns / 1000000000ULL),
                          (long)(deadline_ns % 1000000000ULL)};
    uint64_t target, left;

    pthread_mutex_lock(&q->lock);
    target = q->accepted;
    q->waiters++;
    if (q->done_upto < target && kick != NULL) {
        pthread_mutex_unlock(&q->lock);
        kick();
        pthread_mutex_lock(&q->lock);
    }
    while (q->done_upto < target && gs_now_ns() < deadline_ns)
        pthread_cond_timedwait(&q->done_cond, &q->lock, &ts);
    q->waiters--;
    left = q->done_upto < target ? target - q->done_upto : 0;
    pthread_mutex_unlock(&q->lock);
    return left;
}

uint64_t gs_queue_pending(gs_queue *q)
{
    uint64_t n;

    pthread_mutex_lock(&q->lock);
    n = q->accepted - q->done_upto;
    pthread_mutex_unlock(&q->lock);
    return n;
}

gs_queue_stats gs_queue_look(gs_queue *q)
{
    gs_queue_stats st;

    pthread_mutex_lock(&q->lock);
    st.accepted = q->accepted;
    st.pending = q->accepted - q->done_upto;
    st.refused = q->refused;
    st.waiters = q->waiters;
    st.head = q->head;
    pthread_mutex_unlock(&q->lock);
    return st;
}
