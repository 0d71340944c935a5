/*
 * settings.c -- gearsync_*_set functions: the library's timeouts at run time.
 *
 * SQL:   gearsync_timeout_set(ms) -> INTEGER
 *   CREATE FUNCTION gearsync_timeout_set RETURNS INTEGER SONAME 'gearsync_udf.so';
 *   Sets the process-wide gearman timeout for background submits (connect,
 *   send, wait for the job handle) in milliseconds and returns the value
 *   set: at most 10000 (GS_TIMEOUT_BG_MAX_MS), a larger value is clamped to
 *   it.  Default 250, or the config file's timeout_ms, or
 *   GEARSYNC_UDF_TIMEOUT_MS from mysqld's environment.
 *   Refused by _init -- an SQL error, for every login -- when
 *   gearsync_udf.cnf says lock = on, or for a constant below 1.
 *   NULL behaviour: NULL, or a non-constant value below 1, returns NULL and
 *   changes nothing.
 *
 * SQL:   gearsync_do_timeout_set(ms) -> INTEGER
 *   CREATE FUNCTION gearsync_do_timeout_set RETURNS INTEGER SONAME 'gearsync_udf.so';
 *   The same for foreground jobs (gman_do*, gman_sum): how long a caller
 *   waits for the worker's result, at most 60000 (GS_TIMEOUT_FG_MAX_MS).
 *   Default 5000, or the config file's do_timeout_ms, or
 *   GEARSYNC_UDF_DO_TIMEOUT_MS.
 *
 * A run-time value wins over the config file and the environment until the
 * server restarts.
 */
#include "gearsync_udf.h"
#include "gs_args.h"
#include "gs_config.h"
#include "gs_timeouts.h"

#include <stdio.h>

static my_bool gs_ms_init(const char *name, UDF_INIT *initid, UDF_ARGS *args,
                          char *message)
{
    if (args->arg_count != 1) {
        snprintf(message, MYSQL_ERRMSG_SIZE,
                 "%s: expects 1 argument (milliseconds)", name);
        return 1;
    }
    /* A constant's value at init is in its own type: only an integer
       constant can be checked here, the rest is checked per row (where the
       server has converted it to INT_RESULT). */
    if (args->args[0] != NULL && args->arg_type[0] == INT_RESULT &&
        *(const long long *)args->args[0] < 1) {
        snprintf(message, MYSQL_ERRMSG_SIZE, "%s: ms must be >= 1", name);
        return 1;
    }
    if (gs_config_locked()) { /* reads the file first: it wins over us */
        snprintf(message, MYSQL_ERRMSG_SIZE, GS_LOCKED_MESSAGE, name);
        return 1;
    }
    args->arg_type[0] = INT_RESULT;
    initid->ptr = NULL;
    initid->maybe_null = 1;
    initid->const_item = 0;
    return 0;
}

static long long gs_ms_set(gs_timeout_kind kind, UDF_ARGS *args,
                           char *is_null)
{
    long long v;

    if (args->args[0] == NULL)
        goto null;
    v = *(const long long *)args->args[0];
    if (v < 1)
        goto null;
    return gs_timeout_set(kind, v);
null:
    *is_null = 1;
    return 0;
}

GS_DEFINE_INT_UDF(gearsync_timeout_set,
                  gs_ms_init("gearsync_timeout_set", initid, args, message),
                  gs_ms_set(GS_TIMEOUT_BG, args, is_null))
GS_DEFINE_INT_UDF(gearsync_do_timeout_set,
                  gs_ms_init("gearsync_do_timeout_set", initid, args, message),
                  gs_ms_set(GS_TIMEOUT_FG, args, is_null))
