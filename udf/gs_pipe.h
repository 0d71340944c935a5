/*
 * gs_pipe.h -- the per-thread pipelined gearman connection behind
 * gearsync_send() (gs_pipe.c; SQL entry points in send.c).
 *
 * One non-blocking TCP connection per server thread to the first reachable
 * job server of the default list; SUBMIT_JOB_BG packets are written without
 * waiting for JOB_CREATED, whose acks are read back lazily on later calls.
 * The state lives in the thread's GS_SLOT_PIPE slot (gs_thread.h), which
 * closes it -- after a bounded wait for pending acks -- when the thread
 * exits or the library is unloaded.
 */
#ifndef GEARSYNC_GS_PIPE_H
#define GEARSYNC_GS_PIPE_H

#include "gearsync_udf.h"

/* Jobs written but not yet acknowledged (JOB_CREATED/ERROR) before a call
   blocks (up to the timeout) for acks. */
#define GS_PIPE_WINDOW 1024
/* Bytes waiting in the user-space send buffer before a call blocks (up to
   the timeout) for the socket to become writable. */
#define GS_PIPE_SBUF_CAP (1024UL * 1024UL)
/* An empty send buffer larger than this (after a huge job) is freed. */
#define GS_PIPE_SBUF_KEEP (2UL * 1024UL * 1024UL)
/* Limits of the protocol fields (gearmand's own). */
#define GS_PIPE_FUNCTION_MAX 511 /* bytes, no NUL */
#define GS_PIPE_UNIQUE_MAX 63    /* bytes, no NUL */
#define GS_PIPE_UNIQUE_BUF 64

/* Queue one background job.  function[0..flen) (1..511 bytes, no NUL),
   unique[0..ulen) (1..63 bytes, no NUL; unique NULL or ulen 0: one is
   generated), workload[0..wlen) any bytes (NULL = empty).  On success
   the job's unique id is written to unique_out (GS_PIPE_UNIQUE_BUF bytes,
   NUL-terminated), its length to *unique_len, and 0 is returned: the packet
   was handed to the socket (or to the per-thread send buffer behind a
   partial write).  -1: not queued (bad arguments, no job server reachable,
   every server's breaker open, window still full after the timeout). */
int gs_pipe_send(const char *function, size_t flen, const char *unique,
                 size_t ulen, const char *workload, size_t wlen,
                 char *unique_out, size_t *unique_len) GS_HIDDEN;

/* Wait up to the timeout until every job this thread queued is
   acknowledged; returns the number still unacknowledged (plus any lost to a
   connection failure during the wait).  0 when none is pending. */
long long gs_pipe_flush(void) GS_HIDDEN;

#endif /* GEARSYNC_GS_PIPE_H */
