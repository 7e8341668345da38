// SPDX-License-Identifier: Apache-2.0
/*
 * bench_churn.c: short request/response TCP connections over loopback, as fast
 * as the machine allows, for a fixed time; prints connections per second.
 *
 *   bench_churn DST_ADDR PORT SECONDS WORKERS SRC_PREFIX
 *
 * Forks WORKERS server processes sharing one listener on DST_ADDR:PORT and
 * WORKERS client processes. Each client connection binds a source address from
 * SRC_PREFIX.1 ... SRC_PREFIX.250 (port chosen at connect), sends a 64-byte
 * request, reads the 64-byte response and closes with a reset (SO_LINGER 0), so
 * that no TIME_WAIT sockets pile up; the server then closes its end. Every child exits by itself after SECONDS (alarm), and the parent kills
 * what is left, so nothing outlives a run. Output: one line "CONN_PER_SEC".
 * Built by scripts/bench.py with gcc -O2 into a temporary directory.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

static volatile sig_atomic_t stop;
static void on_alarm(int sig)
{
	(void)sig;
	stop = 1;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void serve(int listener)
{
	char buf[64];
	while (!stop) {
		int c = accept(listener, NULL, NULL);
		if (c < 0)
			continue;
		ssize_t n = read(c, buf, sizeof buf);
		if (n > 0)
			(void)!write(c, buf, (size_t)n);
		/* Wait for the client's reset, so that this end leaves no TIME_WAIT. */
		while (read(c, buf, sizeof buf) > 0)
			;
		close(c);
	}
}

static long client(const char *dst, int port, const char *prefix, int worker)
{
	struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(port)};
	inet_pton(AF_INET, dst, &to.sin_addr);
	char req[64], src[32];
	memset(req, 'r', sizeof req);
	long done = 0;
	unsigned next = (unsigned)worker * 61;
	while (!stop) {
		int s = socket(AF_INET, SOCK_STREAM, 0);
		if (s < 0)
			break;
		int one = 1;
		setsockopt(s, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
		struct sockaddr_in from = {.sin_family = AF_INET};
		snprintf(src, sizeof src, "%s.%u", prefix, 1 + next++ % 250);
		inet_pton(AF_INET, src, &from.sin_addr);
		if (bind(s, (struct sockaddr *)&from, sizeof from) == 0 &&
		    connect(s, (struct sockaddr *)&to, sizeof to) == 0 &&
		    write(s, req, sizeof req) == (ssize_t)sizeof req) {
			char buf[64];
			size_t got = 0;
			ssize_t n;
			while (got < sizeof buf && (n = read(s, buf + got, sizeof buf - got)) > 0)
				got += (size_t)n;
			if (got == sizeof buf)
				done++;
		}
		/*
		 * Close with a reset: neither end keeps a TIME_WAIT socket, so runs do not
		 * fill the TIME_WAIT table (131,072 here) and skew one another.
		 */
		struct linger abort_close = {.l_onoff = 1, .l_linger = 0};
		setsockopt(s, SOL_SOCKET, SO_LINGER, &abort_close, sizeof abort_close);
		close(s);
	}
	return done;
}

int main(int argc, char **argv)
{
	if (argc != 6) {
		fprintf(stderr, "usage: bench_churn DST_ADDR PORT SECONDS WORKERS SRC_PREFIX\n");
		return 2;
	}
	const char *dst = argv[1], *prefix = argv[5];
	int port = atoi(argv[2]), seconds = atoi(argv[3]), workers = atoi(argv[4]);

	int listener = socket(AF_INET, SOCK_STREAM, 0);
	int one = 1;
	setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_in at = {.sin_family = AF_INET, .sin_port = htons(port)};
	inet_pton(AF_INET, dst, &at.sin_addr);
	if (bind(listener, (struct sockaddr *)&at, sizeof at) || listen(listener, 4096)) {
		perror("bench_churn: listen");
		return 1;
	}
	long *counts = mmap(NULL, sizeof(long) * (size_t)workers, PROT_READ | PROT_WRITE,
			    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	struct sigaction sa = {.sa_handler = on_alarm}; /* no SA_RESTART: accept returns */
	sigaction(SIGALRM, &sa, NULL);

	pid_t pids[2 * 64];
	int nchild = 0;
	if (workers > 64)
		workers = 64;
	for (int i = 0; i < workers; i++) {
		pid_t p = fork();
		if (p == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			alarm((unsigned)seconds + 1);
			serve(listener);
			_exit(0);
		}
		pids[nchild++] = p;
	}
	double start = now();
	for (int i = 0; i < workers; i++) {
		pid_t p = fork();
		if (p == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			alarm((unsigned)seconds);
			counts[i] = client(dst, port, prefix, i);
			_exit(0);
		}
		pids[nchild++] = p;
	}
	for (int i = workers; i < nchild; i++)
		waitpid(pids[i], NULL, 0);
	double elapsed = now() - start;
	for (int i = 0; i < workers; i++)
		kill(pids[i], SIGKILL);
	for (int i = 0; i < workers; i++)
		waitpid(pids[i], NULL, 0);
	long total = 0;
	for (int i = 0; i < workers; i++)
		total += counts[i];
	printf("%.0f\n", total / elapsed);
	return 0;
}
