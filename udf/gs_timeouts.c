/*
 * gs_timeouts.c -- the background and foreground timeouts (no SQL
 * symbols), see gs_timeouts.h.  Plain atomics: a reader never waits.
 */
#include "gs_timeouts.h"

static int gs_timeouts[2] = {GS_TIMEOUT_DEFAULT_MS,
                             GS_DO_TIMEOUT_DEFAULT_MS}; /* atomic */

int gs_timeout_get(gs_timeout_kind kind)
{
    return __atomic_load_n(&gs_timeouts[kind], __ATOMIC_RELAXED);
}

int gs_timeout_max(gs_timeout_kind kind)
{
    return kind == GS_TIMEOUT_FG ? GS_TIMEOUT_FG_MAX_MS : GS_TIMEOUT_BG_MAX_MS;
}

int gs_timeout_set(gs_timeout_kind kind, long long ms)
{
    int v = ms < 1 ? 1 : ms > gs_timeout_max(kind) ? gs_timeout_max(kind)
                                                   : (int)ms;
    __atomic_store_n(&gs_timeouts[kind], v, __ATOMIC_RELAXED);
    return v;
}

int gs_timeout_longest(void)
{
    int a = gs_timeout_get(GS_TIMEOUT_BG), b = gs_timeout_get(GS_TIMEOUT_FG);
    return a > b ? a : b;
}
