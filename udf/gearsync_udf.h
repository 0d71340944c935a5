/*
 * gearsync_udf.h -- shared declarations of the gearsync UDF library.
 *
 * gearsync_udf.so is loaded by mysqld/mariadbd (CREATE FUNCTION ... SONAME
 * 'gearsync_udf.so').  It must be built against the *server's* UDF struct
 * layout: UDF_ARGS with attributes/attribute_lengths (argument aliases, the
 * keys of json_object) and UDF_INIT with extension.  Connector/C's headers
 * (what `mysql_config --cflags` names first) lack them, so udf.mk puts
 * $(mysql_config --variable=pkgincludedir)/server first on the include path.
 *
 * Exported symbols: only the SQL functions (xxx, xxx_init, xxx_deinit).  The
 * library is compiled with -fvisibility=hidden; GS_EXPORT marks the few
 * symbols mysqld must find.  Every helper is static or gs_-prefixed (and
 * hidden).
 *
 * Documented behaviour shared by several functions
 * ------------------------------------------------
 * JSON strings (gs_json_escape):
 *   - `"` and `\` are escaped; every control character U+0000..U+001F is
 *     escaped (\b \t \n \f \r as short escapes, the others as \u00XX);
 *     0x7F is copied as is (legal in JSON).
 *   - Well-formed UTF-8 (RFC 3629: no overlongs, no surrogates, <= U+10FFFF)
 *     is copied byte for byte.
 *   - Ill-formed UTF-8: each maximal ill-formed subpart (Unicode 15 ch. 3,
 *     "U+FFFD substitution of maximal subparts", the rule of Python's
 *     bytes.decode('utf-8', 'replace') and of the WHATWG decoder) is
 *     replaced by one \ufffd escape.  Arguments must therefore be utf8/
 *     utf8mb4 text; convert other character sets in SQL with
 *     CONVERT(col USING utf8mb4).
 *   Output is always valid RFC 8259 JSON, whatever the input bytes.
 */
#ifndef GEARSYNC_UDF_H
#define GEARSYNC_UDF_H

#include <stddef.h>
#include <stdint.h>
#include <mysql.h>

#ifndef GEARSYNC_VERSION
#error "GEARSYNC_VERSION must be defined (-DGEARSYNC_VERSION=\"x.y.z\")"
#endif

/* MySQL 8.0 removed my_bool and declares the UDF entry points with bool. */
#if !defined(MARIADB_BASE_VERSION) && defined(MYSQL_VERSION_ID) && \
    MYSQL_VERSION_ID >= 80000
#include <stdbool.h>
typedef bool my_bool;
#endif

#ifndef MYSQL_ERRMSG_SIZE
#define MYSQL_ERRMSG_SIZE 512
#endif

#define GS_EXPORT __attribute__((visibility("default")))
#define GS_HIDDEN __attribute__((visibility("hidden")))

/* ------------------------------------------------------------------ limits */
/* max_length announced by string functions that can return big results
   (MEDIUMTEXT-sized: 16 MiB - 1). */
#define GS_MAX_RESULT_LENGTH 0xFFFFFFUL
/* A json_object buffer up to this size is cached per thread after _deinit
   (triggers run _init/_deinit per row); larger ones are freed. */
#define GS_JSON_CACHE_MAX (64UL * 1024UL)
#define GS_JSON_INITIAL_CAP 1024UL
/* gearman client timeout (connect, send, wait for JOB_CREATED), ms. */
#define GS_TIMEOUT_DEFAULT_MS 250
#define GS_TIMEOUT_MAX_MS 3600000
#define GS_TIMEOUT_ENV "GEARSYNC_UDF_TIMEOUT_MS"
#define GS_DEFAULT_SERVERS "127.0.0.1:4730"
#define GS_DEFAULT_PORT 4730
#define GS_MAX_SERVERS 32
#define GS_SERVERS_MAX_LEN 4096

/* ------------------------------------------------------ growable buffer */
typedef struct gs_buf {
    char *data;
    size_t len;
    size_t cap;
} gs_buf;

int gs_buf_grow(gs_buf *b, size_t need) GS_HIDDEN; /* 0 ok, -1 ENOMEM */

static inline int gs_buf_reserve(gs_buf *b, size_t extra)
{
    if (b->cap - b->len >= extra)
        return 0;
    return gs_buf_grow(b, extra);
}

/* ------------------------------------------------------------ JSON text */
/* Append s[0..n) as a JSON string, quotes included.  -1 on ENOMEM. */
int gs_json_escape(gs_buf *b, const char *s, size_t n) GS_HIDDEN;
/* Append a double: shortest of %.15g/%.16g/%.17g that round-trips;
   NaN and +-Inf become null. */
int gs_json_double(gs_buf *b, double v) GS_HIDDEN;
int gs_json_int(gs_buf *b, long long v) GS_HIDDEN;
/* Append a DECIMAL's digit string as a JSON number if it is one by RFC 8259
   grammar, else as a JSON string. */
int gs_json_decimal(gs_buf *b, const char *s, size_t n) GS_HIDDEN;
/* Append one UDF argument as a JSON value (null when args[i] is NULL). */
int gs_json_arg(gs_buf *b, const UDF_ARGS *args, unsigned i) GS_HIDDEN;
/* Member name of argument i: its attribute (alias); a dotted identifier path
   (t.col, `db`.`t`.`col`, NEW.id) is reduced to its last part, unquoted. */
void gs_json_key(const UDF_ARGS *args, unsigned i, const char **key,
                 size_t *len) GS_HIDDEN;

/* Strict RFC 8259 validation of s[0..n) (UTF-8 checked inside strings,
   nesting depth <= GS_JSON_MAX_DEPTH), in one of three shapes:
   GS_JV_VALUE    one JSON text, surrounding whitespace allowed;
   GS_JV_VALUES   one or more values separated by commas (json_values);
   GS_JV_MEMBERS  one or more "name":value separated by commas (json_members).
   1 valid, 0 not. */
#define GS_JSON_MAX_DEPTH 512
enum { GS_JV_VALUE = 0, GS_JV_VALUES = 1, GS_JV_MEMBERS = 2 };
int gs_json_valid(const char *s, size_t n, int shape) GS_HIDDEN;
/* 1 if argument i asks to be nested raw: a non-NULL string whose member
   name (gs_json_key: alias, last part of t.col, or expression text) starts
   with json_ or udf_json_ (any case). */
int gs_json_nest_requested(const UDF_ARGS *args, unsigned i) GS_HIDDEN;
/* Append s[0..n) without its leading/trailing JSON whitespace. */
int gs_json_raw(gs_buf *b, const char *s, size_t n) GS_HIDDEN;

/* ------------------------------------------------ per-thread state */
struct gearman_client_st;

typedef struct gs_thread {
    struct gs_thread *next, *prev;   /* registry links (gs_registry_lock) */
    struct gs_conn *conns;           /* one client per job server (gs_client.c) */
    unsigned nconns;
    uint64_t conns_gen;              /* server-list generation they belong to */
    struct gs_route *route;          /* cached parsed list of the last function */
    uint64_t serial;                 /* unique per thread state, per process */
    uint64_t counter;                /* per-thread job counter (unique ids) */
    gs_buf *json_cache;              /* one spare json_object buffer */
    struct gs_pipe *pipe;            /* gearsync_send's connection (gs_pipe.c) */
} gs_thread;

/* The calling thread's state, created on first use; NULL on ENOMEM. */
gs_thread *gs_thread_get(void) GS_HIDDEN;
/* Fill out (>= GS_UNIQUE_LEN bytes) with a fresh unique id, NUL-terminated. */
#define GS_UNIQUE_LEN 64
void gs_thread_unique(gs_thread *t, char *out) GS_HIDDEN;
/* Cached json buffers: take one (or malloc), give one back (or free). */
gs_buf *gs_json_buf_take(void) GS_HIDDEN;
void gs_json_buf_give(gs_buf *b) GS_HIDDEN;

/* ------------------------------------------------ gearman client */
/* Foreground (gman_do*) timeout: how long a caller waits for the worker's
   result, ms.  Also bounds connect/send for foreground jobs. */
#define GS_DO_TIMEOUT_DEFAULT_MS 5000
#define GS_DO_TIMEOUT_ENV "GEARSYNC_UDF_DO_TIMEOUT_MS"
/* Circuit breaker per job server: open after a failed submit for
   min << (failures-1) ms, capped at max; one probe at a time when it lapses. */
#define GS_BREAKER_MIN_MS 100
#define GS_BREAKER_MAX_MS 2000
#define GS_BREAKER_SLOTS 64
/* Per-function server lists (gman_servers_set(servers, function)). */
#define GS_MAX_FUNCTION_LISTS 64
#define GS_FUNCTION_MAX_LEN 128
/* Config file next to the .so, or the path in this environment variable. */
#define GS_CONFIG_NAME "gearsync_udf.cnf"
#define GS_CONFIG_ENV "GEARSYNC_UDF_CONFIG"

/* Parse and normalise a server list ("h1[:p],[v6]:p,...") into
   out ("h1:4730,[v6]:p"); 0 ok, -1 invalid (msg gets a reason). */
int gs_servers_normalise(const char *in, size_t n, char *out, size_t outsz,
                         const char **why) GS_HIDDEN;
/* Install a normalised list process-wide (bumps the generation); with a
   function name (not NULL/""), only for that function. */
int gs_servers_set(const char *normalised, const char *function) GS_HIDDEN;
/* The same without loading the config file first (used by its reader). */
int gs_servers_install(const char *normalised, const char *function) GS_HIDDEN;
/* One parsed entry of a server list. */
typedef struct {
    char host[256];
    unsigned port;
    int v6;
} gs_server;
/* Call fn for each entry of in[0..n); -1 with *why on the first invalid one
   (or when fn returns non-zero). */
int gs_parse_list(const char *in, size_t n, const char **why,
                  int (*fn)(const gs_server *, void *), void *ctx) GS_HIDDEN;
/* Generation of the lists (bumped by every change). */
uint64_t gs_servers_generation(void) GS_HIDDEN;
/* Copy the list used for function into out; returns its generation. */
uint64_t gs_servers_lookup(const char *function, char *out, size_t outsz) GS_HIDDEN;
/* Copy the current default list into out. */
void gs_servers_get(char *out, size_t outsz) GS_HIDDEN;
int gs_timeout_get(void) GS_HIDDEN;
void gs_timeout_set(int ms) GS_HIDDEN;
int gs_do_timeout_get(void) GS_HIDDEN;
/* Setters that do not load the config file first (used by its reader). */
void gs_timeout_store(int ms) GS_HIDDEN;
void gs_do_timeout_store(int ms) GS_HIDDEN;
void gs_do_timeout_set(int ms) GS_HIDDEN;
/* Read the config file once (first use); every accessor calls it. */
void gs_config_load(void) GS_HIDDEN;
/* Apply one "key = value" setting; 0 ok, -1 unknown key / bad value. */
int gs_config_apply(const char *key, const char *value) GS_HIDDEN;
void gs_breaker_params(int *min_ms, int *max_ms) GS_HIDDEN;
void gs_breaker_set(int min_ms, int max_ms) GS_HIDDEN;
/* gs_breaker.c: 1 = go ahead (closed, or this caller is the probe), 0 = skip
   (open); then report the outcome of the attempt. */
#define GS_ADDR_LEN 272 /* "[" host(255) "]:" port(5) NUL */
int gs_breaker_allow(const char *addr, uint64_t now_ns) GS_HIDDEN;
void gs_breaker_report(const char *addr, int success) GS_HIDDEN;
uint64_t gs_now_ns(void) GS_HIDDEN; /* CLOCK_MONOTONIC */

/* Job priority / mode for gs_submit. */
enum gs_prio { GS_PRIO_NORMAL = 0, GS_PRIO_HIGH = 1, GS_PRIO_LOW = 2 };

/* Submit a background job; handle receives the job handle (>= 64 bytes).
   function and unique must be NUL-terminated; unique NULL = generate one.
   Tries the function's servers in list order, skipping servers whose
   breaker is open.  0 on success, -1 on failure. */
int gs_submit_background(const char *function, const char *unique,
                         const void *workload, size_t workload_len,
                         int prio, char *handle) GS_HIDDEN;
/* Run a foreground job and wait (bounded) for its result: *result is a
   malloc'ed buffer (may be NULL when the result is empty) the caller frees.
   0 on success, -1 on failure (no server took it, timeout, worker failed). */
int gs_submit_foreground(const char *function, const char *unique,
                         const void *workload, size_t workload_len, int prio,
                         void **result, size_t *result_len) GS_HIDDEN;
/* Free a thread's clients (thread exit / library unload). */
void gs_client_free(gs_thread *t) GS_HIDDEN;

#endif /* GEARSYNC_UDF_H */
