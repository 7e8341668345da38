// SPDX-License-Identifier: Apache-2.0
/*
 * bench_diag_dump.c: the in-process inet_diag dump of the bench's sockets, for scripts/bench.py.
 *
 *   bench_diag_dump WARMUP ITERATIONS
 *
 * Links flowstat's own inet_diag source (Sources/CFlowStat/inet_diag.c) and times
 * fs_diag_dump() of this process's network namespace: one NETLINK_SOCK_DIAG dump per
 * family (IPv4, IPv6) with struct tcp_info, parsed into the fs_flow_key/fs_flow_stats
 * records the BPF source yields, in a buffer kept between dumps (as an agent's would be).
 * That is what any in-process exporter does to read every flow: the like-for-like
 * baseline of the agent's snapshot, which reads the same state from the kernel into
 * records. Only the dump call is timed: no process start, no text.
 *
 * WARMUP untimed dumps first (the agent's figures come after warm-up scrapes too), then
 * ITERATIONS timed ones. Output, one JSON object: flows (of the last dump) and ns (each
 * timed dump). Built by scripts/bench.py with gcc -O2 against inet_diag.c.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cflowstat.h"

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int dump(fs_flow_buffer *buffer)
{
	fs_error error;
	for (;;) {
		buffer->count = 0;
		int rc = fs_diag_dump(-1, 0, buffer, &error);
		if (rc == -ENOSPC) {
			/* count says how many there were: grow with room to spare, and retry. */
			buffer->capacity = buffer->count + buffer->count / 4 + 1024;
			buffer->keys = realloc(buffer->keys, buffer->capacity * sizeof *buffer->keys);
			buffer->values = realloc(buffer->values, buffer->capacity * sizeof *buffer->values);
			if (!buffer->keys || !buffer->values) {
				fprintf(stderr, "bench_diag_dump: out of memory\n");
				exit(1);
			}
			continue;
		}
		if (rc) {
			fprintf(stderr, "bench_diag_dump: %s: %s\n", error.step, error.message);
			exit(1);
		}
		return 0;
	}
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: bench_diag_dump WARMUP ITERATIONS\n");
		return 2;
	}
	int warmup = atoi(argv[1]), iterations = atoi(argv[2]);
	fs_flow_buffer buffer = {0};
	for (int i = 0; i < warmup || buffer.capacity == 0; i++)
		dump(&buffer);
	printf("{\"ns\": [");
	for (int i = 0; i < iterations; i++) {
		uint64_t start = now_ns();
		dump(&buffer);
		printf("%s%" PRIu64, i ? ", " : "", now_ns() - start);
	}
	printf("], \"flows\": %" PRIu32 "}\n", buffer.count);
	return 0;
}
