/*
 * init_probe.c -- a test-only loadable function that counts how the server calls it
 * (tests/test_udf_server.py: how often a trigger runs a UDF's _init, on each server).
 *
 *   CREATE FUNCTION gs_probe RETURNS INTEGER SONAME 'gs_init_probe.so';
 *     gs_probe(...)       any arguments; returns 0; NULL never. Counts _init, calls, _deinit.
 *   CREATE FUNCTION gs_probe_inits / gs_probe_calls / gs_probe_deinits RETURNS INTEGER ...;
 *     the counts since the library was loaded (all server threads together).
 *
 * The readers have an _init too: a server refuses a function without any auxiliary symbol
 * (unless --allow-suspicious-udfs). No server header: the entry points touch no field of UDF_INIT / UDF_ARGS, so they take them
 * as opaque pointers, and the same source builds on any host for MariaDB and MySQL alike
 * (cc -shared -fPIC). _init returns a one-byte false (my_bool / bool: success).
 */
#include <stdatomic.h>

#define PROBE_EXPORT __attribute__((visibility("default")))

static atomic_llong probe_inits, probe_calls, probe_deinits;

PROBE_EXPORT char gs_probe_init(void *initid, void *args, char *message)
{
    (void)initid; (void)args; (void)message;
    atomic_fetch_add(&probe_inits, 1);
    return 0;
}

PROBE_EXPORT long long gs_probe(void *initid, void *args, char *is_null, char *error)
{
    (void)initid; (void)args; (void)is_null; (void)error;
    atomic_fetch_add(&probe_calls, 1);
    return 0;
}

PROBE_EXPORT void gs_probe_deinit(void *initid)
{
    (void)initid;
    atomic_fetch_add(&probe_deinits, 1);
}

PROBE_EXPORT char gs_probe_inits_init(void *initid, void *args, char *message)
{
    (void)initid; (void)args; (void)message;
    return 0;
}

PROBE_EXPORT long long gs_probe_inits(void *initid, void *args, char *is_null, char *error)
{
    (void)initid; (void)args; (void)is_null; (void)error;
    return atomic_load(&probe_inits);
}

PROBE_EXPORT char gs_probe_calls_init(void *initid, void *args, char *message)
{
    (void)initid; (void)args; (void)message;
    return 0;
}

PROBE_EXPORT long long gs_probe_calls(void *initid, void *args, char *is_null, char *error)
{
    (void)initid; (void)args; (void)is_null; (void)error;
    return atomic_load(&probe_calls);
}

PROBE_EXPORT char gs_probe_deinits_init(void *initid, void *args, char *message)
{
    (void)initid; (void)args; (void)message;
    return 0;
}

PROBE_EXPORT long long gs_probe_deinits(void *initid, void *args, char *is_null, char *error)
{
    (void)initid; (void)args; (void)is_null; (void)error;
    return atomic_load(&probe_deinits);
}
