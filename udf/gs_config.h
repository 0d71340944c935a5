/*
 * gs_config.h -- the library's config file, gearsync_udf.cnf (gs_config.c).
 *
 * Loaded once per process (pthread_once) by gs_config_load(), which every
 * SQL function family that sends jobs or changes settings calls from its
 * _init; the values go into the helpers that own them (gs_servers,
 * gs_timeouts, gs_breaker), which never call back here.
 */
#ifndef GEARSYNC_GS_CONFIG_H
#define GEARSYNC_GS_CONFIG_H

#include "gearsync_udf.h"

/* Config file next to the .so, or the path in this environment variable. */
#define GS_CONFIG_NAME "gearsync_udf.cnf"
#define GS_CONFIG_ENV "GEARSYNC_UDF_CONFIG"

/* Read the config file and the environment once (first caller wins, the
   others wait until it is read). */
void gs_config_load(void) GS_HIDDEN;

#endif /* GEARSYNC_GS_CONFIG_H */
