/*
 * gs_clock.h -- the library's clocks, inline (no state).
 *   gs_now_ns()     CLOCK_MONOTONIC, ns: deadlines, breakers, backoff
 *   gs_coarse_ns()  CLOCK_MONOTONIC_COARSE, ns: "has a tick (a few ms) passed"
 */
#ifndef GEARSYNC_GS_CLOCK_H
#define GEARSYNC_GS_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t gs_clock_ns(clockid_t clk)
{
    struct timespec ts;
    clock_gettime(clk, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static inline uint64_t gs_now_ns(void)
{
    return gs_clock_ns(CLOCK_MONOTONIC);
}

static inline uint64_t gs_coarse_ns(void)
{
    return gs_clock_ns(CLOCK_MONOTONIC_COARSE);
}

#endif /* GEARSYNC_GS_CLOCK_H */
