/*
 * gs_seq.h -- the per-mysqld version counter (gs_seq.c).
 *
 * next = max(last + 1, CLOCK_REALTIME in microseconds), taken atomically:
 * strictly increasing within a process, and across restarts as long as the
 * clock does not step back by more than the values handed out ahead of it.
 * A trigger takes one per changed row under the row's lock, so the versions
 * of one key grow in the order its changes were made.  Values stay below
 * 2^53 (exact as a double: Lua's and JSON's numbers) until about 2255.
 */
#ifndef GEARSYNC_GS_SEQ_H
#define GEARSYNC_GS_SEQ_H

#include "gearsync_udf.h"

uint64_t gs_seq_next(void) GS_HIDDEN;

#endif /* GEARSYNC_GS_SEQ_H */
