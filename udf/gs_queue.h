/*
 * gs_queue.h -- the bounded record queue between gearsync_send (many
 * producers: server threads) and the sender thread (one consumer)
 * (gs_queue.c).
 *
 * One byte ring allocated once; a record is copied in under the queue's
 * mutex (no allocation, no syscall) and stays in place -- queued, then in a
 * batch on the wire, then acknowledged -- until the consumer frees it, in
 * ring order.  So queued plus unacknowledged bytes are bounded by the ring's
 * size, and a batch can be re-sent from the ring after a lost connection.
 *
 * Consumer protocol: records between the tail and a snapshot of the head
 * (gs_queue_end) belong to the consumer, which reads them without the lock
 * and changes only their `state`; producers write only outside them.
 */
#ifndef GEARSYNC_GS_QUEUE_H
#define GEARSYNC_GS_QUEUE_H

#include "gearsync_udf.h"

#include <pthread.h>

enum { GS_REC_QUEUED = 0, GS_REC_SENT = 1, GS_REC_DONE = 2 };
enum { GS_REC_DATA = 0, GS_REC_PAD = 1 };

/* A record in the ring, followed by function[flen] and payload[plen];
   its size is a multiple of 8. */
typedef struct gs_rec {
    uint32_t size;    /* bytes in the ring, this header included */
    uint16_t flen;
    uint8_t state;    /* GS_REC_*, the consumer's */
    uint8_t kind;     /* GS_REC_DATA, or GS_REC_PAD: the ring's end, skip */
    uint32_t plen;
    uint32_t route;   /* hash of gearsync_send's route argument */
    uint64_t version;
    uint64_t serial;  /* 1, 2, ... in acceptance order */
} gs_rec;

#define GS_REC_HEADER ((size_t)sizeof(gs_rec))

static inline const char *gs_rec_function(const gs_rec *r)
{
    return (const char *)(r + 1);
}

static inline const unsigned char *gs_rec_payload(const gs_rec *r)
{
    return (const unsigned char *)(r + 1) + r->flen;
}

typedef struct gs_queue {
    pthread_mutex_t lock;
    pthread_cond_t done_cond;   /* done_upto moved (gs_queue_wait_done) */
    unsigned char *ring;        /* cap bytes, 8-aligned */
    size_t cap;
    size_t head, tail, used;    /* locked */
    uint64_t accepted;          /* serial of the last record taken; locked */
    uint64_t done_upto;         /* every record <= this is done; locked */
    uint64_t refused;           /* records refused for want of room; locked */
    int closed;                 /* no more records (library unloading) */
    int sleeping;               /* the consumer waits for records */
    unsigned waiters;           /* threads in gs_queue_wait_done */
} gs_queue;

/* The largest record (header, function and payload): a quarter of the
   ring, so that one big record cannot starve the others. */
static inline size_t gs_queue_record_max(const gs_queue *q)
{
    return q->cap / 4;
}

int gs_queue_init(gs_queue *q, size_t cap) GS_HIDDEN; /* 0 ok, -1 ENOMEM */
void gs_queue_destroy(gs_queue *q) GS_HIDDEN;

/* Producer: copy one record in.  Returns its serial (> 0), or 0 when it was
   refused (queue full, record too big, queue closed).  *wake is set when
   the consumer sleeps and must be woken. */
uint64_t gs_queue_put(gs_queue *q, const char *function, uint16_t flen,
                      const void *payload, uint32_t plen, uint32_t route,
                      uint64_t version, int *wake) GS_HIDDEN;

/* Consumer: the head now (records before it are readable). */
size_t gs_queue_end(gs_queue *q) GS_HIDDEN;
/* Consumer: off normalised past the ring's end (a pad record or a tail
   shorter than a header): the offset of the next record, or end. */
size_t gs_queue_skip(const gs_queue *q, size_t off, size_t end) GS_HIDDEN;
static inline gs_rec *gs_queue_rec(const gs_queue *q, size_t off)
{
    return (gs_rec *)(q->ring + off);
}
/* Consumer: free the done records at the tail; returns the new tail. */
size_t gs_queue_release(gs_queue *q) GS_HIDDEN;
/* Consumer: about to wait -- marks it sleeping unless records arrived
   after end.  1: sleep (a producer will wake it), 0: records arrived. */
int gs_queue_sleep(gs_queue *q, size_t end) GS_HIDDEN;

/* Close: producers are refused from now on. */
void gs_queue_close(gs_queue *q) GS_HIDDEN;
/* Wait until every record accepted so far is done or deadline_ns passes;
   kick() is called once the caller counts as a waiter (to wake the
   consumer).  The number of those records still not done. */
uint64_t gs_queue_wait_done(gs_queue *q, uint64_t deadline_ns,
                            void (*kick)(void)) GS_HIDDEN;
/* Records accepted and not yet done (queued or unacknowledged). */
uint64_t gs_queue_pending(gs_queue *q) GS_HIDDEN;

/* One locked look for the consumer. */
typedef struct {
    uint64_t accepted; /* records accepted so far */
    uint64_t pending;  /* accepted, not yet done */
    uint64_t refused;  /* refused for want of room so far */
    unsigned waiters;  /* threads in gs_queue_wait_done */
    size_t head;       /* the head, for gs_queue_sleep */
} gs_queue_stats;
gs_queue_stats gs_queue_look(gs_queue *q) GS_HIDDEN;

#endif /* GEARSYNC_GS_QUEUE_H */
