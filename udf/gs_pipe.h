/*
 * gs_pipe.h -- the per-thread pipelined gearman connection behind
 * gearsync_send() (gs_pipe.c; SQL entry points in send.c).
 *
 * One non-blocking TCP connection per server thread to the first reachable
 * job server of the default list; SUBMIT_JOB_BG packets are written without
 * waiting for JOB_CREATED, whose acks are read back lazily on later calls.
 */
#ifndef GEARSYNC_GS_PIPE_H
#define GEARSYNC_GS_PIPE_H

#include <stddef.h>
#include <stdint.h>

/* Jobs written but not yet acknowledged (JOB_CREATED/ERROR) before a call
   blocks (up to the timeout) for acks. */
#define GS_PIPE_WINDOW 1024
/* Bytes waiting in the user-space send buffer before a call blocks (up to
   the timeout) for the socket to become writable. */
#define GS_PIPE_SBUF_CAP (1024UL * 1024UL)
#define GS_PIPE_SBUF_INITIAL (16UL * 1024UL)
/* An empty send buffer larger than this (after a huge job) is freed. */
#define GS_PIPE_SBUF_KEEP (2UL * 1024UL * 1024UL)
/* Reconnect backoff after a failed connect or a timed-out window. */
#define GS_PIPE_BACKOFF_MIN_MS 100
#define GS_PIPE_BACKOFF_MAX_MS 2000
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
   reconnect backoff in force, window still full after the timeout). */
int gs_pipe_send(const char *function, size_t flen, const char *unique,
                 size_t ulen, const char *workload, size_t wlen,
                 char *unique_out, size_t *unique_len)
    __attribute__((visibility("hidden")));

/* Wait up to the timeout until every job this thread queued is
   acknowledged; returns the number still unacknowledged (plus any lost to a
   connection failure during the wait).  0 when none is pending. */
long long gs_pipe_flush(void) __attribute__((visibility("hidden")));

/* Close a thread's pipe (waiting up to timeout_ms for pending acks) and free
   it; called by gs_thread.c when the thread exits or the library unloads. */
struct gs_pipe;
void gs_pipe_release(struct gs_pipe *p, int timeout_ms)
    __attribute__((visibility("hidden")));

#endif /* GEARSYNC_GS_PIPE_H */
