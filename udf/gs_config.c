/*
 * gs_config.c -- the library's config file, read once (no SQL symbols).  It
 * is what makes the job-server list survive a restart of the database server
 * without a manual SELECT gman_servers_set(...), and what locks the run-time
 * setters.
 *
 * Location: $GEARSYNC_UDF_CONFIG from mysqld's environment if set, else
 * gearsync_udf.cnf in the directory the library was loaded from (found with
 * dladdr, i.e. the server's @@plugin_dir).  A missing file is not an error:
 * the built-in defaults apply.
 *
 * Format: one "key = value" per line; blank lines and lines starting with #
 * or ; are ignored; keys:
 *   servers = host[:port][,host[:port]...]   default list (127.0.0.1:4730)
 *   servers.<function> = host[:port],...      list for one Gearman function
 *   timeout_ms = 250          background submit timeout (1..10000)
 *   do_timeout_ms = 5000      foreground gman_do* timeout (1..60000)
 *   breaker_min_ms = 100      first open period of a server's breaker
 *   breaker_max_ms = 2000     longest open period (0..3600000, >= min)
 *   lock = on|off             on: gman_servers_set, gearsync_timeout_set and
 *                             gearsync_do_timeout_set refuse at run time
 *                             (default off)
 *   queue_mib = 16            gearsync_send's queue: records queued or not
 *                             yet acknowledged by gearmand (1..1024 MiB)
 *   linger_us = 0             gearsync_send: a job carrying fewer than a
 *                             full batch waits until this long after the
 *                             connection's previous job (0..10000 us), so
 *                             rows arriving close together share one job:
 *                             less gearmand and worker CPU per row, up to
 *                             this much more latency; 0 (default): none
 *   spread = on|off           on: gearsync_send keeps a connection to every
 *                             server of the default list and sends each
 *                             record to server (route hash % N), failing
 *                             over in ring order; off (default): to the
 *                             first reachable server (gs_sender.c).  Only
 *                             the file sets it: no login can change it
 *   secret = <text>           HMAC-SHA256 key of the envelopes gearsync_send
 *   secret_file = <path>      produces: the text itself, or the whole content
 *                             of a file (one trailing newline dropped) that
 *                             only mysqld's user can read
 * The environment of mysqld wins over the file: GEARSYNC_UDF_SERVERS (the
 * default list), GEARSYNC_UDF_TIMEOUT_MS, GEARSYNC_UDF_DO_TIMEOUT_MS.
 * Run-time calls (gman_servers_set, gearsync_timeout_set,
 * gearsync_do_timeout_set) win over both until the next restart -- unless
 * lock = on.  A timeout above its maximum, from any source, is clamped to it.
 * Each problem (unreadable file, unknown key, bad value, a clamped timeout, a
 * secret readable by others) is one line of stderr -- mysqld's error log --
 * and the rest of the file still applies.  Once read, one line says where the
 * server list and the settings came from.
 */
#include "gs_config.h"
#include "gs_breaker.h"
#include "gs_log.h"
#include "gs_servers.h"
#include "gs_timeouts.h"

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define GS_BREAKER_LIMIT_MS 3600000L

static pthread_once_t gs_config_once = PTHREAD_ONCE_INIT;

/* Written once, by the pthread_once routine; read-only afterwards. */
static int gs_locked;
static int gs_spread;
static size_t gs_queue_bytes = (size_t)GS_QUEUE_MIB_DEFAULT << 20;
static long gs_linger_us = GS_LINGER_US_DEFAULT;
static unsigned char gs_secret[GS_SECRET_MAX];
static size_t gs_secret_len;

/* Where each setting came from, for the one summary line. */
typedef struct {
    char path[PATH_MAX];
    const char *file;     /* "read", "none" (missing), "unreadable" */
    const char *servers;  /* origin of the default list */
    const char *timeout, *do_timeout, *secret;
} gs_origin;

static char *gs_trim(char *s)
{
    char *e;
    while (*s == ' ' || *s == '\t')
        s++;
    e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' ||
                     e[-1] == '\n'))
        *--e = '\0';
    return s;
}

static int gs_parse_long(const char *v, long lo, long hi, long *out)
{
    char *end;
    long x;

    errno = 0;
    x = strtol(v, &end, 10);
    if (errno || end == v || *end != '\0' || x < lo || x > hi)
        return -1;
    *out = x;
    return 0;
}

/* A timeout from `where` (file line or environment variable): >= 1, clamped
   to its maximum with a log line.  0 ok, -1 not a number >= 1. */
static int gs_apply_timeout(gs_timeout_kind kind, const char *value,
                            const char *where)
{
    long ms;
    int set;

    if (gs_parse_long(value, 1, LONG_MAX, &ms))
        return -1;
    set = gs_timeout_set(kind, ms);
    if (set != ms)
        gs_log("gearsync_udf: %s: %ld ms is above the maximum, %d ms used",
               where, ms, set);
    return 0;
}

static void gs_check_private(const char *path, const char *what)
{
    struct stat st;

    if (stat(path, &st) == 0 && (st.st_mode & (S_IRWXG | S_IRWXO)))
        gs_log("gearsync_udf: %s holds %s but is readable by others (mode "
               "%03o): make it readable by mysqld's user only",
               path, what, (unsigned)(st.st_mode & 0777));
}

/* The secret is the file's content, one trailing newline dropped; it
   replaces an earlier secret only when it could be read. */
static int gs_read_secret_file(const char *path, const char *where)
{
    unsigned char buf[GS_SECRET_MAX + 1];
    FILE *f = fopen(path, "re");
    size_t n;

    if (f == NULL) {
        gs_log("gearsync_udf: %s: cannot read secret_file %s: %s", where,
               path, strerror(errno));
        return -1;
    }
    n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    if (n > 0 && buf[n - 1] == '\n')
        n--;
    if (n > 0 && buf[n - 1] == '\r')
        n--;
    if (n > GS_SECRET_MAX) {
        gs_log("gearsync_udf: %s: secret_file %s is longer than %d bytes",
               where, path, GS_SECRET_MAX);
        n = 0;
    }
    if (n > 0) {
        memcpy(gs_secret, buf, n);
        gs_secret_len = n;
        gs_check_private(path, "the secret");
    }
    memset(buf, 0, sizeof buf);
    return n > 0 ? 0 : -1;
}

/* Apply one "key = value" setting; 0 ok, -1 unknown key / bad value. */
static int gs_config_apply(const char *key, const char *value,
                           const char *where, gs_origin *o)
{
    long ms;

    if (strcmp(key, "servers") == 0 || strncmp(key, "servers.", 8) == 0) {
        char norm[GS_SERVERS_MAX_LEN];
        const char *why = NULL;
        const char *fn = key[7] == '.' ? key + 8 : NULL;
        if (fn != NULL && (fn[0] == '\0' || strlen(fn) >= GS_FUNCTION_MAX_LEN))
            return -1;
        if (gs_servers_normalise(value, strlen(value), norm, sizeof norm, &why) ||
            gs_servers_set(norm, fn))
            return -1;
        if (fn == NULL)
            o->servers = "the file";
        return 0;
    }
    if (strcmp(key, "timeout_ms") == 0 || strcmp(key, "do_timeout_ms") == 0) {
        int fg = key[0] == 'd';
        if (gs_apply_timeout(fg ? GS_TIMEOUT_FG : GS_TIMEOUT_BG, value, where))
            return -1;
        *(fg ? &o->do_timeout : &o->timeout) = "the file";
        return 0;
    }
    if (strcmp(key, "breaker_min_ms") == 0 ||
        strcmp(key, "breaker_max_ms") == 0) {
        int lo, hi;
        if (gs_parse_long(value, 0, GS_BREAKER_LIMIT_MS, &ms))
            return -1;
        gs_breaker_params(&lo, &hi);
        if (key[8] == 'm' && key[9] == 'i')
            lo = (int)ms;
        else
            hi = (int)ms;
        if (hi < lo)
            hi = lo;
        gs_breaker_set(lo, hi);
        return 0;
    }
    if (strcmp(key, "queue_mib") == 0) {
        if (gs_parse_long(value, 1, GS_QUEUE_MIB_MAX, &ms))
            return -1;
        gs_queue_bytes = (size_t)ms << 20;
        return 0;
    }
    if (strcmp(key, "linger_us") == 0) {
        if (gs_parse_long(value, 0, GS_LINGER_US_MAX, &ms))
            return -1;
        gs_linger_us = ms;
        return 0;
    }
    if (strcmp(key, "lock") == 0 || strcmp(key, "spread") == 0) {
        int *flag = key[0] == 'l' ? &gs_locked : &gs_spread;
        if (strcmp(value, "on") == 0)
            *flag = 1;
        else if (strcmp(value, "off") == 0)
            *flag = 0;
        else
            return -1;
        return 0;
    }
    if (strcmp(key, "secret") == 0) {
        size_t n = strlen(value);
        if (n == 0 || n > GS_SECRET_MAX)
            return -1;
        memcpy(gs_secret, value, n);
        gs_secret_len = n;
        o->secret = "secret";
        return 0;
    }
    if (strcmp(key, "secret_file") == 0) {
        if (value[0] == '\0' || gs_read_secret_file(value, where))
            return -1;
        o->secret = "secret_file";
        return 0;
    }
    return -1;
}

static void gs_config_path(char *out, size_t outsz)
{
    const char *env = getenv(GS_CONFIG_ENV);
    Dl_info info;

    out[0] = '\0';
    if (env != NULL && env[0] != '\0') {
        snprintf(out, outsz, "%s", env);
        return;
    }
    if (dladdr((void *)gs_config_path, &info) && info.dli_fname != NULL) {
        const char *slash = strrchr(info.dli_fname, '/');
        if (slash != NULL)
            snprintf(out, outsz, "%.*s/%s", (int)(slash - info.dli_fname),
                     info.dli_fname, GS_CONFIG_NAME);
        else
            snprintf(out, outsz, "%s", GS_CONFIG_NAME);
    }
}

static void gs_config_file(gs_origin *o)
{
    char line[GS_SERVERS_MAX_LEN + 256], where[PATH_MAX + 32];
    unsigned lineno = 0;
    FILE *f;

    if (o->path[0] == '\0')
        return;
    f = fopen(o->path, "re");
    if (f == NULL) {
        o->file = errno == ENOENT ? "none" : "unreadable";
        if (errno != ENOENT)
            gs_log("gearsync_udf: cannot read %s: %s", o->path,
                   strerror(errno));
        return;
    }
    o->file = "read";
    while (fgets(line, sizeof line, f) != NULL) {
        char *s = gs_trim(line), *eq, *key, *value;
        lineno++;
        if (*s == '\0' || *s == '#' || *s == ';')
            continue;
        snprintf(where, sizeof where, "%s:%u", o->path, lineno);
        eq = strchr(s, '=');
        if (eq == NULL) {
            gs_log("gearsync_udf: %s: expected key = value", where);
            continue;
        }
        *eq = '\0';
        key = gs_trim(s);
        value = gs_trim(eq + 1);
        if (gs_config_apply(key, value, where, o))
            gs_log("gearsync_udf: %s: bad setting %s", where, key);
    }
    fclose(f);
    if (o->secret != NULL && strcmp(o->secret, "secret") == 0)
        gs_check_private(o->path, "a secret");
}

static void gs_config_environment(gs_origin *o)
{
    static const struct {
        const char *name;
        gs_timeout_kind kind;
    } tmo[] = {{GS_TIMEOUT_ENV, GS_TIMEOUT_BG}, {GS_DO_TIMEOUT_ENV, GS_TIMEOUT_FG}};
    const char *env = getenv(GS_SERVERS_ENV);
    unsigned i;

    if (env != NULL && env[0] != '\0') {
        char norm[GS_SERVERS_MAX_LEN];
        const char *why = "too many lists";
        if (gs_servers_normalise(env, strlen(env), norm, sizeof norm, &why) ||
            gs_servers_set(norm, NULL))
            gs_log("gearsync_udf: %s: %s, ignored", GS_SERVERS_ENV, why);
        else
            o->servers = "the environment (" GS_SERVERS_ENV ")";
    }
    for (i = 0; i < sizeof tmo / sizeof tmo[0]; i++) {
        env = getenv(tmo[i].name);
        if (env == NULL || env[0] == '\0')
            continue;
        if (gs_apply_timeout(tmo[i].kind, env, tmo[i].name))
            gs_log("gearsync_udf: %s: not a number of ms >= 1, ignored",
                   tmo[i].name);
        else
            *(tmo[i].kind == GS_TIMEOUT_FG ? &o->do_timeout : &o->timeout) =
                "the environment";
    }
}

static void gs_config_read(void)
{
    gs_origin o;
    char list[GS_SERVERS_MAX_LEN];

    memset(&o, 0, sizeof o);
    o.file = "none";
    o.servers = o.timeout = o.do_timeout = "the built-in default";
    gs_config_path(o.path, sizeof o.path);
    gs_config_file(&o);
    gs_config_environment(&o);
    gs_servers_lookup(NULL, list, sizeof list);
    gs_log("gearsync_udf " GEARSYNC_VERSION ": config %s (%s); servers %.1024s "
           "from %s; timeout %d ms from %s, do_timeout %d ms from %s; lock "
           "%s; jobs %s; gearsync_send %s, linger %ld us",
           o.path[0] ? o.path : "(no path)", o.file, list, o.servers,
           gs_timeout_get(GS_TIMEOUT_BG), o.timeout,
           gs_timeout_get(GS_TIMEOUT_FG), o.do_timeout,
           gs_locked ? "on" : "off",
           gs_secret_len ? "signed (HMAC-SHA256)" : "unsigned",
           gs_spread ? "spreads over the list (spread on)"
                     : "uses the first reachable server",
           gs_linger_us);
}

void gs_config_load(void)
{
    pthread_once(&gs_config_once, gs_config_read);
}

int gs_config_locked(void)
{
    gs_config_load();
    return gs_locked;
}

size_t gs_config_queue_bytes(void)
{
    gs_config_load();
    return gs_queue_bytes;
}

long gs_config_linger_us(void)
{
    gs_config_load();
    return gs_linger_us;
}

int gs_config_spread(void)
{
    gs_config_load();
    return gs_spread;
}

size_t gs_config_secret(const unsigned char **key)
{
    gs_config_load();
    *key = gs_secret;
    return gs_secret_len;
}
