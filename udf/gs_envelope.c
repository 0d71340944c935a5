/*
 * gs_envelope.c -- encoder of gearsync_send's job workload (no SQL
 * symbols), see gs_envelope.h.
 */
#include "gs_envelope.h"

#include <string.h>

static unsigned char *gs_put_be(unsigned char *p, uint64_t v, unsigned bytes)
{
    unsigned i;

    for (i = 0; i < bytes; i++)
        p[i] = (unsigned char)(v >> (8 * (bytes - 1 - i)));
    return p + bytes;
}

unsigned char *gs_env_begin(unsigned char *p, int mac)
{
    memcpy(p, GS_ENV_MAGIC, 3);
    p[3] = mac ? GS_ENV_FLAG_MAC : 0;
    return p + GS_ENV_HEADER;
}

unsigned char *gs_env_record(unsigned char *p, uint64_t version,
                             const void *payload, uint32_t len)
{
    p = gs_put_be(p, version, 8);
    p = gs_put_be(p, len, 4);
    if (len > 0)
        memcpy(p, payload, len);
    return p + len;
}

void gs_env_sign(const gs_hmac_key *k, const char *function, size_t flen,
                 const unsigned char *workload, size_t wlen,
                 unsigned char *mac_out)
{
    static const unsigned char nul = 0;
    gs_sha256_ctx c;

    gs_hmac_start(k, &c);
    gs_sha256_update(&c, function, flen);
    gs_sha256_update(&c, &nul, 1);
    gs_sha256_update(&c, workload, wlen);
    gs_hmac_finish(k, &c, mac_out);
}
