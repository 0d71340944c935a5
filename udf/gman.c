/*
 * gman.c -- gman_* functions: hand jobs to gearmand (the gearman-mysql-udf
 * API, same names, arguments and return types).
 *
 * SQL:   gman_servers_set(servers[, function]) -> STRING
 *   CREATE FUNCTION gman_servers_set RETURNS STRING SONAME 'gearsync_udf.so';
 *   Sets the process-wide job-server list "host[:port][,host[:port]]..."
 *   (IPv6 as [addr]:port; default port 4730; at most 32 servers), or with a
 *   function name the list used for that Gearman function only.  Returns the
 *   normalised list it set, e.g. gman_servers_set('gm1, gm2:4731') ->
 *   'gm1:4730,gm2:4731'.  The first server is the primary, the others take
 *   over in order while it is down (see gs_client.c).
 *   NULL behaviour: a constant empty or malformed list is refused by _init
 *   with an error; NULL (constant or not: mysqld shows both as a NULL pointer
 *   at init) and a non-constant bad list return NULL and change nothing; a
 *   NULL or empty function sets the default list.  Until first set: the
 *   list of GEARSYNC_UDF_SERVERS or of the config file (gs_config.c), else
 *   127.0.0.1:4730.  When gearsync_udf.cnf says lock = on, _init refuses
 *   for every login: "gman_servers_set: locked by gearsync_udf.cnf (lock =
 *   on)".
 *
 * SQL:   gman_do(function, workload[, unique]) -> STRING
 *        gman_do_high(...), gman_do_low(...)       (job priority)
 *   CREATE FUNCTION gman_do RETURNS STRING SONAME 'gearsync_udf.so';
 *   Runs a foreground job and returns the worker's result.  Waits at most
 *   gearsync_do_timeout_set() ms (default 5000).  NULL when no server took
 *   the job, the worker failed, or the result did not come in time.
 *
 * SQL:   gman_do_background(function, workload[, unique]) -> STRING
 *        gman_do_high_background(...), gman_do_low_background(...)
 *   CREATE FUNCTION gman_do_background RETURNS STRING SONAME 'gearsync_udf.so';
 *   Queues a background job and returns its job handle ("H:host:123").
 *   NULL -- never an error -- when no server took the job within
 *   gearsync_timeout_set() ms (default 250), or every server's breaker is
 *   open, so the statement goes on.  Strict triggers turn that NULL into an
 *   error: IF gman_do_background(...) IS NULL THEN SIGNAL SQLSTATE '45000'
 *   SET MESSAGE_TEXT = 'gearsync: job not queued'; END IF;
 *
 * SQL:   gman_sum(function, workload) -> INTEGER        (aggregate)
 *   CREATE AGGREGATE FUNCTION gman_sum RETURNS INTEGER SONAME 'gearsync_udf.so';
 *   Runs one foreground job per row and returns the sum of the results read
 *   as integers.  NULL when the group is empty, or when any job failed or
 *   returned something that is not an integer (the remaining rows of the
 *   group are then not submitted: one timeout at most per group).
 *
 * Arguments of every gman_do*: function must be a non-empty string without
 * NUL bytes, shorter than 512 bytes, else the result is NULL.  A NULL
 * workload is sent as an empty one; numbers are sent as their text.  A NULL
 * or empty unique makes the library generate one (gs_thread.c); a caller's
 * unique must be shorter than 64 bytes without NULs, or the result is NULL.
 */
#include "gearsync_udf.h"
#include "gs_args.h"
#include "gs_client.h"
#include "gs_config.h"
#include "gs_servers.h"

#include <errno.h>
#include <libgearman-1.0/gearman.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GS_DECLARE_STRING_UDF(name)                                           \
    GS_EXPORT my_bool name##_init(UDF_INIT *initid, UDF_ARGS *args,          \
                                  char *message);                            \
    GS_EXPORT void name##_deinit(UDF_INIT *initid);                           \
    GS_EXPORT char *name(UDF_INIT *initid, UDF_ARGS *args, char *result,      \
                         unsigned long *length, char *is_null, char *error);

GS_DECLARE_STRING_UDF(gman_servers_set)
GS_DECLARE_STRING_UDF(gman_do)
GS_DECLARE_STRING_UDF(gman_do_high)
GS_DECLARE_STRING_UDF(gman_do_low)
GS_DECLARE_STRING_UDF(gman_do_background)
GS_DECLARE_STRING_UDF(gman_do_high_background)
GS_DECLARE_STRING_UDF(gman_do_low_background)

GS_EXPORT my_bool gman_sum_init(UDF_INIT *initid, UDF_ARGS *args,
                                char *message);
GS_EXPORT void gman_sum_deinit(UDF_INIT *initid);
GS_EXPORT void gman_sum_clear(UDF_INIT *initid, char *is_null, char *error);
GS_EXPORT void gman_sum_reset(UDF_INIT *initid, UDF_ARGS *args, char *is_null,
                              char *error);
GS_EXPORT void gman_sum_add(UDF_INIT *initid, UDF_ARGS *args, char *is_null,
                            char *error);
GS_EXPORT long long gman_sum(UDF_INIT *initid, UDF_ARGS *args, char *is_null,
                             char *error);

/* ------------------------------------------------------ gman_servers_set */

my_bool gman_servers_set_init(UDF_INIT *initid, UDF_ARGS *args, char *message)
{
    if (args->arg_count < 1 || args->arg_count > 2) {
        snprintf(message, MYSQL_ERRMSG_SIZE,
                 "gman_servers_set: expects (servers[, function])");
        return 1;
    }
    if (gs_config_locked()) { /* reads the file first: it wins over us */
        snprintf(message, MYSQL_ERRMSG_SIZE, GS_LOCKED_MESSAGE,
                 "gman_servers_set");
        return 1;
    }
    /* constant: validate now -- only a string constant (at init a constant
       is in its own type; a number is converted to text per row) */
    if (args->args[0] != NULL && args->arg_type[0] == STRING_RESULT) {
        char tmp[GS_SERVERS_MAX_LEN];
        const char *why = "invalid server list";
        if (gs_servers_normalise(args->args[0], args->lengths[0], tmp,
                                 sizeof tmp, &why)) {
            snprintf(message, MYSQL_ERRMSG_SIZE, "gman_servers_set: %s", why);
            return 1;
        }
    } /* else not constant: checked per row */
    args->arg_type[0] = STRING_RESULT;
    if (args->arg_count > 1)
        args->arg_type[1] = STRING_RESULT;
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
    char function[GS_FUNCTION_MAX_LEN];
    const char *fn = NULL;
    const char *why;

    (void)result;
    (void)error;
    if (args->arg_count > 1 && args->args[1] != NULL && args->lengths[1] > 0) {
        if (gs_arg_cstr(args, 1, function, sizeof function))
            goto null;
        fn = function;
    }
    if (args->args[0] == NULL ||
        gs_servers_normalise(args->args[0], args->lengths[0], initid->ptr,
                             GS_SERVERS_MAX_LEN, &why) ||
        gs_servers_set(initid->ptr, fn))
        goto null;
    *length = (unsigned long)strlen(initid->ptr);
    return initid->ptr;
null:
    *is_null = 1;
    return NULL;
}

/* ------------------------------------------------------------ gman_do* */

static my_bool gs_do_init(const char *name, int foreground, UDF_INIT *initid,
                          UDF_ARGS *args, char *message)
{
    unsigned i;

    if (args->arg_count < 2 || args->arg_count > 3) {
        snprintf(message, MYSQL_ERRMSG_SIZE,
                 "%s: expects (function, workload[, unique])", name);
        return 1;
    }
    gs_config_load();
    for (i = 0; i < args->arg_count; i++)
        args->arg_type[i] = STRING_RESULT;
    initid->ptr = NULL; /* gman_do*: the last result, freed next row/deinit */
    initid->maybe_null = 1;
    initid->max_length =
        foreground ? GS_MAX_RESULT_LENGTH : GEARMAN_JOB_HANDLE_SIZE;
    initid->const_item = 0;
    return 0;
}

static void gs_do_deinit(UDF_INIT *initid)
{
    free(initid->ptr);
    initid->ptr = NULL;
}

/* function / unique of a gman_do* row; -1 if invalid. */
static int gs_do_args(const UDF_ARGS *args, char *function, char *unique,
                      const char **u)
{
    *u = NULL;
    if (gs_arg_cstr(args, 0, function, GEARMAN_FUNCTION_MAX_SIZE))
        return -1;
    if (args->arg_count > 2 && args->args[2] != NULL && args->lengths[2] > 0) {
        if (gs_arg_cstr(args, 2, unique, GEARMAN_MAX_UNIQUE_SIZE))
            return -1;
        *u = unique;
    }
    return 0;
}

static char *gs_do(int prio, UDF_INIT *initid, UDF_ARGS *args,
                   unsigned long *length, char *is_null)
{
    char function[GEARMAN_FUNCTION_MAX_SIZE];
    char unique[GEARMAN_MAX_UNIQUE_SIZE];
    const char *u;
    size_t wlen = args->args[1] ? args->lengths[1] : 0;
    const char *workload = wlen ? args->args[1] : NULL;
    void *res;
    size_t rlen;

    free(initid->ptr);
    initid->ptr = NULL;
    if (gs_do_args(args, function, unique, &u) ||
        gs_submit_foreground(function, u, workload, wlen, prio, &res, &rlen)) {
        *is_null = 1;
        return NULL;
    }
    if (rlen > GS_MAX_RESULT_LENGTH)
        rlen = GS_MAX_RESULT_LENGTH;
    initid->ptr = res;
    *length = (unsigned long)rlen;
    return res != NULL ? (char *)res : (char *)"";
}

static char *gs_do_bg(int prio, UDF_ARGS *args, char *result,
                      unsigned long *length, char *is_null)
{
    char function[GEARMAN_FUNCTION_MAX_SIZE];
    char unique[GEARMAN_MAX_UNIQUE_SIZE];
    char handle[GEARMAN_JOB_HANDLE_SIZE + 1];
    const char *u;
    size_t wlen = args->args[1] ? args->lengths[1] : 0;
    /* libgearman wants NULL (not "") for an empty workload */
    const char *workload = wlen ? args->args[1] : NULL;

    memset(handle, 0, sizeof handle);
    if (gs_do_args(args, function, unique, &u) ||
        gs_submit_background(function, u, workload, wlen, prio, handle)) {
        *is_null = 1;
        return NULL;
    }
    *length = (unsigned long)strnlen(handle, GEARMAN_JOB_HANDLE_SIZE);
    memcpy(result, handle, *length); /* result holds 255 bytes */
    return result;
}

#define GS_DEFINE_DO(name, fg, prio)                                          \
    my_bool name##_init(UDF_INIT *initid, UDF_ARGS *args, char *message)      \
    {                                                                         \
        return gs_do_init(#name, fg, initid, args, message);                  \
    }                                                                         \
    void name##_deinit(UDF_INIT *initid) { gs_do_deinit(initid); }            \
    char *name(UDF_INIT *initid, UDF_ARGS *args, char *result,                \
               unsigned long *length, char *is_null, char *error)             \
    {                                                                         \
        (void)error;                                                          \
        if (fg)                                                               \
            return gs_do(prio, initid, args, length, is_null);                \
        return gs_do_bg(prio, args, result, length, is_null);                 \
    }

GS_DEFINE_DO(gman_do, 1, GS_PRIO_NORMAL)
GS_DEFINE_DO(gman_do_high, 1, GS_PRIO_HIGH)
GS_DEFINE_DO(gman_do_low, 1, GS_PRIO_LOW)
GS_DEFINE_DO(gman_do_background, 0, GS_PRIO_NORMAL)
GS_DEFINE_DO(gman_do_high_background, 0, GS_PRIO_HIGH)
GS_DEFINE_DO(gman_do_low_background, 0, GS_PRIO_LOW)

/* --------------------------------------------------------------- gman_sum */

typedef struct {
    long long sum;
    unsigned long long rows;
    int failed;
} gs_sum;

my_bool gman_sum_init(UDF_INIT *initid, UDF_ARGS *args, char *message)
{
    if (args->arg_count != 2) {
        snprintf(message, MYSQL_ERRMSG_SIZE,
                 "gman_sum: expects (function, workload)");
        return 1;
    }
    gs_config_load();
    args->arg_type[0] = STRING_RESULT;
    args->arg_type[1] = STRING_RESULT;
    initid->ptr = calloc(1, sizeof(gs_sum));
    if (initid->ptr == NULL) {
        snprintf(message, MYSQL_ERRMSG_SIZE, "gman_sum: out of memory");
        return 1;
    }
    initid->maybe_null = 1;
    initid->const_item = 0;
    return 0;
}

void gman_sum_deinit(UDF_INIT *initid)
{
    free(initid->ptr);
    initid->ptr = NULL;
}

void gman_sum_clear(UDF_INIT *initid, char *is_null, char *error)
{
    gs_sum *s = (gs_sum *)initid->ptr;

    (void)is_null;
    (void)error;
    memset(s, 0, sizeof *s);
}

/* A worker's result as an integer: optional blanks, sign, digits, blanks. */
static int gs_parse_integer(const char *p, size_t n, long long *out)
{
    char tmp[32];
    char *end;
    long long v;

    while (n > 0 && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++, n--;
    while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t' ||
                     p[n - 1] == '\n' || p[n - 1] == '\r'))
        n--;
    if (n == 0 || n >= sizeof tmp)
        return -1;
    memcpy(tmp, p, n);
    tmp[n] = '\0';
    errno = 0;
    v = strtoll(tmp, &end, 10);
    if (errno || *end != '\0' || end == tmp)
        return -1;
    *out = v;
    return 0;
}

void gman_sum_add(UDF_INIT *initid, UDF_ARGS *args, char *is_null,
                  char *error)
{
    gs_sum *s = (gs_sum *)initid->ptr;
    char function[GEARMAN_FUNCTION_MAX_SIZE];
    size_t wlen = args->args[1] ? args->lengths[1] : 0;
    const char *workload = wlen ? args->args[1] : NULL;
    void *res = NULL;
    size_t rlen = 0;
    long long v;

    (void)is_null;
    (void)error;
    s->rows++;
    if (s->failed)
        return;
    if (gs_arg_cstr(args, 0, function, sizeof function) ||
        gs_submit_foreground(function, NULL, workload, wlen, GS_PRIO_NORMAL,
                             &res, &rlen) ||
        gs_parse_integer(res, res ? rlen : 0, &v) ||
        __builtin_add_overflow(s->sum, v, &s->sum))
        s->failed = 1;
    free(res);
}

void gman_sum_reset(UDF_INIT *initid, UDF_ARGS *args, char *is_null,
                    char *error)
{
    gman_sum_clear(initid, is_null, error);
    gman_sum_add(initid, args, is_null, error);
}

long long gman_sum(UDF_INIT *initid, UDF_ARGS *args, char *is_null,
                   char *error)
{
    gs_sum *s = (gs_sum *)initid->ptr;

    (void)args;
    (void)error;
    if (s->rows == 0 || s->failed) {
        *is_null = 1;
        return 0;
    }
    return s->sum;
}
