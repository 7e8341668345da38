// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * http_support.c: gzip and password checks for the HTTP server. See
 * cflowstat_http.h.
 *
 * gzip is here rather than in NIOExtras' HTTPResponseCompressor because that
 * handler compresses on the event loop at zlib's default level 6 and switches
 * to chunked encoding: a 40 MB exposition took about 1.1 s there against 0.36 s
 * at level 1, stalling every other connection meanwhile. This one runs on the
 * scrape thread pool and keeps Content-Length (so HEAD can answer it too).
 */
#define _GNU_SOURCE
#include <crypt.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <zlib.h>

#include "cflowstat_http.h"

/* windowBits 15 plus 16: zlib writes a gzip header and trailer instead of zlib's. */
#define FS_GZIP_WINDOW_BITS (15 + 16)

size_t fs_gzip_bound(size_t length)
{
	/* deflateBound for a gzip stream, plus slack for the 18-byte gzip framing. */
	return length + (length >> 12) + (length >> 14) + (length >> 25) + 13 + 18 + 64;
}

int fs_gzip(const uint8_t *input, size_t length, uint8_t *out, size_t capacity, size_t *written, int level)
{
	z_stream stream;
	int rc;

	memset(&stream, 0, sizeof(stream));
	if (level < 1 || level > 9)
		return -EINVAL;
	rc = deflateInit2(&stream, level, Z_DEFLATED, FS_GZIP_WINDOW_BITS, 8, Z_DEFAULT_STRATEGY);
	if (rc == Z_MEM_ERROR)
		return -ENOMEM;
	if (rc != Z_OK)
		return -EINVAL;

	/* avail_in/avail_out are 32-bit: feed bodies over 4 GiB in slices. */
	stream.next_in = (Bytef *)input;
	stream.next_out = out;
	size_t in_left = length, out_left = capacity;
	for (;;) {
		uInt in_slice = in_left > 0x40000000 ? 0x40000000 : (uInt)in_left;
		uInt out_slice = out_left > 0x40000000 ? 0x40000000 : (uInt)out_left;
		stream.avail_in = in_slice;
		stream.avail_out = out_slice;
		rc = deflate(&stream, in_left == in_slice ? Z_FINISH : Z_NO_FLUSH);
		in_left -= in_slice - stream.avail_in;
		out_left -= out_slice - stream.avail_out;
		if (rc == Z_STREAM_END)
			break;
		if (rc != Z_OK && rc != Z_BUF_ERROR) {
			deflateEnd(&stream);
			return -EINVAL;
		}
		if (out_left == 0) {
			deflateEnd(&stream);
			return -ENOBUFS;
		}
	}
	*written = capacity - out_left;
	deflateEnd(&stream);
	return 0;
}

int fs_password_matches(const char *password, const char *hash)
{
	struct crypt_data data;
	const char *result;
	size_t expected, actual, i;
	unsigned char difference = 0;

	memset(&data, 0, sizeof(data));
	result = crypt_r(password, hash, &data);
	/* libxcrypt returns NULL or a string starting with '*' for an invalid setting. */
	if (result == NULL || result[0] == '*')
		return -EINVAL;
	expected = strlen(hash);
	actual = strlen(result);
	/* Every byte is compared whatever the first difference, so timing says nothing. */
	for (i = 0; i < expected; i++)
		difference |= (unsigned char)hash[i] ^ (unsigned char)(i < actual ? result[i] : 0);
	explicit_bzero(&data, sizeof(data));
	return difference == 0 && expected == actual;
}

int fs_bcrypt_hash(const char *password, unsigned cost, char *out, size_t capacity)
{
	char setting[CRYPT_GENSALT_OUTPUT_SIZE];
	struct crypt_data data;
	const char *result;

	if (crypt_gensalt_rn("$2b$", cost, NULL, 0, setting, sizeof(setting)) == NULL)
		return errno ? -errno : -EINVAL;
	memset(&data, 0, sizeof(data));
	result = crypt_r(password, setting, &data);
	if (result == NULL || result[0] == '*')
		return -EINVAL;
	if (strlen(result) + 1 > capacity)
		return -ENOBUFS;
	strcpy(out, result);
	explicit_bzero(&data, sizeof(data));
	return 0;
}
