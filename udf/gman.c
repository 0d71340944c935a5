/*
 * gman.c -- gman_* functions: hand jobs to gearmand (gearman-mysql-udf API).
 *
 * SQL:   gman_servers_set(servers) -> STRING
 *   CREATE FUNCTION gman_servers_set RETURNS STRING SONAME 'gearsync_udf.so';
 *   Sets the process-wide gearman server list: "host[:port][,host[:port]]..."
 *   (IPv6 as [addr]:port; default port 4730; at most 32 servers).  Returns
 *   the normalised list it set, every entry with its port, e.g.
 *   gman_servers_set('gm1, gm2:4731') -> 'gm1:4730,gm2:4731'.
 *   NULL behaviour: a constant empty or malformed list is refused by _init
 *   with an error; NULL (constant or not: mysqld shows both as a NULL
 *   pointer at init) and a non-constant bad list make the function return
 *   NULL and leave the list unchanged.  Until first set: 127.0.0.1:4730.  The
 *   list lives in mysqld's memory only: set it again after a restart
 *   (install.sql does so).
 *
 * SQL:   gman_do_background(function, workload[, unique]) -> STRING
 *   CREATE FUNCTION gman_do_background RETURNS STRING SONAME 'gearsync_udf.so';
 *   Submits a background job and returns its job handle ("H:host:123").
 *   NULL behaviour: returns NULL -- it never raises -- when the job could not
 *   be submitted (gearmand down, hung past the timeout, bad arguments), so
 *   the statement goes on; a NULL or empty function also gives NULL.  A NULL
 *   workload is sent as an empty workload.  A NULL or empty unique makes the
 *   library generate one (see gs_thread.c); a caller's unique must be shorter
 *   than 64 bytes, or the result is NULL.
 *   Connection: one libgearman client per server thread, reused across rows
 *   and statements, rebuilt when the server list changes or the connection
 *   fails; every wait is bounded by the gearsync_timeout_set() timeout
 *   (default 250 ms).  See gs_client.c.
 */
#include "gearsync_udf.h"

#include <libgearman-1.0/gearman.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

GS_EXPORT my_bool gman_servers_set_init(UDF_INIT *initid, UDF_ARGS *args,
                                        char *message);
GS_EXPORT void gman_servers_set_deinit(UDF_INIT *initid);
GS_EXPORT char *gman_servers_set(UDF_INIT *initid, UDF_ARGS *args,
                                 char *result, unsigned long *length,
                                 char *is_null, char *error);
GS_EXPORT my_bool gman_do_background_init(UDF_INIT *initid, UDF_ARGS *args,
                                          char *message);
GS_EXPORT void gman_do_background_deinit(UDF_INIT *initid);
GS_EXPORT char *gman_do_background(UDF_INIT *initid, UDF_ARGS *args,
                                   char *result, unsigned long *length,
                                   char *is_null, char *error);

/* ------------------------------------------------------ gman_servers_set */

my_bool gman_servers_set_init(UDF_INIT *initid, UDF_ARGS *args, char *message)
{
    if (args->arg_count != 1) {
        snprintf(message, MYSQL_ERRMSG_SIZE,
                 "gman_servers_set: expects 1 argument (servers)");
        return 1;
    }
    args->arg_type[0] = STRING_RESULT;
    if (args->args[0] != NULL) { /* constant: validate now */
        char tmp[GS_SERVERS_MAX_LEN];
        const char *why = "invalid server list";
        if (gs_servers_normalise(args->args[0], args->lengths[0], tmp,
                                 sizeof tmp, &why)) {
            snprintf(message, MYSQL_ERRMSG_SIZE, "gman_servers_set: %s", why);
            return 1;
        }
    } /* else not constant: checked per row */
    initid->ptr = malloc(GS_SERVERS_MAX_LEN);
    if (initid->ptr == NULL) {
        snprintf(message, MYSQL_ERRMSG_SIZE, "gman_servers_set: out of memory");
        return 1;
    }
    initid->maybe_null = 1;
    initid->max_length = GS_SERVERS_MAX_LEN;
    initid->const_item = 0;
    return 0;
}

void gman_servers_set_deinit(UDF_INIT *initid)
{
    free(initid->ptr);
    initid->ptr = NULL;
}

char *gman_servers_set(UDF_INIT *initid, UDF_ARGS *args, char *result,
                       unsigned long *length, char *is_null, char *error)
{
    const char *why;

    (void)result;
    (void)error;
    if (args->args[0] == NULL ||
        gs_servers_normalise(args->args[0], args->lengths[0], initid->ptr,
                             GS_SERVERS_MAX_LEN, &why) ||
        gs_servers_set(initid->ptr)) {
        *is_null = 1;
        return NULL;
    }
    *length = (unsigned long)strlen(initid->ptr);
    return initid->ptr;
}

/* ---------------------------------------------------- gman_do_background */

my_bool gman_do_background_init(UDF_INIT *initid, UDF_ARGS *args,
                                char *message)
{
    unsigned i;

    if (args->arg_count < 2 || args->arg_count > 3) {
        snprintf(message, MYSQL_ERRMSG_SIZE,
                 "gman_do_background: expects (function, workload[, unique])");
        return 1;
    }
    for (i = 0; i < args->arg_count; i++)
        args->arg_type[i] = STRING_RESULT;
    initid->ptr = NULL; /* nothing per statement: triggers init per row */
    initid->maybe_null = 1;
    initid->max_length = GEARMAN_JOB_HANDLE_SIZE;
    initid->const_item = 0;
    return 0;
}

void gman_do_background_deinit(UDF_INIT *initid)
{
    (void)initid;
}

/* Copy a non-empty string argument without NULs into out (NUL-terminated). */
static int gs_arg_cstr(const UDF_ARGS *args, unsigned i, char *out,
                       size_t outsz)
{
    size_t n = args->lengths[i];

    if (args->args[i] == NULL || n == 0 || n >= outsz ||
        memchr(args->args[i], '\0', n) != NULL)
        return -1;
    memcpy(out, args->args[i], n);
    out[n] = '\0';
    return 0;
}

char *gman_do_background(UDF_INIT *initid, UDF_ARGS *args, char *result,
                         unsigned long *length, char *is_null, char *error)
{
    char function[GEARMAN_FUNCTION_MAX_SIZE];
    char unique[GEARMAN_MAX_UNIQUE_SIZE];
    char handle[GEARMAN_JOB_HANDLE_SIZE + 1];
    const char *u = NULL;
    size_t wlen = args->args[1] ? args->lengths[1] : 0;
    /* libgearman wants NULL (not "") for an empty workload */
    const char *workload = wlen ? args->args[1] : NULL;

    (void)initid;
    (void)error;
    if (gs_arg_cstr(args, 0, function, sizeof function))
        goto null;
    if (args->arg_count > 2 && args->args[2] != NULL && args->lengths[2] > 0) {
        if (gs_arg_cstr(args, 2, unique, sizeof unique))
            goto null;
        u = unique;
    }
    memset(handle, 0, sizeof handle);
    if (gs_submit_background(function, u, workload, wlen, handle))
        goto null;
    *length = (unsigned long)strnlen(handle, GEARMAN_JOB_HANDLE_SIZE);
    memcpy(result, handle, *length); /* result holds 255 bytes */
    return result;
null:
    *is_null = 1;
    return NULL;
}
