/*
 * gs_sha256.h -- SHA-256 (FIPS 180-4) and HMAC-SHA256 (RFC 2104), our own
 * (gs_sha256.c).  Tested against the NIST examples and the RFC 4231 test
 * cases (tests/udf/test_crypto.py) and against Python's hashlib/hmac.
 */
#ifndef GEARSYNC_GS_SHA256_H
#define GEARSYNC_GS_SHA256_H

#include "gearsync_udf.h"

#define GS_SHA256_LEN 32
#define GS_SHA256_BLOCK 64

typedef struct {
    uint32_t h[8];
    uint64_t bytes;                       /* message length so far */
    unsigned char block[GS_SHA256_BLOCK]; /* partial block */
    size_t fill;
} gs_sha256_ctx;

void gs_sha256_init(gs_sha256_ctx *c) GS_HIDDEN;
void gs_sha256_update(gs_sha256_ctx *c, const void *data, size_t n) GS_HIDDEN;
void gs_sha256_final(gs_sha256_ctx *c, unsigned char out[GS_SHA256_LEN])
    GS_HIDDEN;

/* An HMAC key prepared once: the hash states after the ipad and opad
   blocks, so a MAC costs the message's blocks plus two. */
typedef struct {
    gs_sha256_ctx inner, outer;
} gs_hmac_key;

void gs_hmac_key_init(gs_hmac_key *k, const void *key, size_t n) GS_HIDDEN;
/* Start a MAC: c is the inner state after the ipad block. */
void gs_hmac_start(const gs_hmac_key *k, gs_sha256_ctx *c) GS_HIDDEN;
/* Finish the MAC started on c (c is consumed). */
void gs_hmac_finish(const gs_hmac_key *k, gs_sha256_ctx *c,
                    unsigned char out[GS_SHA256_LEN]) GS_HIDDEN;

#endif /* GEARSYNC_GS_SHA256_H */
