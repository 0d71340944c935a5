/*
 * gs_sha256.c -- SHA-256 after FIPS 180-4 section 6.2, HMAC after RFC 2104
 * (no SQL symbols); see gs_sha256.h.  Byte-order independent: words are
 * assembled from bytes explicitly.
 */
#include "gs_sha256.h"

#include <string.h>

/* FIPS 180-4 4.2.2: the first 32 bits of the fractional parts of the cube
   roots of the first 64 primes. */
static const uint32_t gs_k[64] = {
    0x428a2f98U, 0x71374491U, 0xb5c0fbcfU, 0xe9b5dba5U, 0x3956c25bU,
    0x59f111f1U, 0x923f82a4U, 0xab1c5ed5U, 0xd807aa98U, 0x12835b01U,
    0x243185beU, 0x550c7dc3U, 0x72be5d74U, 0x80deb1feU, 0x9bdc06a7U,
    0xc19bf174U, 0xe49b69c1U, 0xefbe4786U, 0x0fc19dc6U, 0x240ca1ccU,
    0x2de92c6fU, 0x4a7484aaU, 0x5cb0a9dcU, 0x76f988daU, 0x983e5152U,
    0xa831c66dU, 0xb00327c8U, 0xbf597fc7U, 0xc6e00bf3U, 0xd5a79147U,
    0x06ca6351U, 0x14292967U, 0x27b70a85U, 0x2e1b2138U, 0x4d2c6dfcU,
    0x53380d13U, 0x650a7354U, 0x766a0abbU, 0x81c2c92eU, 0x92722c85U,
    0xa2bfe8a1U, 0xa81a664bU, 0xc24b8b70U, 0xc76c51a3U, 0xd192e819U,
    0xd6990624U, 0xf40e3585U, 0x106aa070U, 0x19a4c116U, 0x1e376c08U,
    0x2748774cU, 0x34b0bcb5U, 0x391c0cb3U, 0x4ed8aa4aU, 0x5b9cca4fU,
    0x682e6ff3U, 0x748f82eeU, 0x78a5636fU, 0x84c87814U, 0x8cc70208U,
    0x90befffaU, 0xa4506cebU, 0xbef9a3f7U, 0xc67178f2U,
};

/* FIPS 180-4 5.3.3: the first 32 bits of the fractional parts of the
   square roots of the first 8 primes. */
static const uint32_t gs_h0[8] = {
    0x6a09e667U, 0xbb67ae85U, 0x3c6ef372U, 0xa54ff53aU,
    0x510e527fU, 0x9b05688cU, 0x1f83d9abU, 0x5be0cd19U,
};

static inline uint32_t gs_rotr(uint32_t x, unsigned n)
{
    return (x >> n) | (x << (32 - n));
}

/* FIPS 180-4 6.2.2: one 512-bit block. */
static void gs_sha256_block(uint32_t h[8], const unsigned char *p)
{
    uint32_t w[64], a, b, c, d, e, f, g, hh, t1, t2;
    unsigned t;

    for (t = 0; t < 16; t++)
        w[t] = (uint32_t)p[4 * t] << 24 | (uint32_t)p[4 * t + 1] << 16 |
               (uint32_t)p[4 * t + 2] << 8 | (uint32_t)p[4 * t + 3];
    for (t = 16; t < 64; t++) {
        uint32_t s0 = gs_rotr(w[t - 15], 7) ^ gs_rotr(w[t - 15], 18) ^
                      (w[t - 15] >> 3);
        uint32_t s1 = gs_rotr(w[t - 2], 17) ^ gs_rotr(w[t - 2], 19) ^
                      (w[t - 2] >> 10);
        w[t] = s1 + w[t - 7] + s0 + w[t - 16];
    }
    a = h[0], b = h[1], c = h[2], d = h[3];
    e = h[4], f = h[5], g = h[6], hh = h[7];
    for (t = 0; t < 64; t++) {
        uint32_t S1 = gs_rotr(e, 6) ^ gs_rotr(e, 11) ^ gs_rotr(e, 25);
        uint32_t ch = (e & f) ^ (~e & g);
        uint32_t S0 = gs_rotr(a, 2) ^ gs_rotr(a, 13) ^ gs_rotr(a, 22);
        uint32_t maj = (a & b) ^ (a & c) ^ (b & c);
        t1 = hh + S1 + ch + gs_k[t] + w[t];
        t2 = S0 + maj;
        hh = g, g = f, f = e, e = d + t1;
        d = c, c = b, b = a, a = t1 + t2;
    }
    h[0] += a, h[1] += b, h[2] += c, h[3] += d;
    h[4] += e, h[5] += f, h[6] += g, h[7] += hh;
}

void gs_sha256_init(gs_sha256_ctx *c)
{
    memcpy(c->h, gs_h0, sizeof c->h);
    c->bytes = 0;
    c->fill = 0;
}

void gs_sha256_update(gs_sha256_ctx *c, const void *data, size_t n)
{
    const unsigned char *p = data;

    c->bytes += n;
    if (c->fill > 0) {
        size_t take = GS_SHA256_BLOCK - c->fill;
        if (take > n)
            take = n;
        memcpy(c->block + c->fill, p, take);
        c->fill += take;
        p += take;
        n -= take;
        if (c->fill < GS_SHA256_BLOCK)
            return;
        gs_sha256_block(c->h, c->block);
        c->fill = 0;
    }
    for (; n >= GS_SHA256_BLOCK; p += GS_SHA256_BLOCK, n -= GS_SHA256_BLOCK)
        gs_sha256_block(c->h, p);
    memcpy(c->block, p, n);
    c->fill = n;
}

/* FIPS 180-4 5.1.1 padding: 0x80, zeros, the length in bits (64-bit BE). */
void gs_sha256_final(gs_sha256_ctx *c, unsigned char out[GS_SHA256_LEN])
{
    uint64_t bits = c->bytes * 8;
    unsigned i;

    c->block[c->fill++] = 0x80;
    if (c->fill > GS_SHA256_BLOCK - 8) {
        memset(c->block + c->fill, 0, GS_SHA256_BLOCK - c->fill);
        gs_sha256_block(c->h, c->block);
        c->fill = 0;
    }
    memset(c->block + c->fill, 0, GS_SHA256_BLOCK - 8 - c->fill);
    for (i = 0; i < 8; i++)
        c->block[GS_SHA256_BLOCK - 1 - i] = (unsigned char)(bits >> (8 * i));
    gs_sha256_block(c->h, c->block);
    for (i = 0; i < 8; i++) {
        out[4 * i] = (unsigned char)(c->h[i] >> 24);
        out[4 * i + 1] = (unsigned char)(c->h[i] >> 16);
        out[4 * i + 2] = (unsigned char)(c->h[i] >> 8);
        out[4 * i + 3] = (unsigned char)c->h[i];
    }
}

/* RFC 2104: H(K ^ opad, H(K ^ ipad, text)); a key longer than a block is
   hashed first, a shorter one padded with zeros. */
void gs_hmac_key_init(gs_hmac_key *k, const void *key, size_t n)
{
    unsigned char kb[GS_SHA256_BLOCK], pad[GS_SHA256_BLOCK];
    unsigned i;

    memset(kb, 0, sizeof kb);
    if (n > GS_SHA256_BLOCK) {
        gs_sha256_ctx c;
        gs_sha256_init(&c);
        gs_sha256_update(&c, key, n);
        gs_sha256_final(&c, kb);
    } else if (n > 0) {
        memcpy(kb, key, n);
    }
    for (i = 0; i < GS_SHA256_BLOCK; i++)
        pad[i] = kb[i] ^ 0x36;
    gs_sha256_init(&k->inner);
    gs_sha256_update(&k->inner, pad, sizeof pad);
    for (i = 0; i < GS_SHA256_BLOCK; i++)
        pad[i] = kb[i] ^ 0x5c;
    gs_sha256_init(&k->outer);
    gs_sha256_update(&k->outer, pad, sizeof pad);
    memset(kb, 0, sizeof kb);
    memset(pad, 0, sizeof pad);
}

void gs_hmac_start(const gs_hmac_key *k, gs_sha256_ctx *c)
{
    *c = k->inner;
}

void gs_hmac_finish(const gs_hmac_key *k, gs_sha256_ctx *c,
                    unsigned char out[GS_SHA256_LEN])
{
    unsigned char inner[GS_SHA256_LEN];
    gs_sha256_ctx o = k->outer;

    gs_sha256_final(c, inner);
    gs_sha256_update(&o, inner, sizeof inner);
    gs_sha256_final(&o, out);
}
