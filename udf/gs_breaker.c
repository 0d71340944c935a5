/*
 * gs_breaker.c -- one circuit breaker per job server (host:port), process
 * wide (no SQL symbols).
 *
 * A failed submit opens the server's breaker for breaker_min_ms (100),
 * doubling on each further consecutive failure up to breaker_max_ms (2000);
 * both can be set in the config file (gs_config.c).  While it is open,
 * gs_breaker_allow() says "skip" at the cost of a mutex and a clock read.
 * When the open period has lapsed, the first caller is let through as the
 * probe (half-open) and the others keep skipping until the probe reports; a
 * probe still out after the longest timeout plus a second counts as lost.
 * A success closes the breaker.  GS_BREAKER_SLOTS (64) servers are tracked;
 * a new one takes a closed slot, else the least recently used one.
 */
#include "gs_breaker.h"
#include "gs_clock.h"
#include "gs_timeouts.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

static int gs_breaker_min = GS_BREAKER_MIN_MS;      /* atomic */
static int gs_breaker_max = GS_BREAKER_MAX_MS;      /* atomic */

void gs_breaker_params(int *min_ms, int *max_ms)
{
    *min_ms = __atomic_load_n(&gs_breaker_min, __ATOMIC_RELAXED);
    *max_ms = __atomic_load_n(&gs_breaker_max, __ATOMIC_RELAXED);
}

void gs_breaker_set(int min_ms, int max_ms)
{
    __atomic_store_n(&gs_breaker_min, min_ms, __ATOMIC_RELAXED);
    __atomic_store_n(&gs_breaker_max, max_ms, __ATOMIC_RELAXED);
}

typedef struct {
    char addr[GS_ADDR_LEN];
    unsigned failures;      /* consecutive; 0 = closed */
    uint64_t open_until;    /* ns, CLOCK_MONOTONIC */
    uint64_t probe_since;   /* ns; 0 = no probe in flight */
    uint64_t last_used;     /* ns, for slot reuse */
} gs_breaker;

static pthread_mutex_t gs_breaker_lock = PTHREAD_MUTEX_INITIALIZER;
static gs_breaker gs_breakers[GS_BREAKER_SLOTS]; /* locked */

static gs_breaker *gs_breaker_find(const char *addr)
{
    unsigned i;
    for (i = 0; i < GS_BREAKER_SLOTS; i++)
        if (gs_breakers[i].addr[0] && strcmp(gs_breakers[i].addr, addr) == 0)
            return &gs_breakers[i];
    return NULL;
}

/* 1: go ahead (closed, or this caller is the probe); 0: skip (open). */
int gs_breaker_allow(const char *addr, uint64_t now)
{
    gs_breaker *br;
    int ok = 1;

    pthread_mutex_lock(&gs_breaker_lock);
    br = gs_breaker_find(addr);
    if (br != NULL && br->failures > 0) {
        /* a probe still out after the longest timeout plus a second is
           taken as lost: another caller may probe */
        uint64_t stale =
            ((uint64_t)gs_timeout_longest() + 1000ULL) * 1000000ULL;
        if (now < br->open_until)
            ok = 0;
        else if (br->probe_since != 0 && now - br->probe_since < stale)
            ok = 0;
        else
            br->probe_since = now;
    }
    pthread_mutex_unlock(&gs_breaker_lock);
    return ok;
}

void gs_breaker_report(const char *addr, int success)
{
    gs_breaker *br;
    uint64_t now = gs_now_ns();

    pthread_mutex_lock(&gs_breaker_lock);
    br = gs_breaker_find(addr);
    if (success) {
        if (br != NULL) {
            br->failures = 0;
            br->probe_since = 0;
            br->last_used = now;
        }
    } else {
        int lo = __atomic_load_n(&gs_breaker_min, __ATOMIC_RELAXED);
        int hi = __atomic_load_n(&gs_breaker_max, __ATOMIC_RELAXED);
        uint64_t ms;
        if (br == NULL) { /* a free slot, else the least recently used */
            unsigned i;
            br = &gs_breakers[0];
            for (i = 0; i < GS_BREAKER_SLOTS; i++) {
                if (gs_breakers[i].addr[0] == '\0' ||
                    gs_breakers[i].failures == 0) {
                    br = &gs_breakers[i];
                    break;
                }
                if (gs_breakers[i].last_used < br->last_used)
                    br = &gs_breakers[i];
            }
            memset(br, 0, sizeof *br);
            snprintf(br->addr, sizeof br->addr, "%s", addr);
        }
        if (br->failures < 32)
            br->failures++;
        ms = (uint64_t)lo << (br->failures > 16 ? 16 : br->failures - 1);
        if (ms > (uint64_t)hi)
            ms = (uint64_t)hi;
        br->open_until = now + ms * 1000000ULL;
        br->probe_since = 0;
        br->last_used = now;
    }
    pthread_mutex_unlock(&gs_breaker_lock);
}
