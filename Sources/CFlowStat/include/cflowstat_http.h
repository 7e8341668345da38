/* SPDX-License-Identifier: Apache-2.0 */
/*
 * cflowstat_http.h: the C calls of flowstat's HTTP side: gzip (libdeflate whole,
 * zlib streamed) and
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
 * A gzip member written piece by piece (zlib's deflate), for responses streamed
 * while they are encoded: fs_gzip above needs the whole body at once.
 */
struct fs_gzip_stream;

/* Starts a stream at level (1 fast ... 9 small); NULL when out of memory. */
struct fs_gzip_stream *fs_gzip_stream_new(int level);

/*
 * Compresses input (finish: and ends the member) into out. Stores the input bytes
 * consumed in *consumed and the output bytes in *written. Returns 0 when all input
 * is consumed (and, with finish, the member ended); -ENOBUFS when out filled first:
 * send out, then call again with the rest of the input; or -EINVAL.
 */
int fs_gzip_stream_write(struct fs_gzip_stream *stream, const uint8_t *input, size_t length, int finish,
			 uint8_t *out, size_t capacity, size_t *consumed, size_t *written);

void fs_gzip_stream_free(struct fs_gzip_stream *stream);

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
