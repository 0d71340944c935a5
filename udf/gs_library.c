/*
 * gs_library.c -- the library's one constructor and one destructor (no SQL
 * symbols), so that unloading happens in a known order.
 *
 * mysqld loads gearsync_udf.so at the first CREATE FUNCTION (or at start for
 * functions in mysql.func) and unloads it (dlclose) when the last of its
 * functions is dropped -- never while a statement uses one.  Unload order:
 *   1. the sender thread: stop accepting, deliver what it can within the
 *      background timeout, join it (it reads the server lists);
 *   2. every server thread's state (libgearman clients, JSON buffers) and
 *      the pthread key;
 *   3. the per-function server lists.
 * DROP FUNCTION of every function then CREATE again loads a fresh copy:
 * nothing (thread, memory, key) is left behind (tests/test_udf_server.py).
 */
#include "gearsync_udf.h"
#include "gs_sender.h"
#include "gs_servers.h"
#include "gs_thread.h"

__attribute__((constructor)) static void gs_library_load(void)
{
    gs_thread_load();
}

__attribute__((destructor)) static void gs_library_unload(void)
{
    gs_sender_stop();
    gs_thread_unload();
    gs_servers_unload();
}
