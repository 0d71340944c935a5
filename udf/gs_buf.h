/*
 * gs_buf.h -- growable byte buffer (doubling, never shrinks by itself).
 */
#ifndef GEARSYNC_GS_BUF_H
#define GEARSYNC_GS_BUF_H

#include "gearsync_udf.h"

#include <string.h>

/* The first capacity of a buffer grown from empty. */
#define GS_BUF_INITIAL_CAP 1024UL

typedef struct gs_buf {
    char *data;
    size_t len;
    size_t cap;
} gs_buf;

/* Make room for len + extra bytes.  0 ok, -1 ENOMEM/overflow. */
int gs_buf_grow(gs_buf *b, size_t extra) GS_HIDDEN;

static inline int gs_buf_reserve(gs_buf *b, size_t extra)
{
    if (b->cap - b->len >= extra)
        return 0;
    return gs_buf_grow(b, extra);
}

/* Append s[0..n).  0 ok, -1 ENOMEM/overflow. */
static inline int gs_buf_append(gs_buf *b, const char *s, size_t n)
{
    if (gs_buf_reserve(b, n))
        return -1;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    return 0;
}

#endif /* GEARSYNC_GS_BUF_H */
