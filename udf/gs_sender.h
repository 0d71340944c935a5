/*
 * gs_sender.h -- the one sender per mysqld behind gearsync_send
 * (gs_sender.c).
 *
 * gearsync_send copies each record into a bounded queue (gs_queue.h) and
 * returns; a background thread owned by the library batches the queued
 * records of one Gearman function into one background job (an envelope,
 * gs_envelope.h) for the first reachable server of the default list, or --
 * spread = on -- for the server the record's route picks, keeps every batch
 * until gearmand acknowledged it, and re-sends the unacknowledged ones, in
 * order, after a lost connection.
 */
#ifndef GEARSYNC_GS_SENDER_H
#define GEARSYNC_GS_SENDER_H

#include "gearsync_udf.h"

/* A job carries at most this many records / payload bytes (a single larger
   record goes alone). */
#define GS_BATCH_RECORDS 256
#define GS_BATCH_BYTES (256UL * 1024UL)
/* Batches written and not yet acknowledged, per connection: while one is
   in flight, new records gather into the next batch. */
#define GS_SENDER_INFLIGHT 1
/* Protocol limits (gearmand's own). */
#define GS_FUNCTION_NAME_MAX 511 /* bytes, no NUL */

/* Accept one record for function[0..flen) (1..511 bytes, no NUL; caller
   checked) with payload[0..plen) and the route hash.  0 accepted; -1 not
   accepted (queue full, record too big, sender cannot start, library
   stopping).  Never blocks on the network. */
int gs_sender_submit(const char *function, size_t flen, const void *payload,
                     size_t plen, uint32_t route, uint64_t version) GS_HIDDEN;

/* Wait up to timeout_ms until every record accepted so far is acknowledged
   by gearmand (or refused by it); returns how many are still not. */
long long gs_sender_flush(int timeout_ms) GS_HIDDEN;

/* Library unload: stop accepting, try to deliver what is queued (bounded by
   the background timeout), join the thread, free everything, and log what
   was not acknowledged. */
void gs_sender_stop(void) GS_HIDDEN;

#endif /* GEARSYNC_GS_SENDER_H */
