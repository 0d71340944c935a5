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
 * SQL:   gearsync_send_change(function, source, op, key, old_key, pk) -> STRING
 *   CREATE FUNCTION gearsync_send_change RETURNS STRING SONAME 'gearsync_udf.so';
 *   What a direct-mode trigger made by `gearsync install` sends: the same as
 *     gearsync_send(function, JSON_OBJECT('s', source, 'o', op, 'k', HEX(key),
 *                   'ok', HEX(old_key), 'pk', pk), key)
 *   with the JSON built here instead of by the server's JSON_OBJECT, HEX
 *   and a second evaluation of the key (measured: a 20,000-row INSERT with
 *   the generated trigger ran 1.3-1.5x faster).  source and op become JSON
 *   strings (gs_json_escape), key and old_key upper-case hex strings, and
 *   pk -- the primary key as JSON_ARRAY(...) text -- is nested as is
 *   (gs_json_raw) after a strict validation; a NULL argument is JSON null.  Returns what
 *   gearsync_send returns, and NULL also when pk is not one valid JSON
 *   value (nothing is sent then).
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
#include "gs_json.h"
#include "gs_sender.h"
#include "gs_seq.h"
#include "gs_thread.h"
#include "gs_timeouts.h"

#include <stdio.h>
#include <string.h>

GS_EXPORT my_bool gearsync_send_init(UDF_INIT *initid, UDF_ARGS *args,
                                     char *message);
GS_EXPORT void gearsync_send_deinit(UDF_INIT *initid);
GS_EXPORT char *gearsync_send(UDF_INIT *initid, UDF_ARGS *args, char *result,
                              unsigned long *length, char *is_null,
                              char *error);
GS_EXPORT my_bool gearsync_send_change_init(UDF_INIT *initid, UDF_ARGS *args,
                                            char *message);
GS_EXPORT void gearsync_send_change_deinit(UDF_INIT *initid);
GS_EXPORT char *gearsync_send_change(UDF_INIT *initid, UDF_ARGS *args,
                                     char *result, unsigned long *length,
                                     char *is_null, char *error);

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

/* Take a version and queue (version, payload) for function args[0] with
   the route hash; the version as decimal text in result, or NULL when the
   function name is unusable or the sender did not accept the record. */
static char *gs_send_record(UDF_ARGS *args, const char *payload, size_t plen,
                            uint32_t route, char *result,
                            unsigned long *length, char *is_null)
{
    const char *fn = args->args[0];
    size_t flen = fn != NULL ? args->lengths[0] : 0;
    uint64_t version;
    int n;

    if (fn == NULL || flen == 0 || flen > GS_FUNCTION_NAME_MAX ||
        memchr(fn, '\0', flen) != NULL)
        goto null;
    version = gs_seq_next(); /* in the trigger: under the row's lock */
    if (gs_sender_submit(fn, flen, payload, plen, route, version))
        goto null;
    n = snprintf(result, 255, "%llu", (unsigned long long)version);
    *length = (unsigned long)n;
    return result;
null:
    *is_null = 1;
    return NULL;
}

char *gearsync_send(UDF_INIT *initid, UDF_ARGS *args, char *result,
                    unsigned long *length, char *is_null, char *error)
{
    uint32_t route = 0;

    (void)initid;
    (void)error;
    if (args->arg_count > 2 && args->args[2] != NULL)
        route = gs_route_hash(args->args[2], args->lengths[2]);
    return gs_send_record(args, args->args[1],
                          args->args[1] != NULL ? args->lengths[1] : 0, route,
                          result, length, is_null);
}

/* --------------------------------------------------- gearsync_send_change */

enum { GS_CH_FN, GS_CH_SOURCE, GS_CH_OP, GS_CH_KEY, GS_CH_OLD, GS_CH_PK,
       GS_CH_ARGS };

my_bool gearsync_send_change_init(UDF_INIT *initid, UDF_ARGS *args,
                                  char *message)
{
    unsigned i;

    if (args->arg_count != GS_CH_ARGS) {
        snprintf(message, MYSQL_ERRMSG_SIZE,
                 "gearsync_send_change: expects (function, source, op, key, "
                 "old_key, pk)");
        return 1;
    }
    gs_config_load();
    for (i = 0; i < args->arg_count; i++)
        args->arg_type[i] = STRING_RESULT;
    /* the JSON is built in the thread's cached buffer: a trigger runs
       _init/_deinit once per row, and nothing is allocated once warm */
    initid->ptr = (char *)gs_json_buf_take();
    if (initid->ptr == NULL) {
        snprintf(message, MYSQL_ERRMSG_SIZE,
                 "gearsync_send_change: out of memory");
        return 1;
    }
    initid->maybe_null = 1;
    initid->max_length = 20; /* a u64 in decimal */
    initid->const_item = 0;
    return 0;
}

void gearsync_send_change_deinit(UDF_INIT *initid)
{
    if (initid->ptr != NULL) {
        gs_json_buf_give((gs_buf *)initid->ptr);
        initid->ptr = NULL;
    }
}

/* args[i] as a JSON string of its bytes in upper-case hex (HEX()), or null. */
static int gs_append_hex(gs_buf *b, const UDF_ARGS *args, unsigned i)
{
    static const char digits[] = "0123456789ABCDEF";
    const unsigned char *p = (const unsigned char *)args->args[i];
    size_t n = args->lengths[i], k;
    char *out;

    if (p == NULL)
        return gs_buf_append(b, "null", 4);
    if (n > (SIZE_MAX - 2) / 2 || gs_buf_reserve(b, 2 * n + 2))
        return -1;
    out = b->data + b->len;
    *out++ = '"';
    for (k = 0; k < n; k++) {
        *out++ = digits[p[k] >> 4];
        *out++ = digits[p[k] & 15];
    }
    *out = '"';
    b->len += 2 * n + 2;
    return 0;
}

/* args[i] as a JSON string (gs_json_escape), or null. */
static int gs_append_text(gs_buf *b, const UDF_ARGS *args, unsigned i)
{
    if (args->args[i] == NULL)
        return gs_buf_append(b, "null", 4);
    return gs_json_escape(b, args->args[i], args->lengths[i]);
}

char *gearsync_send_change(UDF_INIT *initid, UDF_ARGS *args, char *result,
                           unsigned long *length, char *is_null, char *error)
{
    gs_buf *b = (gs_buf *)initid->ptr;
    const char *pk = args->args[GS_CH_PK];
    size_t pklen = pk != NULL ? args->lengths[GS_CH_PK] : 0;
    uint32_t route = 0;

    (void)error;
    /* the trigger passes JSON_ARRAY(...): anything else names no row */
    if (pk != NULL && !gs_json_valid(pk, pklen, GS_JV_VALUE))
        goto null;
    b->len = 0;
    if (gs_buf_append(b, "{\"s\":", 5) || gs_append_text(b, args, GS_CH_SOURCE) ||
        gs_buf_append(b, ",\"o\":", 5) || gs_append_text(b, args, GS_CH_OP) ||
        gs_buf_append(b, ",\"k\":", 5) || gs_append_hex(b, args, GS_CH_KEY) ||
        gs_buf_append(b, ",\"ok\":", 6) || gs_append_hex(b, args, GS_CH_OLD) ||
        gs_buf_append(b, ",\"pk\":", 6) ||
        (pk != NULL ? gs_json_raw(b, pk, pklen) : gs_buf_append(b, "null", 4)) ||
        gs_buf_append(b, "}", 1))
        goto null; /* out of memory: not accepted */
    if (args->args[GS_CH_KEY] != NULL)
        route = gs_route_hash(args->args[GS_CH_KEY], args->lengths[GS_CH_KEY]);
    return gs_send_record(args, b->data, b->len, route, result, length,
                          is_null);
null:
    *is_null = 1;
    return NULL;
}

/* ---------------------------------------------------- gearsync_send_flush */

GS_DEFINE_INT_UDF(gearsync_send_flush,
                  gs_init_no_args("gearsync_send_flush", initid, args, message),
                  gs_sender_flush(gs_timeout_get(GS_TIMEOUT_BG)))
