/*
 * gs_client.c -- timeouts, failover, and one libgearman client per (server
 * thread, job server) (no SQL symbols).  Server lists: gs_servers.c;
 * circuit breakers: gs_breaker.c.
 *
 * A thread caches the parsed server list of the function it last used
 * (gs_route) and re-reads it only when the lists' generation changed; a
 * change also drops the thread's connections.
 *
 * Failover: a job goes to the first server of its list whose breaker is not
 * open; when that submit fails the next one is tried, and so on.  The order
 * is the list order (the first server is the primary), so a healthy primary
 * gets everything and the others are hot spares.
 *
 * Circuit breaker (one per host:port, process-wide, GS_BREAKER_SLOTS slots):
 * a failed submit opens it for breaker_min_ms (100), doubling on each further
 * failure up to breaker_max_ms (2000).  While open the server is skipped at
 * the cost of a mutex and a clock read -- when every server is open the UDF
 * returns NULL in microseconds instead of waiting for a timeout.  When the
 * open period lapses one caller (half-open probe) tries it, the others keep
 * skipping it; a success closes it.
 *
 * Timeouts: background submits are bounded by gearsync_timeout_set() (250 ms
 * default: connect, send, wait for JOB_CREATED); foreground gman_do* by
 * gearsync_do_timeout_set() (5000 ms default: connect, send, and the wait for
 * the worker's result).  A foreground job that a server accepted but whose
 * result did not come in time is not retried elsewhere (it may be running)
 * and does not trip the breaker (a missing worker is not a broken server).
 *
 * Connections: after any failed submit the client is freed (its state is
 * unknown) and rebuilt on the next job.  When a connection that had already
 * carried a job fails with a connection error (stale: gearmand restarted),
 * the job is retried once on a fresh connection to the same server before it
 * counts as a failure.
 */
#include "gearsync_udf.h"

#include <libgearman-1.0/gearman.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int gs_timeout_ms = GS_TIMEOUT_DEFAULT_MS;   /* atomic */
static int gs_do_timeout_ms = GS_DO_TIMEOUT_DEFAULT_MS; /* atomic */

int gs_timeout_get(void)
{
    gs_config_load();
    return __atomic_load_n(&gs_timeout_ms, __ATOMIC_RELAXED);
}

void gs_timeout_store(int ms)
{
    __atomic_store_n(&gs_timeout_ms, ms, __ATOMIC_RELAXED);
}

void gs_timeout_set(int ms)
{
    gs_config_load();
    gs_timeout_store(ms);
}

int gs_do_timeout_get(void)
{
    gs_config_load();
    return __atomic_load_n(&gs_do_timeout_ms, __ATOMIC_RELAXED);
}

void gs_do_timeout_store(int ms)
{
    __atomic_store_n(&gs_do_timeout_ms, ms, __ATOMIC_RELAXED);
}

void gs_do_timeout_set(int ms)
{
    gs_config_load();
    gs_do_timeout_store(ms);
}


/* ---------------------------------------------------- per-thread clients */

typedef struct gs_conn {
    char addr[GS_ADDR_LEN];
    gearman_client_st *client;
    int timeout;            /* timeout applied to client */
    int used;               /* a job went through this connection */
} gs_conn;

typedef struct gs_route {
    uint64_t gen;
    char function[GS_FUNCTION_MAX_LEN];
    unsigned count;
    gs_server servers[GS_MAX_SERVERS];
    char addrs[GS_MAX_SERVERS][GS_ADDR_LEN];
} gs_route;

static void gs_conn_close(gs_conn *c)
{
    if (c->client != NULL) {
        gearman_client_free(c->client);
        c->client = NULL;
    }
    c->used = 0;
}

void gs_client_free(gs_thread *t)
{
    unsigned i;

    for (i = 0; i < t->nconns; i++)
        gs_conn_close(&t->conns[i]);
    free(t->conns);
    t->conns = NULL;
    t->nconns = 0;
    free(t->route);
    t->route = NULL;
}

typedef struct {
    gs_route *r;
} gs_route_ctx;

static int gs_route_add(const gs_server *sv, void *p)
{
    gs_route *r = ((gs_route_ctx *)p)->r;
    if (r->count >= GS_MAX_SERVERS)
        return -1;
    r->servers[r->count] = *sv;
    snprintf(r->addrs[r->count], GS_ADDR_LEN, "%s%s%s:%u", sv->v6 ? "[" : "",
             sv->host, sv->v6 ? "]" : "", sv->port);
    r->count++;
    return 0;
}

/* The parsed server list for function, cached per thread. */
static gs_route *gs_route_get(gs_thread *t, const char *function)
{
    uint64_t gen = gs_servers_generation();
    gs_route *r = t->route;
    char list[GS_SERVERS_MAX_LEN];
    const char *why = NULL;
    gs_route_ctx ctx;
    unsigned i;

    if (r != NULL && r->gen == gen && strcmp(r->function, function) == 0)
        return r;
    if (t->conns_gen != gen) { /* list changed: drop every connection */
        for (i = 0; i < t->nconns; i++)
            gs_conn_close(&t->conns[i]);
        t->nconns = 0;
        t->conns_gen = gen;
    }
    if (r == NULL) {
        r = malloc(sizeof *r);
        if (r == NULL)
            return NULL;
        t->route = r;
    }
    gen = gs_servers_lookup(function, list, sizeof list);
    r->gen = 0; /* invalid until parsed */
    r->count = 0;
    snprintf(r->function, sizeof r->function, "%s", function);
    ctx.r = r;
    if (gs_parse_list(list, strnlen(list, sizeof list), &why, gs_route_add,
                      &ctx))
        return NULL;
    r->gen = gen;
    return r;
}

/* The thread's connection slot for server k of the route (created empty). */
static gs_conn *gs_conn_get(gs_thread *t, const gs_route *r, unsigned k)
{
    unsigned i;
    gs_conn *c;

    for (i = 0; i < t->nconns; i++)
        if (strcmp(t->conns[i].addr, r->addrs[k]) == 0)
            return &t->conns[i];
    if (t->conns == NULL) {
        t->conns = calloc(GS_MAX_SERVERS, sizeof *t->conns);
        if (t->conns == NULL)
            return NULL;
    }
    if (t->nconns == GS_MAX_SERVERS) { /* full: recycle the last slot */
        gs_conn_close(&t->conns[GS_MAX_SERVERS - 1]);
        t->nconns--;
    }
    c = &t->conns[t->nconns++];
    memset(c, 0, sizeof *c);
    snprintf(c->addr, sizeof c->addr, "%s", r->addrs[k]);
    return c;
}

/* Accumulates a foreground job's result (task context: a gs_buf). */
static gearman_return_t gs_task_collect(gearman_task_st *task)
{
    gs_buf *b = gearman_task_context(task);
    const void *d = gearman_task_data(task);
    size_t n = gearman_task_data_size(task);

    if (b == NULL || d == NULL || n == 0)
        return GEARMAN_SUCCESS;
    if (b->len + n > GS_MAX_RESULT_LENGTH || gs_buf_reserve(b, n))
        return GEARMAN_MEMORY_ALLOCATION_FAILURE;
    memcpy(b->data + b->len, d, n);
    b->len += n;
    return GEARMAN_SUCCESS;
}

static int gs_conn_ready(gs_conn *c, const gs_server *sv, int timeout)
{
    if (c->client == NULL) {
        gearman_client_st *client = gearman_client_create(NULL);
        if (client == NULL)
            return -1;
        if (gearman_client_add_server(client, sv->host, (in_port_t)sv->port) !=
            GEARMAN_SUCCESS) {
            gearman_client_free(client);
            return -1;
        }
        /* foreground results arrive as WORK_DATA and/or WORK_COMPLETE */
        gearman_client_set_data_fn(client, gs_task_collect);
        gearman_client_set_complete_fn(client, gs_task_collect);
        c->client = client;
        c->used = 0;
        c->timeout = -1;
    }
    if (c->timeout != timeout) {
        gearman_client_set_timeout(c->client, timeout);
        c->timeout = timeout;
    }
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

/* One job, any mode.  handle (background) or result (foreground). */
typedef struct {
    const char *function, *unique;
    const void *workload;
    size_t workload_len;
    int prio, foreground;
    char *handle;
    void *result;
    size_t result_len;
} gs_job;

/* Foreground job through the task API (gearman_client_do does not say
   whether the server had accepted the job when it fails). */
static gearman_return_t gs_foreground_task(gs_job *j, gearman_client_st *client,
                                           int timeout, int *accepted)
{
    gearman_task_st *(*add)(gearman_client_st *, gearman_task_st *, void *,
                            const char *, const char *, const void *, size_t,
                            gearman_return_t *) =
        j->prio == GS_PRIO_HIGH  ? gearman_client_add_task_high
        : j->prio == GS_PRIO_LOW ? gearman_client_add_task_low
                                 : gearman_client_add_task;
    gearman_return_t rc = GEARMAN_UNKNOWN_STATE;
    gearman_task_st *task;
    uint64_t deadline = gs_now_ns() + (uint64_t)timeout * 1000000ULL;
    gs_buf acc = {NULL, 0, 0};
    const char *h;

    *accepted = 0;
    task = add(client, NULL, &acc, j->function, j->unique, j->workload,
               j->workload_len, &rc);
    if (task == NULL) {
        free(acc.data);
        return rc == GEARMAN_SUCCESS ? GEARMAN_MEMORY_ALLOCATION_FAILURE : rc;
    }
    do {
        rc = gearman_client_run_tasks(client);
    } while ((rc == GEARMAN_IO_WAIT || rc == GEARMAN_PAUSE) &&
             gs_now_ns() < deadline);
    h = gearman_task_job_handle(task);
    *accepted = h != NULL && h[0] != '\0';
    if (rc == GEARMAN_SUCCESS)
        rc = gearman_task_return(task);
    if (rc == GEARMAN_SUCCESS) {
        j->result = acc.data; /* NULL when the result is empty */
        j->result_len = acc.len;
        acc.data = NULL;
    }
    free(acc.data);
    gearman_task_free(task);
    return rc;
}

/* 0 done; -1 failed, try the next server; -2 failed, stop (do not fail
   over: the job may be running). */
static int gs_job_try(gs_job *j, gs_conn *c, const gs_server *sv, int timeout)
{
    int attempt;

    for (attempt = 0; attempt < 2; attempt++) {
        gearman_return_t rc = GEARMAN_UNKNOWN_STATE;
        int reused;

        if (gs_conn_ready(c, sv, timeout))
            return -1;
        reused = c->used;
        if (j->foreground) {
            int accepted = 0;
            rc = gs_foreground_task(j, c->client, timeout, &accepted);
            if (rc == GEARMAN_SUCCESS) {
                c->used = 1;
                return 0;
            }
            gs_conn_close(c);
            if (accepted) /* the server took the job: no failover */
                return -2;
        } else {
            gearman_return_t (*fn)(gearman_client_st *, const char *,
                                   const char *, const void *, size_t,
                                   char *) =
                j->prio == GS_PRIO_HIGH  ? gearman_client_do_high_background
                : j->prio == GS_PRIO_LOW ? gearman_client_do_low_background
                                         : gearman_client_do_background;
            rc = fn(c->client, j->function, j->unique, j->workload,
                    j->workload_len, j->handle);
            if (rc == GEARMAN_SUCCESS) {
                c->used = 1;
                return 0;
            }
            gs_conn_close(c);
        }
        if (!reused || !gs_connection_error(rc))
            return -1;
    }
    return -1;
}

static int gs_job_run(gs_job *j)
{
    gs_thread *t = gs_thread_get();
    char uniq[GS_UNIQUE_LEN];
    gs_route *r;
    uint64_t now;
    unsigned k;
    int timeout;

    if (t == NULL)
        return -1;
    timeout = j->foreground ? gs_do_timeout_get() : gs_timeout_get();
    r = gs_route_get(t, j->function);
    if (r == NULL)
        return -1;
    if (j->unique == NULL || j->unique[0] == '\0') {
        gs_thread_unique(t, uniq);
        j->unique = uniq;
    }
    now = gs_now_ns();
    for (k = 0; k < r->count; k++) {
        gs_conn *c;
        int rc;

        if (!gs_breaker_allow(r->addrs[k], now))
            continue;
        c = gs_conn_get(t, r, k);
        if (c == NULL) { /* out of memory: not the server's fault */
            gs_breaker_report(r->addrs[k], 1);
            return -1;
        }
        rc = gs_job_try(j, c, &r->servers[k], timeout);
        if (rc == 0) {
            gs_breaker_report(r->addrs[k], 1);
            return 0;
        }
        if (rc == -2) {
            gs_breaker_report(r->addrs[k], 1); /* it answered */
            return -1;
        }
        gs_breaker_report(r->addrs[k], 0);
        now = gs_now_ns();
    }
    return -1;
}

int gs_submit_background(const char *function, const char *unique,
                         const void *workload, size_t workload_len, int prio,
                         char *handle)
{
    gs_job j;

    memset(&j, 0, sizeof j);
    j.function = function;
    j.unique = unique;
    j.workload = workload;
    j.workload_len = workload_len;
    j.prio = prio;
    j.handle = handle;
    return gs_job_run(&j);
}

int gs_submit_foreground(const char *function, const char *unique,
                         const void *workload, size_t workload_len, int prio,
                         void **result, size_t *result_len)
{
    gs_job j;

    memset(&j, 0, sizeof j);
    j.function = function;
    j.unique = unique;
    j.workload = workload;
    j.workload_len = workload_len;
    j.prio = prio;
    j.foreground = 1;
    *result = NULL;
    *result_len = 0;
    if (gs_job_run(&j))
        return -1;
    *result = j.result;
    *result_len = j.result_len;
    return 0;
}
