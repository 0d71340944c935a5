/*
 * gs_thread.h -- per-server-thread state (gs_thread.c).
 *
 * mysqld calls a UDF's _init/_deinit once per row inside a trigger, so what
 * must outlive a row lives in the calling OS thread's gs_thread: a spare
 * JSON buffer, the unique-id counter, and one opaque slot per helper that
 * keeps per-thread state (its own free function is called when the thread
 * exits or the library is unloaded).  gs_thread knows nothing of what a
 * slot holds.
 */
#ifndef GEARSYNC_GS_THREAD_H
#define GEARSYNC_GS_THREAD_H

#include "gearsync_udf.h"
#include "gs_buf.h"

/* A json_object buffer up to this size is cached per thread after _deinit
   (triggers run _init/_deinit per row); larger ones are freed. */
#define GS_JSON_CACHE_MAX (64UL * 1024UL)

/* Unique ids: at most this long, NUL included. */
#define GS_UNIQUE_LEN 64

typedef enum { GS_SLOT_CLIENT = 0, GS_SLOTS } gs_slot;

/* Frees a slot's state; may wait up to wait_ms for it to finish work. */
typedef void (*gs_slot_free)(void *state, int wait_ms);

typedef struct gs_thread gs_thread;

/* The calling thread's state, created on first use; NULL on ENOMEM. */
gs_thread *gs_thread_get(void) GS_HIDDEN;
/* The calling thread's state in slot, created zeroed (size bytes, then
   init(state) if not NULL) on first use; fn frees it when the thread exits
   or the library is unloaded.  *tp gets the thread.  NULL on ENOMEM. */
void *gs_thread_state(gs_thread **tp, gs_slot slot, size_t size,
                      gs_slot_free fn, void (*init)(void *)) GS_HIDDEN;
/* Fill out (>= GS_UNIQUE_LEN bytes) with a fresh unique id, NUL-terminated. */
void gs_thread_unique(gs_thread *t, char *out) GS_HIDDEN;
/* Cached json buffers: take one (or malloc), give one back (or free). */
gs_buf *gs_json_buf_take(void) GS_HIDDEN;
void gs_json_buf_give(gs_buf *b) GS_HIDDEN;

/* Library load / unload (gs_library.c): create the pthread key; free every
   thread's state and delete the key, so that no key destructor points into
   the unloaded library when a thread exits later. */
void gs_thread_load(void) GS_HIDDEN;
void gs_thread_unload(void) GS_HIDDEN;

#endif /* GEARSYNC_GS_THREAD_H */
