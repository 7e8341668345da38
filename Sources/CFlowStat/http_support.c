// SPDX-License-Identifier: Apache-2.0
/*
 * http_support.c: gzip and password checks for the HTTP server. See
 * cflowstat_http.h.
 *
 * gzip is here rather than in NIOExtras' HTTPResponseCompressor because that
 * handler compresses on the event loop at zlib's default level 6, stalling every
 * other connection while it compresses a big exposition. This runs on the scrape
 * thread pool: libdeflate's whole-buffer compressor (about twice as fast as
 * zlib at level 1) for responses held whole, zlib's deflate for streamed ones,
 * which libdeflate cannot do. README, "Compression", has the figures.
 */
#define _GNU_SOURCE
#include <crypt.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <libdeflate.h>
#include <stdlib.h>
#include <zlib.h>

#include "cflowstat_http.h"

size_t fs_gzip_bound(size_t length)
{
	/* NULL: the bound over every compressor this build of libdeflate can make. */
	return libdeflate_gzip_compress_bound(NULL, length);
}

int fs_gzip(const uint8_t *input, size_t length, uint8_t *out, size_t capacity, size_t *written, int level)
{
	struct libdeflate_compressor *compressor;
	size_t size;

	if (level < 1 || level > 12)
		return -EINVAL;
	compressor = libdeflate_alloc_compressor(level);
	if (compressor == NULL)
		return -ENOMEM;
	size = libdeflate_gzip_compress(compressor, input, length, out, capacity);
	libdeflate_free_compressor(compressor);
	if (size == 0)
		return -ENOBUFS;
	*written = size;
	return 0;
}

/*
 * Streamed responses cannot use libdeflate, which compresses a whole buffer at once;
 * zlib's deflate keeps its state between pieces, so the exposition is compressed as
 * it is encoded and never held whole.
 */
struct fs_gzip_stream {
	z_stream z;
};

struct fs_gzip_stream *fs_gzip_stream_new(int level)
{
	struct fs_gzip_stream *stream = calloc(1, sizeof(*stream));

	if (stream == NULL)
		return NULL;
	/* 15 + 16: a 32 KiB window with a gzip header and trailer (RFC 1952). */
	if (deflateInit2(&stream->z, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
		free(stream);
		return NULL;
	}
	return stream;
}

int fs_gzip_stream_write(struct fs_gzip_stream *stream, const uint8_t *input, size_t length, int finish,
			 uint8_t *out, size_t capacity, size_t *consumed, size_t *written)
{
	z_stream *z = &stream->z;
	int rc;

	if (length > UINT32_MAX || capacity > UINT32_MAX)
		return -EINVAL;
	z->next_in = (Bytef *)input;
	z->avail_in = (uInt)length;
	z->next_out = out;
	z->avail_out = (uInt)capacity;
	for (;;) {
		rc = deflate(z, finish ? Z_FINISH : Z_NO_FLUSH);
		if (rc == Z_STREAM_ERROR) {
			*consumed = length - z->avail_in;
			*written = capacity - z->avail_out;
			return -EINVAL;
		}
		if (finish ? rc == Z_STREAM_END : z->avail_in == 0)
			break;
		if (z->avail_out == 0) {
			*consumed = length - z->avail_in;
			*written = capacity;
			return -ENOBUFS;
		}
	}
	*consumed = length - z->avail_in;
	*written = capacity - z->avail_out;
	return 0;
}

void fs_gzip_stream_free(struct fs_gzip_stream *stream)
{
	if (stream == NULL)
		return;
	deflateEnd(&stream->z);
	free(stream);
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
