/*
 * send.c -- gearsync_send / gearsync_send_flush: pipelined background jobs,
 * "one send, no wait" per row (the connection lives in gs_pipe.c).
 *
 * SQL:   gearsync_send(function, workload[, unique]) -> STRING
 *   CREATE FUNCTION gearsync_send RETURNS STRING SONAME 'gearsync_udf.so';
 *   Queues a background job (SUBMIT_JOB_BG) for `function` on the first
 *   reachable server of the gman_servers_set() list, over one TCP connection
 *   per server thread, WITHOUT waiting for gearmand's JOB_CREATED: the acks
 *   are read back on later calls, at most 1024 jobs / 1 MiB unacknowledged
 *   per thread before a call waits (up to the gearsync_timeout_set() timeout,
 *   default 250 ms).  Typical use, in a row trigger:
 *     DO gearsync_send('syncToRedis', udf_json_object(NEW.id AS id, NEW.name AS name))
 *   Returns the job's unique id (the job reference: the caller's unique, or
 *   a generated "gp-<nonce>-<thread>-<counter>") once the packet was handed
 *   to the socket.  Unlike gman_do_background, a non-NULL result does NOT
 *   prove gearmand queued the job: a job whose connection is lost before its
 *   ack arrives is reported (count only) in mysqld's error log as possibly
 *   lost.  gearsync_send_flush() waits for the acks.
 *   NULL behaviour: returns NULL -- it never raises -- when the job was not
 *   handed to a connection: no job server reachable (then for a backoff of
 *   100 ms .. 2 s every call returns NULL at once), window still full after
 *   the timeout (hung gearmand: the connection is dropped), a NULL or empty
 *   function or one longer than 511 bytes, a caller's unique longer than 63
 *   bytes or containing NUL.  A NULL workload is sent as an empty one; a
 *   NULL or empty unique makes the library generate one.  The workload is
 *   sent byte for byte (NUL bytes included).
 *
 * SQL:   gearsync_send_flush() -> INTEGER
 *   CREATE FUNCTION gearsync_send_flush RETURNS INTEGER SONAME 'gearsync_udf.so';
 *   Waits up to the timeout until gearmand has acknowledged every job that
 *   gearsync_send queued on THIS server thread (i.e. this connection, with
 *   one-thread-per-connection), and returns how many are still
 *   unacknowledged (including any lost while waiting): 0 = every job
 *   reached gearmand.  Never NULL.
 */
#include "gearsync_udf.h"
#include "gs_args.h"
#include "gs_config.h"
#include "gs_pipe.h"

#include <stdio.h>
#include <string.h>

GS_EXPORT my_bool gearsync_send_init(UDF_INIT *initid, UDF_ARGS *args,
                                     char *message);
GS_EXPORT void gearsync_send_deinit(UDF_INIT *initid);
GS_EXPORT char *gearsync_send(UDF_INIT *initid, UDF_ARGS *args, char *result,
                              unsigned long *length, char *is_null,
                              char *error);
GS_EXPORT my_bool gearsync_send_flush_init(UDF_INIT *initid, UDF_ARGS *args,
                                           char *message);
GS_EXPORT void gearsync_send_flush_deinit(UDF_INIT *initid);
GS_EXPORT long long gearsync_send_flush(UDF_INIT *initid, UDF_ARGS *args,
                                        char *is_null, char *error);

/* ---------------------------------------------------------- gearsync_send */

my_bool gearsync_send_init(UDF_INIT *initid, UDF_ARGS *args, char *message)
{
    unsigned i;

    if (args->arg_count < 2 || args->arg_count > 3) {
        snprintf(message, MYSQL_ERRMSG_SIZE,
                 "gearsync_send: expects (function, workload[, unique])");
        return 1;
    }
    gs_config_load();
    for (i = 0; i < args->arg_count; i++)
        args->arg_type[i] = STRING_RESULT;
    initid->ptr = NULL; /* nothing per statement: triggers init per row */
    initid->maybe_null = 1;
    initid->max_length = GS_PIPE_UNIQUE_MAX;
    initid->const_item = 0;
    return 0;
}

void gearsync_send_deinit(UDF_INIT *initid)
{
    (void)initid;
}

char *gearsync_send(UDF_INIT *initid, UDF_ARGS *args, char *result,
                    unsigned long *length, char *is_null, char *error)
{
    size_t ulen = 0;
    const char *unique = NULL;
    size_t n = 0;

    (void)initid;
    (void)error;
    if (args->arg_count > 2 && args->args[2] != NULL) {
        unique = args->args[2];
        ulen = args->lengths[2];
    }
    /* result holds 255 bytes >= GS_PIPE_UNIQUE_BUF */
    if (gs_pipe_send(args->args[0], args->args[0] ? args->lengths[0] : 0,
                     unique, ulen, args->args[1],
                     args->args[1] ? args->lengths[1] : 0, result, &n)) {
        *is_null = 1;
        return NULL;
    }
    *length = (unsigned long)n;
    return result;
}

/* ---------------------------------------------------- gearsync_send_flush */

my_bool gearsync_send_flush_init(UDF_INIT *initid, UDF_ARGS *args,
                                 char *message)
{
    return gs_init_no_args("gearsync_send_flush", initid, args, message);
}

void gearsync_send_flush_deinit(UDF_INIT *initid)
{
    (void)initid;
}

long long gearsync_send_flush(UDF_INIT *initid, UDF_ARGS *args, char *is_null,
                              char *error)
{
    (void)initid;
    (void)args;
    (void)is_null;
    (void)error;
    return gs_pipe_flush();
}
