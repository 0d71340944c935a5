/*
 * gs_thread.c -- per-server-thread state, its registry, library load/unload
 * (no SQL symbols); see gs_thread.h.
 *
 * One gs_thread per OS thread, found through a pthread key; the key's
 * destructor frees it (and each slot, through the slot's own free
 * function) when the thread exits.
 *
 * Every gs_thread is also on a mutex-protected registry, so that the library
 * unload (gs_thread_unload from gs_library.c's destructor; dlclose: DROP
 * FUNCTION of the last gearsync UDF unloads the .so) can free all of them
 * and delete the key -- otherwise, at thread exit, glibc would call a
 * destructor in unmapped code and crash mysqld.  mysqld only unloads a UDF
 * library that no statement is using.
 *
 * Unique ids (gs_thread_unique): "gs-<nonce>-<thread serial>-<counter>" in
 * hex; nonce is 64 random bits read at load (getrandom), serial a process
 * counter assigned to each gs_thread (never reused, unlike pthread ids), and
 * counter a per-thread job counter.  Unique within a process run, distinct
 * across runs with overwhelming probability, at most 53 bytes, no syscall.
 * They spare libgearman its per-job UUID (a connect() to uuidd per job).
 */
#include "gs_thread.h"
#include "gs_clock.h"
#include "gs_timeouts.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

struct gs_thread {
    struct gs_thread *next, *prev;   /* registry links (gs_registry_lock) */
    void *slots[GS_SLOTS];           /* per-helper state */
    gs_slot_free slot_free[GS_SLOTS];
    uint64_t serial;                 /* unique per thread state, per process */
    uint64_t counter;                /* per-thread job counter (unique ids) */
    gs_buf *json_cache;              /* one spare json_object buffer */
};

static pthread_key_t gs_key;
static int gs_key_ok;
static pthread_mutex_t gs_registry_lock = PTHREAD_MUTEX_INITIALIZER;
static gs_thread *gs_registry;       /* guarded by gs_registry_lock */
static uint64_t gs_serial;           /* atomic */
static uint64_t gs_nonce;            /* written once at load */

/* Free a thread's state; a slot may wait up to wait_ms first. */
static void gs_thread_release(gs_thread *t, int wait_ms)
{
    unsigned i;

    for (i = 0; i < GS_SLOTS; i++)
        if (t->slots[i] != NULL && t->slot_free[i] != NULL)
            t->slot_free[i](t->slots[i], wait_ms);
    if (t->json_cache != NULL) {
        free(t->json_cache->data);
        free(t->json_cache);
    }
    free(t);
}

/* pthread key destructor: the thread is exiting. */
static void gs_thread_destroy(void *p)
{
    gs_thread *t, *found = NULL;

    pthread_mutex_lock(&gs_registry_lock);
    for (t = gs_registry; t != NULL; t = t->next) {
        if (t == p) {
            found = t;
            break;
        }
    }
    if (found != NULL) {
        if (found->prev)
            found->prev->next = found->next;
        else
            gs_registry = found->next;
        if (found->next)
            found->next->prev = found->prev;
    }
    pthread_mutex_unlock(&gs_registry_lock);
    if (found != NULL) /* else already freed by the library destructor */
        gs_thread_release(found, gs_timeout_get(GS_TIMEOUT_BG));
}

gs_thread *gs_thread_get(void)
{
    gs_thread *t;

    if (!gs_key_ok)
        return NULL;
    t = pthread_getspecific(gs_key);
    if (t != NULL)
        return t;
    t = calloc(1, sizeof *t);
    if (t == NULL)
        return NULL;
    t->serial = __atomic_add_fetch(&gs_serial, 1, __ATOMIC_RELAXED);
    if (pthread_setspecific(gs_key, t) != 0) {
        free(t);
        return NULL;
    }
    pthread_mutex_lock(&gs_registry_lock);
    t->next = gs_registry;
    if (gs_registry)
        gs_registry->prev = t;
    gs_registry = t;
    pthread_mutex_unlock(&gs_registry_lock);
    return t;
}

void *gs_thread_state(gs_thread **tp, gs_slot slot, size_t size,
                      gs_slot_free fn, void (*init)(void *))
{
    gs_thread *t = gs_thread_get();
    void *state;

    *tp = t;
    if (t == NULL)
        return NULL;
    if (t->slots[slot] != NULL)
        return t->slots[slot];
    state = calloc(1, size);
    if (state == NULL)
        return NULL;
    if (init != NULL)
        init(state);
    t->slots[slot] = state;
    t->slot_free[slot] = fn;
    return state;
}

void gs_thread_unique(gs_thread *t, char *out)
{
    snprintf(out, GS_UNIQUE_LEN, "gs-%016llx-%llx-%llx",
             (unsigned long long)gs_nonce, (unsigned long long)t->serial,
             (unsigned long long)++t->counter);
}

gs_buf *gs_json_buf_take(void)
{
    gs_thread *t = gs_thread_get();
    gs_buf *b;

    if (t != NULL && t->json_cache != NULL) {
        b = t->json_cache;
        t->json_cache = NULL;
        b->len = 0;
        return b;
    }
    b = calloc(1, sizeof *b);
    if (b == NULL)
        return NULL;
    if (gs_buf_grow(b, GS_BUF_INITIAL_CAP)) {
        free(b);
        return NULL;
    }
    return b;
}

void gs_json_buf_give(gs_buf *b)
{
    gs_thread *t = gs_key_ok ? pthread_getspecific(gs_key) : NULL;

    if (t != NULL && t->json_cache == NULL && b->cap <= GS_JSON_CACHE_MAX) {
        t->json_cache = b;
        return;
    }
    free(b->data);
    free(b);
}

void gs_thread_load(void)
{
    uint64_t n = 0;

    if (getrandom(&n, sizeof n, GRND_NONBLOCK) != (ssize_t)sizeof n) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        n = ((uint64_t)ts.tv_sec * 1000000007ULL) ^ (uint64_t)ts.tv_nsec ^
            ((uint64_t)getpid() << 40) ^ (uint64_t)(uintptr_t)&n;
    }
    gs_nonce = n;
    gs_key_ok = pthread_key_create(&gs_key, gs_thread_destroy) == 0;
}

void gs_thread_unload(void)
{
    gs_thread *t, *next;
    uint64_t deadline;

    pthread_mutex_lock(&gs_registry_lock);
    if (gs_key_ok) {
        pthread_key_delete(gs_key); /* no destructor will run any more */
        gs_key_ok = 0;
    }
    t = gs_registry;
    gs_registry = NULL;
    pthread_mutex_unlock(&gs_registry_lock);
    /* One timeout in total for every thread's pending work. */
    deadline = gs_now_ns() + (uint64_t)gs_timeout_get(GS_TIMEOUT_BG) * 1000000ULL;
    for (; t != NULL; t = next) {
        uint64_t now = gs_now_ns();
        next = t->next;
        gs_thread_release(t, now < deadline ? (int)((deadline - now) / 1000000ULL) : 0);
    }
}
