/*
 * send.c -- gearsync_send / gearsync_send_flush: records
 * handed to the library's one sender per mysqld (gs_sender.c), batched into
 * background jobs whose workload is an envelope (gs_envelope.h).
 *
 * SQL:   gearsync_send(function, workload[, route]) -> STRING
 *   CREATE FUNCTION gearsync_send RETURNS STRING SONAME 'gearsync_udf.so';
 *   Takes a version (gearsync_seq's counter) for the record and copies
 *   (version, workload) into the sender's bounded queue, then returns the
 *   version as decimal text -- it never waits for the network.  The sender
 *   thread puts the queued records of one Gearman function into one
 *   background job (a batch of at most 256 records / 256 KiB) for the first
 *   reachable server of the gman_servers_set() list -- or, with spread = on
 *   in gearsync_udf.cnf, for the server the record's route picks -- keeps
 *   each batch until gearmand acknowledged it, and re-sends it after a lost
 *   connection (at-least-once).  Typical use, in a row trigger:
 *     DO gearsync_send('syncToRedis', udf_json_object(NEW.id AS id, NEW.name AS name))
 *   The job's workload is "GS1" flags record+ [mac]: per record its version
 *   (u64 BE), length (u32 BE) and bytes; with a secret in gearsync_udf.cnf
 *   an HMAC-SHA256 of function || NUL || the rest (gearsync/envelope.py
 *   decodes it).  route (any value; NULL = none) is hashed (FNV-1a); with
 *   spread = on the record goes to server (hash % N) of the default list,
 *   or the next live one in ring order, so one route keeps one server while
 *   the servers stay up; records without a route go to whichever server's
 *   connection is free first.  With spread off the route changes nothing
 *   (safe-mode triggers pass the outbox id there: any route will do).
 *   NULL behaviour: returns NULL -- it never raises -- only when the record
 *   was not accepted: the queue is full (gearmand unreachable or slower than
 *   the writers for long enough to fill queue_mib, 16 MiB by default; one
 *   error-log line per second says how many), the record is larger than a
 *   quarter of the queue, the function is NULL, empty, longer than 511 bytes
 *   or contains NUL, or the library is being unloaded.  A NULL workload is
 *   sent as an empty one; the workload is sent byte for byte.
 *
 * SQL:   gearsync_send_flush() -> INTEGER
 *   CREATE FUNCTION gearsync_send_flush RETURNS INTEGER SONAME 'gearsync_udf.so';
 *   Waits up to the background timeout until gearmand has acknowledged every
 *   record accepted so far in this mysqld (any connection's), and returns
 *   how many of them are still not: 0 = every record reached gearmand.
 *   Never NULL.
 *
 * gearsync_seq() (seq.c) returns a value of the same counter as the versions.
 */
#include "gearsync_udf.h"
#include "gs_args.h"
#include "gs_config.h"
#include "gs_sender.h"
#include "gs_seq.h"
#include "gs_timeouts.h"

#include <stdio.h>
#include <string.h>

GS_EXPORT my_bool gearsync_send_init(UDF_INIT *initid, UDF_ARGS *args,
                                     char *message);
GS_EXPORT void gearsync_send_deinit(UDF_INIT *initid);
GS_EXPORT char *gearsync_send(UDF_INIT *initid, UDF_ARGS *args, char *result,
                              unsigned long *length, char *is_null,
                              char *error);

/* ---------------------------------------------------------- gearsync_send */

/* FNV-1a, 32 bits: the route hash kept with each record; 0 means "no
   route", so a hash of 0 becomes 1. */
static uint32_t gs_route_hash(const char *s, size_t n)
{
    uint32_t h = 2166136261U;
    size_t i;

    for (i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 16777619U;
    return h != 0 ? h : 1;
}

my_bool gearsync_send_init(UDF_INIT *initid, UDF_ARGS *args, char *message)
{
    unsigned i;

    if (args->arg_count < 2 || args->arg_count > 3) {
        snprintf(message, MYSQL_ERRMSG_SIZE,
                 "gearsync_send: expects (function, workload[, route])");
        return 1;
    }
    gs_config_load();
    for (i = 0; i < args->arg_count; i++)
        args->arg_type[i] = STRING_RESULT;
    initid->ptr = NULL; /* nothing per statement: triggers init per row */
    initid->maybe_null = 1;
    initid->max_length = 20; /* a u64 in decimal */
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
    const char *fn = args->args[0];
    size_t flen = fn != NULL ? args->lengths[0] : 0;
    uint32_t route = 0;
    uint64_t version;
    int n;

    (void)initid;
    (void)error;
    if (fn == NULL || flen == 0 || flen > GS_FUNCTION_NAME_MAX ||
        memchr(fn, '\0', flen) != NULL)
        goto null;
    if (args->arg_count > 2 && args->args[2] != NULL)
        route = gs_route_hash(args->args[2], args->lengths[2]);
    version = gs_seq_next(); /* in the trigger: under the row's lock */
    if (gs_sender_submit(fn, flen, args->args[1],
                         args->args[1] != NULL ? args->lengths[1] : 0, route,
                         version))
        goto null;
    n = snprintf(result, 255, "%llu", (unsigned long long)version);
    *length = (unsigned long)n;
    return result;
null:
    *is_null = 1;
    return NULL;
}

/* ---------------------------------------------------- gearsync_send_flush */

GS_DEFINE_INT_UDF(gearsync_send_flush,
                  gs_init_no_args("gearsync_send_flush", initid, args, message),
                  gs_sender_flush(gs_timeout_get(GS_TIMEOUT_BG)))
