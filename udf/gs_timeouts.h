/*
 * gs_timeouts.h -- the two process-wide timeouts (gs_timeouts.c).
 *
 *   GS_TIMEOUT_BG  background submits: connect, send, wait for the job
 *                  handle (gman_do*_background, gearsync_send); default 250
 *   GS_TIMEOUT_FG  foreground jobs: the wait for a gman_do* result; default
 *                  5000
 * Set by the config file, the environment and the run-time setters; read
 * with one atomic load.
 */
#ifndef GEARSYNC_GS_TIMEOUTS_H
#define GEARSYNC_GS_TIMEOUTS_H

#include "gearsync_udf.h"

typedef enum { GS_TIMEOUT_BG = 0, GS_TIMEOUT_FG = 1 } gs_timeout_kind;

#define GS_TIMEOUT_DEFAULT_MS 250
#define GS_DO_TIMEOUT_DEFAULT_MS 5000
/* Hard maxima, whatever asks (config file, environment, run-time setter):
   a hung gearmand can hold a writer (and its row locks) this long at most. */
#define GS_TIMEOUT_BG_MAX_MS 10000
#define GS_TIMEOUT_FG_MAX_MS 60000
#define GS_TIMEOUT_ENV "GEARSYNC_UDF_TIMEOUT_MS"
#define GS_DO_TIMEOUT_ENV "GEARSYNC_UDF_DO_TIMEOUT_MS"

int gs_timeout_get(gs_timeout_kind kind) GS_HIDDEN;
/* The maximum of a kind, ms. */
int gs_timeout_max(gs_timeout_kind kind) GS_HIDDEN;
/* Set ms, clamped to 1..gs_timeout_max(kind); returns the value set. */
int gs_timeout_set(gs_timeout_kind kind, long long ms) GS_HIDDEN;
/* The longer of the two, ms. */
int gs_timeout_longest(void) GS_HIDDEN;

#endif /* GEARSYNC_GS_TIMEOUTS_H */
