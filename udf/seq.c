/*
 * seq.c -- gearsync_seq(): the version of a change, taken in the trigger.
 *
 * SQL:   gearsync_seq() -> INTEGER
 *   CREATE FUNCTION gearsync_seq RETURNS INTEGER SONAME 'gearsync_udf.so';
 *   Returns a value strictly greater than every value it returned before in
 *   this mysqld process, and at least the current time in microseconds since
 *   the epoch (CLOCK_REALTIME): max(last + 1, now).  A trigger calls it while
 *   it holds the row lock, so for the changes of one row the values grow in
 *   commit order; seeded by the clock, they keep growing across a restart, a
 *   TRUNCATE of the outbox or a restore from a backup (which an outbox id
 *   does not: AUTO_INCREMENT goes back).  Values stay below 2^53 (Lua's
 *   numbers are doubles) until the year 2255.  Never NULL; no arguments
 *   (an argument is refused by _init).
 */
#include "gearsync_udf.h"
#include "gs_seq.h"

#include <stdatomic.h>
#include <stdio.h>
#include <time.h>

static _Atomic uint64_t gs_seq_last; /* zero-initialised, lock-free */

uint64_t gs_seq_next(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t now = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
    uint64_t prev = atomic_load_explicit(&gs_seq_last, memory_order_relaxed);
    for (;;) {
        uint64_t next = prev >= now ? prev + 1 : now;
        if (atomic_compare_exchange_weak_explicit(&gs_seq_last, &prev, next, memory_order_relaxed,
                                                  memory_order_relaxed))
            return next;
    }
}

GS_EXPORT my_bool gearsync_seq_init(UDF_INIT *initid, UDF_ARGS *args, char *message);
GS_EXPORT void gearsync_seq_deinit(UDF_INIT *initid);
GS_EXPORT long long gearsync_seq(UDF_INIT *initid, UDF_ARGS *args, char *is_null, char *error);

my_bool gearsync_seq_init(UDF_INIT *initid, UDF_ARGS *args, char *message)
{
    if (args->arg_count != 0) {
        snprintf(message, MYSQL_ERRMSG_SIZE, "gearsync_seq() takes no arguments");
        return 1;
    }
    initid->maybe_null = 0;
    initid->const_item = 0;
    return 0;
}

void gearsync_seq_deinit(UDF_INIT *initid)
{
    (void)initid;
}

long long gearsync_seq(UDF_INIT *initid, UDF_ARGS *args, char *is_null, char *error)
{
    (void)initid;
    (void)args;
    *is_null = 0;
    *error = 0;
    return (long long)gs_seq_next();
}
