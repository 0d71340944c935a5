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
/* The default server list from mysqld's environment (wins over the file). */
#define GS_SERVERS_ENV "GEARSYNC_UDF_SERVERS"
/* Longest secret, bytes. */
#define GS_SECRET_MAX 1024
/* gearsync_send's queue (queued + unacknowledged records), MiB. */
#define GS_QUEUE_MIB_DEFAULT 16
#define GS_QUEUE_MIB_MAX 1024

/* Read the config file and the environment once (first caller wins, the
   others wait until it is read), then log where the settings came from. */
void gs_config_load(void) GS_HIDDEN;
/* The _init error of a run-time setter under lock = on (%s: its name). */
#define GS_LOCKED_MESSAGE "%s: locked by gearsync_udf.cnf (lock = on)"
/* 1 when the file says lock = on: the run-time setters must refuse. */
int gs_config_locked(void) GS_HIDDEN;
/* 1 when the file says spread = on: gearsync_send spreads records over the
   default list by route (gs_sender.c). */
int gs_config_spread(void) GS_HIDDEN;
/* The envelope secret: its length (0 = none) and *key its bytes. */
size_t gs_config_secret(const unsigned char **key) GS_HIDDEN;
/* The size of gearsync_send's queue, bytes. */
size_t gs_config_queue_bytes(void) GS_HIDDEN;
/* gearsync_send's linger: after a job, how long records wait for company
   before the next small one goes out, microseconds (0 = none). */
#define GS_LINGER_US_DEFAULT 0
#define GS_LINGER_US_MAX 10000
long gs_config_linger_us(void) GS_HIDDEN;

#endif /* GEARSYNC_GS_CONFIG_H */
