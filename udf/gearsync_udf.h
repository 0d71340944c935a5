/*
 * gearsync_udf.h -- the basics every file of the gearsync UDF library shares:
 * the version, the library-wide limits, the my_bool shim and the export
 * macros.  Each helper has its own small header (gs_<noun>.h); an SQL
 * function family (json.c, gman.c, send.c, settings.c, info.c) includes the
 * helpers it uses.
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
 * Include graph (arrows point at what a file uses; no cycles):
 *   SQL families -> gs_config, gs_client, gs_sender, gs_seq, gs_json, ...
 *   gs_library   -> gs_sender, gs_thread, gs_servers (load/unload order)
 *   gs_sender    -> gs_queue, gs_envelope, gs_config, gs_servers, gs_breaker,
 *                   gs_timeouts, gs_net, gs_buf, gs_clock, gs_log
 *   gs_client    -> gs_thread, gs_servers, gs_breaker, gs_timeouts, gs_clock
 *   gs_config    -> gs_servers, gs_timeouts, gs_breaker, gs_log
 *   gs_envelope  -> gs_sha256
 *   gs_breaker   -> gs_timeouts, gs_clock
 *   gs_thread    -> gs_buf, gs_timeouts, gs_clock
 *   gs_json      -> gs_buf
 *   leaves: gs_buf, gs_clock, gs_log, gs_net, gs_queue, gs_seq, gs_servers,
 *           gs_sha256, gs_timeouts
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
/* Job servers: at most this many per list, this long normalised. */
#define GS_DEFAULT_SERVERS "127.0.0.1:4730"
#define GS_DEFAULT_PORT 4730
#define GS_MAX_SERVERS 32
#define GS_SERVERS_MAX_LEN 4096
/* Gearman function names of per-function lists, NUL included. */
#define GS_FUNCTION_MAX_LEN 128
/* "[" host(255) "]:" port(5) NUL */
#define GS_ADDR_LEN 272

#endif /* GEARSYNC_UDF_H */
