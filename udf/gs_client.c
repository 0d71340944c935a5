/*
 * gs_client.c -- failover and one libgearman client per (server thread, job
 * server) for the gman_* functions (no SQL symbols).  Server lists:
 * gs_servers.c; circuit breakers: gs_breaker.c; timeouts: gs_timeouts.c.
 *
 * A thread caches the parsed server list of the function it last used
 * (gs_route, in its GS_SLOT_CLIENT slot) and re-reads it only when the
 * lists' generation changed; a change also drops the thread's connections.
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
#include "gs_client.h"
#include "gs_breaker.h"
#include "gs_buf.h"
#include "gs_clock.h"
#include "gs_servers.h"
#include "gs_thread.h"
#include "gs_timeouts.h"

#include <libgearman-1.0/gearman.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------- per-thread clients */

typedef struct gs_conn {
    char addr[GS_ADDR_LEN];
    gearman_client_st *client;
    int timeout;            /* timeout applied to client */
    int used;               /* a job went through this connection */
} gs_conn;

typedef struct gs_clients {
    gs_conn conns[GS_MAX_SERVERS]; /* one client per job server */
    unsigned nconns;
    uint64_t conns_gen;            /* server-list generation they belong to */
    gs_route route;                /* parsed list of the last function */
} gs_clients;

static void gs_conn_close(gs_conn *c)
{
    if (c->client != NULL) {
        gearman_client_free(c->client);
        c->client = NULL;
    }
    c->used = 0;
}

static void gs_clients_free(void *p, int wait_ms)
{
    gs_clients *cs = p;
    unsigned i;

    (void)wait_ms;
    for (i = 0; i < cs->nconns; i++)
        gs_conn_close(&cs->conns[i]);
    free(cs);
}


/* The parsed server list for function; a list change drops every
   connection. */
static gs_route *gs_clients_route(gs_clients *cs, const char *function)
{
    unsigned i;

    if (gs_route_refresh(&cs->route, function) < 0)
        return NULL;
    if (cs->conns_gen != cs->route.gen) {
        for (i = 0; i < cs->nconns; i++)
            gs_conn_close(&cs->conns[i]);
        cs->nconns = 0;
        cs->conns_gen = cs->route.gen;
    }
    return &cs->route;
}

/* The thread's connection slot for server k of the route (created empty). */
static gs_conn *gs_conn_get(gs_clients *cs, const gs_route *r, unsigned k)
{
    unsigned i;
    gs_conn *c;

    for (i = 0; i < cs->nconns; i++)
        if (strcmp(cs->conns[i].addr, r->addrs[k]) == 0)
            return &cs->conns[i];
    if (cs->nconns == GS_MAX_SERVERS) { /* full: recycle the last slot */
        gs_conn_close(&cs->conns[GS_MAX_SERVERS - 1]);
        cs->nconns--;
    }
    c = &cs->conns[cs->nconns++];
    memset(c, 0, sizeof *c);
    memcpy(c->addr, r->addrs[k], sizeof c->addr);
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
    gs_thread *t = NULL;
    gs_clients *cs = gs_thread_state(&t, GS_SLOT_CLIENT, sizeof *cs,
                                     gs_clients_free, NULL);
    char uniq[GS_UNIQUE_LEN];
    gs_route *r;
    uint64_t now;
    unsigned k;
    int timeout;

    if (cs == NULL)
        return -1;
    timeout = gs_timeout_get(j->foreground ? GS_TIMEOUT_FG : GS_TIMEOUT_BG);
    r = gs_clients_route(cs, j->function);
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
        c = gs_conn_get(cs, r, k);
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

static gs_job gs_job_make(const char *function, const char *unique,
                          const void *workload, size_t workload_len, int prio,
                          int foreground)
{
    gs_job j;

    memset(&j, 0, sizeof j);
    j.function = function;
    j.unique = unique;
    j.workload = workload;
    j.workload_len = workload_len;
    j.prio = prio;
    j.foreground = foreground;
    return j;
}

int gs_submit_background(const char *function, const char *unique,
                         const void *workload, size_t workload_len, int prio,
                         char *handle)
{
    gs_job j = gs_job_make(function, unique, workload, workload_len, prio, 0);

    j.handle = handle;
    return gs_job_run(&j);
}

int gs_submit_foreground(const char *function, const char *unique,
                         const void *workload, size_t workload_len, int prio,
                         void **result, size_t *result_len)
{
    gs_job j = gs_job_make(function, unique, workload, workload_len, prio, 1);

    *result = NULL;
    *result_len = 0;
    if (gs_job_run(&j))
        return -1;
    *result = j.result;
    *result_len = j.result_len;
    return 0;
}
