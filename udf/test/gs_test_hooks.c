/*
 * gs_test_hooks.c -- exported entry points into the library's internal
 * helpers, for the cffi unit tests only.
 *
 * Linked with the very objects of gearsync_udf.so into a separate library,
 * $(BUILD)/test/gearsync_udf_test.so (make -f udf/udf.mk udf-testlib); the
 * library mysqld loads never contains this file (tests/udf/test_symbols.py
 * checks it exports nothing but SQL functions).
 */
#include "../gearsync_udf.h"
#include "../gs_envelope.h"
#include "../gs_sha256.h"

GS_EXPORT void gs_test_sha256(const void *msg, size_t n, unsigned char *out);
GS_EXPORT void gs_test_hmac_sha256(const void *key, size_t klen,
                                   const void *msg, size_t n,
                                   unsigned char *out);

GS_EXPORT size_t gs_test_envelope(const char *function, size_t flen,
                                  const void *secret, size_t slen, size_t n,
                                  const uint64_t *versions,
                                  const unsigned char **payloads,
                                  const uint32_t *lens, unsigned char *out,
                                  size_t cap);

void gs_test_sha256(const void *msg, size_t n, unsigned char *out)
{
    gs_sha256_ctx c;

    gs_sha256_init(&c);
    gs_sha256_update(&c, msg, n);
    gs_sha256_final(&c, out);
}

/* The message is fed in two updates split at n/3, so partial-block
   buffering is exercised too. */
void gs_test_hmac_sha256(const void *key, size_t klen, const void *msg,
                         size_t n, unsigned char *out)
{
    gs_hmac_key k;
    gs_sha256_ctx c;

    gs_hmac_key_init(&k, key, klen);
    gs_hmac_start(&k, &c);
    gs_sha256_update(&c, msg, n / 3);
    gs_sha256_update(&c, (const unsigned char *)msg + n / 3, n - n / 3);
    gs_hmac_finish(&k, &c, out);
}

/* The envelope of n records, exactly as the sender writes it (secret NULL /
   slen 0: unsigned).  Returns its size, or 0 when cap is too small. */
size_t gs_test_envelope(const char *function, size_t flen, const void *secret,
                        size_t slen, size_t n, const uint64_t *versions,
                        const unsigned char **payloads, const uint32_t *lens,
                        unsigned char *out, size_t cap)
{
    size_t bytes = 0, i;
    unsigned char *p;
    gs_hmac_key k;

    for (i = 0; i < n; i++)
        bytes += lens[i];
    if (gs_env_size(n, bytes, slen > 0) > cap)
        return 0;
    p = gs_env_begin(out, slen > 0);
    for (i = 0; i < n; i++)
        p = gs_env_record(p, versions[i], payloads[i], lens[i]);
    if (slen > 0) {
        gs_hmac_key_init(&k, secret, slen);
        gs_env_sign(&k, function, flen, out, (size_t)(p - out), p);
        p += GS_ENV_MAC;
    }
    return (size_t)(p - out);
}
