/*
 * gs_buf.c -- growable byte buffer (no SQL symbols), see gs_buf.h.
 */
#include "gs_buf.h"

#include <stdlib.h>

int gs_buf_grow(gs_buf *b, size_t extra)
{
    size_t need = b->len + extra;
    size_t cap = b->cap ? b->cap : GS_BUF_INITIAL_CAP;
    char *p;

    if (need < b->len)
        return -1; /* overflow */
    while (cap < need) {
        if (cap > SIZE_MAX / 2)
            return -1;
        cap *= 2;
    }
    p = realloc(b->data, cap);
    if (p == NULL)
        return -1;
    b->data = p;
    b->cap = cap;
    return 0;
}
