/*
 * gs_servers.c -- job-server lists: parsing, normalising, and the
 * process-wide default and per-function lists (no SQL symbols).
 *
 * A default list (gman_servers_set(servers), the config file's `servers`,
 * else 127.0.0.1:4730) and up to GS_MAX_FUNCTION_LISTS per-function lists
 * (gman_servers_set(servers, function), config `servers.<function>`) are
 * kept as normalised strings under a statically initialised mutex, with an
 * atomic generation counter bumped on every change: a user of a list keeps
 * a parsed copy (gs_route) and compares one atomic load per job with its
 * generation (gs_route_refresh), re-reading the list only when it changed.
 * The config file (gs_config.c) installs its lists through gs_servers_set
 * like the run-time setter does.
 */
#include "gs_servers.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static pthread_mutex_t gs_servers_lock = PTHREAD_MUTEX_INITIALIZER;
static char gs_servers[GS_SERVERS_MAX_LEN] = GS_DEFAULT_SERVERS; /* locked */
typedef struct {
    char function[GS_FUNCTION_MAX_LEN];
    char list[GS_SERVERS_MAX_LEN];
} gs_fn_list;
static gs_fn_list *gs_fn_lists;          /* locked; malloc'ed on first use */
static unsigned gs_fn_count;             /* locked */
static uint64_t gs_servers_gen = 1;      /* atomic */

static int gs_host_byte(unsigned char c, int bracketed)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
        (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_')
        return 1;
    return bracketed && (c == ':' || c == '%');
}

/* Parse one entry ("host[:port]", "[v6]:port", bare v6) into out. */
static int gs_parse_entry(const char *s, size_t n, gs_server *out,
                          const char **why)
{
    size_t i, hs, he, colons = 0;

    while (n > 0 && (*s == ' ' || *s == '\t'))
        s++, n--;
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    if (n == 0) {
        *why = "empty server entry";
        return -1;
    }
    out->port = GS_DEFAULT_PORT;
    out->v6 = 0;
    if (s[0] == '[') {
        const char *rb = memchr(s, ']', n);
        if (rb == NULL) {
            *why = "missing ]";
            return -1;
        }
        hs = 1;
        he = (size_t)(rb - s);
        i = he + 1;
        out->v6 = 1;
    } else {
        for (i = 0; i < n; i++)
            colons += s[i] == ':';
        hs = 0;
        if (colons > 1) { /* bare IPv6 address, no port */
            he = n;
            out->v6 = 1;
        } else {
            const char *c = memchr(s, ':', n);
            he = c ? (size_t)(c - s) : n;
        }
        i = he;
    }
    if (he == hs || he - hs >= sizeof out->host) {
        *why = "bad host";
        return -1;
    }
    for (size_t k = hs; k < he; k++) {
        if (!gs_host_byte((unsigned char)s[k], out->v6)) {
            *why = "bad character in host";
            return -1;
        }
    }
    memcpy(out->host, s + hs, he - hs);
    out->host[he - hs] = '\0';
    if (i < n) {
        unsigned long p = 0;
        if (s[i] != ':' || i + 1 == n) {
            *why = "bad port";
            return -1;
        }
        for (i++; i < n; i++) {
            if (s[i] < '0' || s[i] > '9' || p > 65535) {
                *why = "bad port";
                return -1;
            }
            p = p * 10 + (unsigned long)(s[i] - '0');
        }
        if (p == 0 || p > 65535) {
            *why = "bad port";
            return -1;
        }
        out->port = (unsigned)p;
    }
    return 0;
}

/* Calls fn for each entry; -1 with *why on the first invalid one. */
int gs_parse_list(const char *in, size_t n, const char **why,
                  int (*fn)(const gs_server *, void *), void *ctx)
{
    size_t start = 0, count = 0;

    if (n == 0) {
        *why = "empty server list";
        return -1;
    }
    while (start <= n) {
        const char *comma = memchr(in + start, ',', n - start);
        size_t end = comma ? (size_t)(comma - in) : n;
        gs_server sv;

        if (gs_parse_entry(in + start, end - start, &sv, why))
            return -1;
        if (++count > GS_MAX_SERVERS) {
            *why = "too many servers";
            return -1;
        }
        if (fn(&sv, ctx))
            return -1;
        start = end + 1;
    }
    return 0;
}

typedef struct {
    char *out;
    size_t size, len;
    const char **why;
} gs_norm_ctx;

static int gs_norm_add(const gs_server *sv, void *p)
{
    gs_norm_ctx *c = p;
    int k = snprintf(c->out + c->len, c->size - c->len, "%s%s%s%s:%u",
                     c->len ? "," : "", sv->v6 ? "[" : "", sv->host,
                     sv->v6 ? "]" : "", sv->port);
    if (k < 0 || (size_t)k >= c->size - c->len) {
        *c->why = "server list too long";
        return -1;
    }
    c->len += (size_t)k;
    return 0;
}

int gs_servers_normalise(const char *in, size_t n, char *out, size_t outsz,
                         const char **why)
{
    gs_norm_ctx c = {out, outsz, 0, why};

    if (outsz == 0)
        return -1;
    out[0] = '\0';
    return gs_parse_list(in, n, why, gs_norm_add, &c);
}

/* Install a list; the caller normalised it. */
int gs_servers_set(const char *normalised, const char *function)
{
    size_t n = strlen(normalised);
    int rc = 0;

    if (n == 0 || n >= GS_SERVERS_MAX_LEN)
        return -1;
    pthread_mutex_lock(&gs_servers_lock);
    if (function == NULL || function[0] == '\0') {
        memcpy(gs_servers, normalised, n + 1);
    } else if (strlen(function) >= GS_FUNCTION_MAX_LEN) {
        rc = -1;
    } else {
        unsigned i;
        if (gs_fn_lists == NULL)
            gs_fn_lists = calloc(GS_MAX_FUNCTION_LISTS, sizeof *gs_fn_lists);
        if (gs_fn_lists == NULL) {
            rc = -1;
            goto out;
        }
        for (i = 0; i < gs_fn_count; i++)
            if (strcmp(gs_fn_lists[i].function, function) == 0)
                break;
        if (i == gs_fn_count) {
            if (gs_fn_count == GS_MAX_FUNCTION_LISTS) {
                rc = -1;
                goto out;
            }
            snprintf(gs_fn_lists[i].function, GS_FUNCTION_MAX_LEN, "%s",
                     function);
            gs_fn_count++;
        }
        memcpy(gs_fn_lists[i].list, normalised, n + 1);
    }
    __atomic_add_fetch(&gs_servers_gen, 1, __ATOMIC_RELEASE);
out:
    pthread_mutex_unlock(&gs_servers_lock);
    return rc;
}

uint64_t gs_servers_generation(void)
{
    return __atomic_load_n(&gs_servers_gen, __ATOMIC_ACQUIRE);
}

uint64_t gs_servers_lookup(const char *function, char *out, size_t outsz)
{
    uint64_t gen;
    unsigned i;
    const char *list;

    pthread_mutex_lock(&gs_servers_lock);
    gen = __atomic_load_n(&gs_servers_gen, __ATOMIC_ACQUIRE);
    list = gs_servers;
    for (i = 0; function != NULL && function[0] && i < gs_fn_count; i++) {
        if (strcmp(gs_fn_lists[i].function, function) == 0) {
            list = gs_fn_lists[i].list;
            break;
        }
    }
    snprintf(out, outsz, "%s", list);
    pthread_mutex_unlock(&gs_servers_lock);
    return gen;
}

static int gs_route_add(const gs_server *sv, void *p)
{
    gs_route *r = p;
    if (r->count >= GS_MAX_SERVERS)
        return -1;
    r->servers[r->count] = *sv;
    snprintf(r->addrs[r->count], GS_ADDR_LEN, "%s%s%s:%u", sv->v6 ? "[" : "",
             sv->host, sv->v6 ? "]" : "", sv->port);
    r->count++;
    return 0;
}

int gs_route_refresh(gs_route *r, const char *function)
{
    uint64_t gen = gs_servers_generation();
    char list[GS_SERVERS_MAX_LEN];
    const char *why = NULL;
    const char *fn = function != NULL ? function : "";

    if (r->gen == gen && strcmp(r->function, fn) == 0)
        return 0;
    gen = gs_servers_lookup(fn, list, sizeof list);
    if (r->gen != 0 && strcmp(r->function, fn) == 0 &&
        strcmp(r->list, list) == 0) { /* another list changed */
        r->gen = gen;
        return 0;
    }
    r->gen = 0; /* invalid until parsed */
    r->count = 0;
    snprintf(r->function, sizeof r->function, "%s", fn);
    memcpy(r->list, list, sizeof r->list);
    if (gs_parse_list(list, strnlen(list, sizeof list), &why, gs_route_add, r))
        return -1;
    r->gen = gen;
    return 1;
}

void gs_servers_unload(void)
{
    pthread_mutex_lock(&gs_servers_lock);
    free(gs_fn_lists);
    gs_fn_lists = NULL;
    gs_fn_count = 0;
    pthread_mutex_unlock(&gs_servers_lock);
}
