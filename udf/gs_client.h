/*
 * gs_client.h -- libgearman jobs for the gman_* functions (gs_client.c):
 * one libgearman client per (server thread, job server), failover in list
 * order, circuit breakers, bounded timeouts.
 */
#ifndef GEARSYNC_GS_CLIENT_H
#define GEARSYNC_GS_CLIENT_H

#include "gearsync_udf.h"

/* Job priority. */
enum gs_prio { GS_PRIO_NORMAL = 0, GS_PRIO_HIGH = 1, GS_PRIO_LOW = 2 };

/* Submit a background job; handle receives the job handle (>= 64 bytes).
   function and unique must be NUL-terminated; unique NULL = generate one.
   Tries the function's servers in list order, skipping servers whose
   breaker is open.  0 on success, -1 on failure. */
int gs_submit_background(const char *function, const char *unique,
                         const void *workload, size_t workload_len,
                         int prio, char *handle) GS_HIDDEN;
/* Run a foreground job and wait (bounded) for its result: *result is a
   malloc'ed buffer (may be NULL when the result is empty) the caller frees.
   0 on success, -1 on failure (no server took it, timeout, worker failed). */
int gs_submit_foreground(const char *function, const char *unique,
                         const void *workload, size_t workload_len, int prio,
                         void **result, size_t *result_len) GS_HIDDEN;

#endif /* GEARSYNC_GS_CLIENT_H */
