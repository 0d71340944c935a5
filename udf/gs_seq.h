/* gs_seq.h -- the per-mysqld version counter behind gearsync_seq() (seq.c). */
#ifndef GEARSYNC_GS_SEQ_H
#define GEARSYNC_GS_SEQ_H

#include <stdint.h>

/* max(last + 1, now in microseconds since the epoch), atomically; strictly
   increasing within the process. */
uint64_t gs_seq_next(void) __attribute__((visibility("hidden")));

#endif /* GEARSYNC_GS_SEQ_H */
