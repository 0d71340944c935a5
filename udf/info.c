/*
 * info.c -- gearsync_* functions: library version and settings.
 *
 * SQL:   gearsync_udf_info() -> STRING
 *   CREATE FUNCTION gearsync_udf_info RETURNS STRING SONAME 'gearsync_udf.so';
 *   Returns the library version (GEARSYNC_VERSION, the same string as the
 *   Python package's gearsync.__version__), e.g. '0.1.0'.  Never NULL.
 *
 * SQL:   gearsync_timeout_set(ms) -> INTEGER
 *   CREATE FUNCTION gearsync_timeout_set RETURNS INTEGER SONAME 'gearsync_udf.so';
 *   Sets the process-wide gearman timeout (connect, send, wait for the job
 *   handle) in milliseconds, 1..3600000, and returns the new value.  Default
 *   250, or GEARSYNC_UDF_TIMEOUT_MS from mysqld's environment at load.
 *   NULL behaviour: a constant out-of-range value is refused by _init; NULL
 *   or a non-constant out-of-range value returns NULL and changes nothing.
 *
 * SQL:   gearsync_do_timeout_set(ms) -> INTEGER
 *   CREATE FUNCTION gearsync_do_timeout_set RETURNS INTEGER SONAME 'gearsync_udf.so';
 *   The same for foreground jobs (gman_do*, gman_sum): how long a caller
 *   waits for the worker's result.  Default 5000, or GEARSYNC_UDF_DO_TIMEOUT_MS.
 *   Both defaults can also come from the config file (gs_config.c).
 */
#include "gearsync_udf.h"

#include <stdio.h>
#include <string.h>

GS_EXPORT my_bool gearsync_udf_info_init(UDF_INIT *initid, UDF_ARGS *args,
                                         char *message);
GS_EXPORT void gearsync_udf_info_deinit(UDF_INIT *initid);
GS_EXPORT char *gearsync_udf_info(UDF_INIT *initid, UDF_ARGS *args,
                                  char *result, unsigned long *length,
                                  char *is_null, char *error);
GS_EXPORT long long gearsync_timeout_set(UDF_INIT *initid, UDF_ARGS *args,
                                         char *is_null, char *error);
GS_EXPORT my_bool gearsync_timeout_set_init(UDF_INIT *initid, UDF_ARGS *args,
                                            char *message);
GS_EXPORT void gearsync_timeout_set_deinit(UDF_INIT *initid);
GS_EXPORT my_bool gearsync_do_timeout_set_init(UDF_INIT *initid,
                                               UDF_ARGS *args, char *message);
GS_EXPORT void gearsync_do_timeout_set_deinit(UDF_INIT *initid);
GS_EXPORT long long gearsync_do_timeout_set(UDF_INIT *initid, UDF_ARGS *args,
                                            char *is_null, char *error);

static const char gs_version[] = GEARSYNC_VERSION;

my_bool gearsync_udf_info_init(UDF_INIT *initid, UDF_ARGS *args,
                               char *message)
{
    if (args->arg_count != 0) {
        snprintf(message, MYSQL_ERRMSG_SIZE,
                 "gearsync_udf_info: expects no arguments");
        return 1;
    }
    initid->ptr = NULL;
    initid->maybe_null = 0;
    initid->max_length = sizeof gs_version - 1;
    initid->const_item = 1;
    return 0;
}

void gearsync_udf_info_deinit(UDF_INIT *initid)
{
    (void)initid;
}

char *gearsync_udf_info(UDF_INIT *initid, UDF_ARGS *args, char *result,
                        unsigned long *length, char *is_null, char *error)
{
    (void)initid;
    (void)args;
    (void)result;
    (void)is_null;
    (void)error;
    *length = sizeof gs_version - 1;
    return (char *)gs_version;
}

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
    if (args->args[0] != NULL && args->arg_type[0] == INT_RESULT) {
        long long v = *(const long long *)args->args[0];
        if (v < 1 || v > GS_TIMEOUT_MAX_MS) {
            snprintf(message, MYSQL_ERRMSG_SIZE, "%s: ms must be 1..%d", name,
                     GS_TIMEOUT_MAX_MS);
            return 1;
        }
    }
    args->arg_type[0] = INT_RESULT;
    initid->ptr = NULL;
    initid->maybe_null = 1;
    initid->const_item = 0;
    return 0;
}

static long long gs_ms_set(void (*set)(int), UDF_ARGS *args, char *is_null)
{
    long long v;

    if (args->args[0] == NULL)
        goto null;
    v = *(const long long *)args->args[0];
    if (v < 1 || v > GS_TIMEOUT_MAX_MS)
        goto null;
    set((int)v);
    return v;
null:
    *is_null = 1;
    return 0;
}

my_bool gearsync_timeout_set_init(UDF_INIT *initid, UDF_ARGS *args,
                                  char *message)
{
    return gs_ms_init("gearsync_timeout_set", initid, args, message);
}

void gearsync_timeout_set_deinit(UDF_INIT *initid)
{
    (void)initid;
}

long long gearsync_timeout_set(UDF_INIT *initid, UDF_ARGS *args,
                               char *is_null, char *error)
{
    (void)initid;
    (void)error;
    return gs_ms_set(gs_timeout_set, args, is_null);
}

my_bool gearsync_do_timeout_set_init(UDF_INIT *initid, UDF_ARGS *args,
                                     char *message)
{
    return gs_ms_init("gearsync_do_timeout_set", initid, args, message);
}

void gearsync_do_timeout_set_deinit(UDF_INIT *initid)
{
    (void)initid;
}

long long gearsync_do_timeout_set(UDF_INIT *initid, UDF_ARGS *args,
                                  char *is_null, char *error)
{
    (void)initid;
    (void)error;
    return gs_ms_set(gs_do_timeout_set, args, is_null);
}
