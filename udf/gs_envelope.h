/*
 * gs_envelope.h -- the workload of the jobs gearsync_send produces
 * (gs_envelope.c); gearsync/envelope.py decodes it.
 *
 *   workload := "GS1" flags:u8 record+ [mac:32 bytes when flags & 1]
 *   record   := version:u64 big-endian, length:u32 big-endian, payload
 *   mac      := HMAC-SHA256(secret, function || 0x00 || workload without mac)
 *
 * Other flag bits are 0 (a reader rejects unknown bits).  One job carries the
 * records of one Gearman function, in the order gearsync_send took them.
 */
#ifndef GEARSYNC_GS_ENVELOPE_H
#define GEARSYNC_GS_ENVELOPE_H

#include "gearsync_udf.h"
#include "gs_sha256.h"

#define GS_ENV_MAGIC "GS1"
#define GS_ENV_FLAG_MAC 0x01
#define GS_ENV_HEADER 4          /* magic + flags */
#define GS_ENV_RECORD_HEADER 12  /* version + length */
#define GS_ENV_MAC GS_SHA256_LEN

/* Bytes of an envelope of n records holding payload_bytes in total. */
static inline size_t gs_env_size(size_t n, size_t payload_bytes, int mac)
{
    return GS_ENV_HEADER + n * GS_ENV_RECORD_HEADER + payload_bytes +
           (mac ? GS_ENV_MAC : 0);
}

/* Write the header at p; returns the end. */
unsigned char *gs_env_begin(unsigned char *p, int mac) GS_HIDDEN;
/* Write one record at p; returns the end. */
unsigned char *gs_env_record(unsigned char *p, uint64_t version,
                             const void *payload, uint32_t len) GS_HIDDEN;
/* Write the MAC of workload[0..wlen) for function at mac_out. */
void gs_env_sign(const gs_hmac_key *k, const char *function, size_t flen,
                 const unsigned char *workload, size_t wlen,
                 unsigned char *mac_out) GS_HIDDEN;

#endif /* GEARSYNC_GS_ENVELOPE_H */
