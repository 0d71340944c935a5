/*
 * gs_client.c -- the process-wide gearman server list and timeout, and one
 * libgearman client per server thread (no SQL symbols).
 *
 * Server list: a normalised "host:port,[v6addr]:port" string under a
 * statically initialised mutex, plus an atomic generation counter bumped on
 * every change.  Per job, a thread does one atomic load of the generation and
 * rebuilds its client only when it changed.  Default 127.0.0.1:4730.
 *
 * Timeout: one atomic int (ms), default GS_TIMEOUT_DEFAULT_MS (250), from the
 * environment GEARSYNC_UDF_TIMEOUT_MS at load, or gearsync_timeout_set(ms).
 * It bounds connect, send and the wait for JOB_CREATED
 * (gearman_client_set_timeout), so a hung gearmand costs a writer at most
 * about one timeout per row, never an indefinite block.
 *
 * Failure handling: after any failed submit the client is freed (its
 * connection state is unknown, e.g. a JOB_CREATED may still arrive) and is
 * rebuilt on the next job.  When the failure is a connection error on a
 * connection that had already carried a job (stale: gearmand restarted), the
 * job is retried once on a fresh connection.  Timeouts are not retried.
 */
#include "gearsync_udf.h"

#include <libgearman-1.0/gearman.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static pthread_mutex_t gs_servers_lock = PTHREAD_MUTEX_INITIALIZER;
static char gs_servers[GS_SERVERS_MAX_LEN] = GS_DEFAULT_SERVERS; /* locked */
static uint64_t gs_servers_gen = 1;                 /* atomic */
static int gs_timeout_ms = GS_TIMEOUT_DEFAULT_MS;   /* atomic */

int gs_timeout_get(void)
{
    return __atomic_load_n(&gs_timeout_ms, __ATOMIC_RELAXED);
}

void gs_timeout_set(int ms)
{
    __atomic_store_n(&gs_timeout_ms, ms, __ATOMIC_RELAXED);
}

static int gs_host_byte(unsigned char c, int bracketed)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
        (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_')
        return 1;
    return bracketed && (c == ':' || c == '%');
}

/* One parsed entry of a server list. */
typedef struct {
    char host[256];
    unsigned port;
    int v6;
} gs_server;

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
static int gs_parse_list(const char *in, size_t n, const char **why,
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

int gs_servers_set(const char *normalised)
{
    size_t n = strlen(normalised);

    if (n == 0 || n >= GS_SERVERS_MAX_LEN)
        return -1;
    pthread_mutex_lock(&gs_servers_lock);
    memcpy(gs_servers, normalised, n + 1);
    __atomic_add_fetch(&gs_servers_gen, 1, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&gs_servers_lock);
    return 0;
}

void gs_servers_get(char *out, size_t outsz)
{
    pthread_mutex_lock(&gs_servers_lock);
    snprintf(out, outsz, "%s", gs_servers);
    pthread_mutex_unlock(&gs_servers_lock);
}

void gs_client_free(gs_thread *t)
{
    if (t->client != NULL) {
        gearman_client_free(t->client);
        t->client = NULL;
    }
    t->client_used = 0;
}

static int gs_client_add(const gs_server *sv, void *p)
{
    gearman_client_st *client = p;
    return gearman_client_add_server(client, sv->host, (in_port_t)sv->port) !=
                   GEARMAN_SUCCESS
               ? -1
               : 0;
}

static int gs_client_build(gs_thread *t)
{
    char list[GS_SERVERS_MAX_LEN];
    const char *why = NULL;
    uint64_t gen;
    gearman_client_st *client;

    pthread_mutex_lock(&gs_servers_lock);
    gen = __atomic_load_n(&gs_servers_gen, __ATOMIC_ACQUIRE);
    memcpy(list, gs_servers, sizeof list);
    pthread_mutex_unlock(&gs_servers_lock);

    client = gearman_client_create(NULL);
    if (client == NULL)
        return -1;
    if (gs_parse_list(list, strlen(list), &why, gs_client_add, client)) {
        gearman_client_free(client);
        return -1;
    }
    t->client = client;
    t->client_gen = gen;
    t->client_timeout = gs_timeout_get();
    t->client_used = 0;
    gearman_client_set_timeout(client, t->client_timeout);
    return 0;
}

static int gs_connection_error(gearman_return_t rc)
{
    switch (rc) {
    case GEARMAN_LOST_CONNECTION:
    case GEARMAN_COULD_NOT_CONNECT:
    case GEARMAN_NOT_CONNECTED:
    case GEARMAN_ERRNO:
    case GEARMAN_NO_ACTIVE_FDS:
        return 1;
    default:
        return 0;
    }
}

int gs_submit_background(const char *function, const char *unique,
                         const void *workload, size_t workload_len,
                         char *handle)
{
    gs_thread *t = gs_thread_get();
    char uniq[GS_UNIQUE_LEN];
    int attempt;

    if (t == NULL)
        return -1;
    if (unique == NULL || unique[0] == '\0') {
        gs_thread_unique(t, uniq);
        unique = uniq;
    }
    for (attempt = 0; attempt < 2; attempt++) {
        uint64_t gen = __atomic_load_n(&gs_servers_gen, __ATOMIC_ACQUIRE);
        int timeout = gs_timeout_get();
        int reused;
        gearman_return_t rc;

        if (t->client != NULL && t->client_gen != gen)
            gs_client_free(t);
        if (t->client == NULL && gs_client_build(t))
            return -1;
        if (t->client_timeout != timeout) {
            gearman_client_set_timeout(t->client, timeout);
            t->client_timeout = timeout;
        }
        reused = t->client_used;
        rc = gearman_client_do_background(t->client, function, unique,
                                          workload, workload_len, handle);
        if (rc == GEARMAN_SUCCESS) {
            t->client_used = 1;
            return 0;
        }
        gs_client_free(t);
        if (!reused || !gs_connection_error(rc))
            return -1;
    }
    return -1;
}
