/*
 * gs_seq.c -- the version counter (no SQL symbols), see gs_seq.h.
 */
#include "gs_seq.h"
#include "gs_clock.h"

static uint64_t gs_seq_last; /* atomic */

uint64_t gs_seq_next(void)
{
    uint64_t now = gs_clock_ns(CLOCK_REALTIME) / 1000ULL;
    uint64_t last = __atomic_load_n(&gs_seq_last, __ATOMIC_RELAXED);
    uint64_t next;

    do {
        next = last + 1 > now ? last + 1 : now;
    } while (!__atomic_compare_exchange_n(&gs_seq_last, &last, next, 1,
                                          __ATOMIC_RELAXED, __ATOMIC_RELAXED));
    return next;
}
