/*
 * gs_config.c -- the library's config file, read once (no SQL symbols).  It is what makes the job-server list survive a restart of the
 * database server without a manual SELECT gman_servers_set(...).
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
 *   timeout_ms = 250          background submit timeout (1..3600000)
 *   do_timeout_ms = 5000      foreground gman_do* timeout (1..3600000)
 *   breaker_min_ms = 100      first open period of a server's breaker
 *   breaker_max_ms = 2000     longest open period (0..3600000, >= min)
 * The environment variables GEARSYNC_UDF_TIMEOUT_MS and
 * GEARSYNC_UDF_DO_TIMEOUT_MS, when set, win over the file.  Run-time calls
 * (gman_servers_set, gearsync_timeout_set, gearsync_do_timeout_set) win over
 * both until the next restart.  Each problem (unreadable file, unknown key,
 * bad value) is reported on one line of stderr -- mysqld's error log -- and
 * the rest of the file still applies.
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

static pthread_once_t gs_config_once = PTHREAD_ONCE_INIT;

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

static int gs_parse_ms(const char *v, long lo, long *out)
{
    char *end;
    long x;

    errno = 0;
    x = strtol(v, &end, 10);
    if (errno || end == v || *end != '\0' || x < lo || x > GS_TIMEOUT_MAX_MS)
        return -1;
    *out = x;
    return 0;
}

/* Apply one "key = value" setting; 0 ok, -1 unknown key / bad value. */
static int gs_config_apply(const char *key, const char *value)
{
    long ms;

    if (strcmp(key, "servers") == 0 || strncmp(key, "servers.", 8) == 0) {
        char norm[GS_SERVERS_MAX_LEN];
        const char *why = NULL;
        const char *fn = key[7] == '.' ? key + 8 : NULL;
        if (fn != NULL && (fn[0] == '\0' || strlen(fn) >= GS_FUNCTION_MAX_LEN))
            return -1;
        if (gs_servers_normalise(value, strlen(value), norm, sizeof norm, &why))
            return -1;
        return gs_servers_set(norm, fn);
    }
    if (strcmp(key, "timeout_ms") == 0) {
        if (gs_parse_ms(value, 1, &ms))
            return -1;
        gs_timeout_set(GS_TIMEOUT_BG, (int)ms);
        return 0;
    }
    if (strcmp(key, "do_timeout_ms") == 0) {
        if (gs_parse_ms(value, 1, &ms))
            return -1;
        gs_timeout_set(GS_TIMEOUT_FG, (int)ms);
        return 0;
    }
    if (strcmp(key, "breaker_min_ms") == 0 ||
        strcmp(key, "breaker_max_ms") == 0) {
        int lo, hi;
        if (gs_parse_ms(value, 0, &ms))
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

static void gs_env_ms(const char *name, gs_timeout_kind kind)
{
    const char *env = getenv(name);
    long ms;

    if (env != NULL && *env != '\0' && gs_parse_ms(env, 1, &ms) == 0)
        gs_timeout_set(kind, (int)ms);
}

static void gs_config_read(void)
{
    char path[PATH_MAX];
    char line[GS_SERVERS_MAX_LEN + 256];
    unsigned lineno = 0;
    FILE *f;

    gs_config_path(path, sizeof path);
    if (path[0] != '\0' && (f = fopen(path, "re")) != NULL) {
        while (fgets(line, sizeof line, f) != NULL) {
            char *s = gs_trim(line), *eq, *key, *value;
            lineno++;
            if (*s == '\0' || *s == '#' || *s == ';')
                continue;
            eq = strchr(s, '=');
            if (eq == NULL) {
                gs_log("gearsync_udf: %s:%u: expected key = value", path,
                       lineno);
                continue;
            }
            *eq = '\0';
            key = gs_trim(s);
            value = gs_trim(eq + 1);
            if (gs_config_apply(key, value))
                gs_log("gearsync_udf: %s:%u: bad setting %s", path, lineno,
                       key);
        }
        fclose(f);
    } else if (path[0] != '\0' && errno != ENOENT) {
        gs_log("gearsync_udf: cannot read %s: %s", path, strerror(errno));
    }
    gs_env_ms(GS_TIMEOUT_ENV, GS_TIMEOUT_BG);
    gs_env_ms(GS_DO_TIMEOUT_ENV, GS_TIMEOUT_FG);
}

void gs_config_load(void)
{
    pthread_once(&gs_config_once, gs_config_read);
}
