/* SPDX-License-Identifier: Apache-2.0 */
/*
 * cflowstat_http.h: the C calls of flowstat's HTTP side: gzip (libdeflate) and
 * password hash checks (libxcrypt). Same rules as cflowstat.h: prefixed
 * symbols, negative errno on failure, no pointer kept past a return.
 */
#ifndef CFLOWSTAT_HTTP_H
#define CFLOWSTAT_HTTP_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Most bytes fs_gzip can produce for length input bytes. */
size_t fs_gzip_bound(size_t length);

/*
 * Compresses input into out as one gzip member (RFC 1952) at level (1 fast ... 12
 * small) and stores the compressed length in *written. Returns 0, -ENOBUFS when
 * capacity is too small (retry with fs_gzip_bound), or -ENOMEM/-EINVAL.
 */
int fs_gzip(const uint8_t *input, size_t length, uint8_t *out, size_t capacity, size_t *written, int level);

/*
 * Checks password against a crypt(3) hash (bcrypt "$2b$", "$2y$", "$2a$", or any
 * other method libxcrypt knows). Compares the whole result in constant time.
 * Returns 1 on match, 0 on mismatch, -EINVAL when the hash is not a valid setting.
 */
int fs_password_matches(const char *password, const char *hash);

/*
 * Hashes password with bcrypt ("$2b$") at the given cost (4..31) into out (at
 * least 128 bytes). For tests and tooling. Returns 0, or a negative errno.
 */
int fs_bcrypt_hash(const char *password, unsigned cost, char *out, size_t capacity);

#ifdef __cplusplus
}
#endif

#endif /* CFLOWSTAT_HTTP_H */
