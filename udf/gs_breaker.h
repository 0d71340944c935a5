/*
 * gs_breaker.h -- one circuit breaker per job server, process-wide
 * (gs_breaker.c).
 */
#ifndef GEARSYNC_GS_BREAKER_H
#define GEARSYNC_GS_BREAKER_H

#include "gearsync_udf.h"

/* Open after a failed attempt for min << (failures-1) ms, capped at max;
   one probe at a time when it lapses. */
#define GS_BREAKER_MIN_MS 100
#define GS_BREAKER_MAX_MS 2000
#define GS_BREAKER_SLOTS 64

/* 1 = go ahead (closed, or this caller is the probe), 0 = skip (open). */
int gs_breaker_allow(const char *addr, uint64_t now_ns) GS_HIDDEN;
/* The outcome of an attempt allowed by gs_breaker_allow. */
void gs_breaker_report(const char *addr, int success) GS_HIDDEN;
void gs_breaker_params(int *min_ms, int *max_ms) GS_HIDDEN;
void gs_breaker_set(int min_ms, int max_ms) GS_HIDDEN;

#endif /* GEARSYNC_GS_BREAKER_H */
