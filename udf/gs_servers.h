/*
 * gs_servers.h -- job-server lists (gs_servers.c): parsing, normalising, the
 * process-wide default and per-function lists, their generation counter, and
 * a parsed "route" that a caller caches and refreshes by generation.
 */
#ifndef GEARSYNC_GS_SERVERS_H
#define GEARSYNC_GS_SERVERS_H

#include "gearsync_udf.h"

/* Per-function server lists (gman_servers_set(servers, function)). */
#define GS_MAX_FUNCTION_LISTS 64

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
/* Parse and normalise a server list ("h1[:p],[v6]:p,...") into
   out ("h1:4730,[v6]:p"); 0 ok, -1 invalid (*why gets a reason). */
int gs_servers_normalise(const char *in, size_t n, char *out, size_t outsz,
                         const char **why) GS_HIDDEN;
/* Install a normalised list process-wide (bumps the generation); with a
   function name (not NULL/""), only for that function.  0 ok, -1 full. */
int gs_servers_set(const char *normalised, const char *function) GS_HIDDEN;
/* Generation of the lists (bumped by every change; one atomic load). */
uint64_t gs_servers_generation(void) GS_HIDDEN;
/* Copy the list used for function (NULL: the default list) into out;
   returns its generation. */
uint64_t gs_servers_lookup(const char *function, char *out,
                           size_t outsz) GS_HIDDEN;

/* A parsed list: servers in order, with their "host:port" addresses. */
typedef struct gs_route {
    uint64_t gen;                        /* 0: not parsed */
    char function[GS_FUNCTION_MAX_LEN];  /* "" = the default list */
    char list[GS_SERVERS_MAX_LEN];       /* the normalised list parsed */
    unsigned count;
    gs_server servers[GS_MAX_SERVERS];
    char addrs[GS_MAX_SERVERS][GS_ADDR_LEN];
} gs_route;

/* Bring r up to date for function (NULL or "": the default list): a no-op
   when neither the generation nor the function changed.  Returns 1 when the
   list r holds changed, 0 when not, -1 when the list cannot be parsed. */
int gs_route_refresh(gs_route *r, const char *function) GS_HIDDEN;

/* Library unload (gs_library.c): free the per-function lists. */
void gs_servers_unload(void) GS_HIDDEN;

#endif /* GEARSYNC_GS_SERVERS_H */
