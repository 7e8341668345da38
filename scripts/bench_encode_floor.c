// SPDX-License-Identifier: Apache-2.0
/*
 * bench_encode_floor.c: the C floor of flowstat's per-flow encoding, for scripts/bench.py.
 *
 *   bench_encode_floor EXPOSITION_FILE ITERATIONS
 *
 * Reads an exposition the agent served (Prometheus text, flowstat names, default labels
 * src/sport/dst/dport), takes its per-flow families (every `tcp_flow_*` family: its
 * `# HELP`/`# TYPE` lines and one series per flow, or, for a family with several series per
 * flow such as tcp_flow_limited_seconds_total{reason}, one run of series per value of its
 * extra label) and turns them back into binary flow
 * records: addresses as in_addr/in6_addr, ports as integers, the seconds and rate values
 * as doubles and the counters and segment counts as 64-bit integers, as the agent holds
 * them before it encodes. Then, ITERATIONS times (after one warm-up pass of each), it
 * formats those records into one preallocated buffer, alternating two ways:
 *
 *  - "tight": what the agent's encoder does, written in plain C: each flow's label set
 *    rendered once (dotted quad by hand, inet_ntop for IPv6), then per family a memcpy of
 *    the name and the label set and the value (integers by hand; a double as an integer
 *    when integral, as a fixed-point decimal when it has at most nine decimals, else its
 *    shortest round-trip text, from double-conversion (scripts/bench_shortest.cc): the
 *    agent's rules). This is the floor.
 *  - "snprintf": the same structure with snprintf doing every piece (label set once per
 *    flow, one snprintf per series; shortest doubles by the %.*g that reads back equal):
 *    what a straightforward C exporter writes.
 *
 * Both outputs are compared byte for byte with the agent's text for those families, so
 * the floor formats exactly the same series (same names, labels and values). "sort" times,
 * separately, ordering the records by label tuple from a shuffled order (the agent sorts
 * its flows before encoding; the floor's formatting passes take them already in order).
 *
 * Output, one JSON object: series, flows, bytes, match_tight, match_snprintf and the
 * nanoseconds of each timed pass (tight_ns, snprintf_ns, sort_ns).
 * Built by scripts/bench.py with gcc -O2, with bench_shortest.cc and -ldouble-conversion.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_FAMILIES 32

struct flow {
	int family; /* AF_INET or AF_INET6 */
	unsigned char src[16], dst[16];
	uint16_t sport, dport;
};

struct fam {
	char *name;
	size_t name_len;
	char *header; /* its # HELP and # TYPE lines, verbatim; empty for a family's later runs */
	size_t header_len;
	char suffix[64]; /* what closes each label set: `"}`, or `",reason="network"}` */
	size_t suffix_len;
	bool is_double;
	double *d; /* per flow */
	uint64_t *u;
};

static struct flow *flows;
static size_t nflows, flow_cap;
static struct fam fams[MAX_FAMILIES];
static int nfams;

static char *arena; /* label sets of every flow, rendered by a pass */
static size_t *label_off, *label_len;

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *msg, const char *detail)
{
	fprintf(stderr, "bench_encode_floor: %s%s%s\n", msg, detail ? ": " : "", detail ? detail : "");
	exit(1);
}

/* ---- the tight formatter ---- */

static const char digit_pairs[] =
	"00010203040506070809101112131415161718192021222324252627282930313233343536373839"
	"40414243444546474849505152535455565758596061626364656667686970717273747576777879"
	"8081828384858687888990919293949596979899";

static inline char *put_u64(char *p, uint64_t v)
{
	char tmp[24];
	char *t = tmp + sizeof tmp;
	while (v >= 100) {
		unsigned r = (unsigned)(v % 100);
		v /= 100;
		t -= 2;
		memcpy(t, digit_pairs + 2 * r, 2);
	}
	if (v >= 10) {
		t -= 2;
		memcpy(t, digit_pairs + 2 * v, 2);
	} else {
		*--t = (char)('0' + v);
	}
	size_t n = (size_t)(tmp + sizeof tmp - t);
	memcpy(p, t, n);
	return p + n;
}

/* Shortest round-trip text (scripts/bench_shortest.cc, double-conversion), as Swift's. */
int fs_bench_shortest(double value, char *out, int room);

/* The shortest %.*g that parses back to v: what snprintf alone can do. */
static int shortest_g(char *out, size_t room, double v)
{
	for (int prec = 1; prec <= 17; prec++) {
		int n = snprintf(out, room, "%.*g", prec, v);
		if (strtod(out, NULL) == v)
			return n;
	}
	return snprintf(out, room, "%.17g", v);
}

static inline char *put_double(char *p, double v)
{
	if (!isfinite(v)) {
		const char *s = isnan(v) ? "NaN" : v < 0 ? "-Inf" : "+Inf";
		size_t n = strlen(s);
		memcpy(p, s, n);
		return p + n;
	}
	double m = fabs(v);
	if (m < 0x1p63 && trunc(v) == v) {
		if (v < 0) {
			*p++ = '-';
		}
		return put_u64(p, (uint64_t)m);
	}
	if (m < 0x1p53 / 1e9) {
		double scaled = round(m * 1e9);
		if (scaled / 1e9 == m) {
			uint64_t nanos = (uint64_t)scaled;
			if (v < 0)
				*p++ = '-';
			p = put_u64(p, nanos / 1000000000u);
			*p++ = '.';
			uint64_t frac = nanos % 1000000000u;
			for (int i = 8; i >= 0; i--) {
				p[i] = (char)('0' + frac % 10);
				frac /= 10;
			}
			p += 9;
			while (p[-1] == '0')
				p--;
			return p;
		}
	}
	return p + fs_bench_shortest(v, p, 40);
}

static inline char *put_dotted_quad(char *p, const unsigned char *a)
{
	for (int i = 0; i < 4; i++) {
		unsigned o = a[i];
		if (o >= 100)
			*p++ = (char)('0' + o / 100);
		if (o >= 10)
			*p++ = (char)('0' + o / 10 % 10);
		*p++ = (char)('0' + o % 10);
		if (i != 3)
			*p++ = '.';
	}
	return p;
}

static inline char *put_address(char *p, int family, const unsigned char *a)
{
	if (family == AF_INET)
		return put_dotted_quad(p, a);
	char text[INET6_ADDRSTRLEN];
	inet_ntop(AF_INET6, a, text, sizeof text);
	size_t n = strlen(text);
	memcpy(p, text, n);
	return p + n;
}

#define PUT(p, lit) (memcpy((p), (lit), sizeof(lit) - 1), (p) += sizeof(lit) - 1)

static size_t format_tight(char *out)
{
	char *a = arena;
	for (size_t i = 0; i < nflows; i++) {
		const struct flow *f = &flows[i];
		char *start = a;
		PUT(a, "{src=\"");
		a = put_address(a, f->family, f->src);
		PUT(a, "\",sport=\"");
		a = put_u64(a, f->sport);
		PUT(a, "\",dst=\"");
		a = put_address(a, f->family, f->dst);
		PUT(a, "\",dport=\"");
		a = put_u64(a, f->dport);
		label_off[i] = (size_t)(start - arena);
		label_len[i] = (size_t)(a - start);
	}
	char *p = out;
	for (int k = 0; k < nfams; k++) {
		const struct fam *fm = &fams[k];
		memcpy(p, fm->header, fm->header_len);
		p += fm->header_len;
		for (size_t i = 0; i < nflows; i++) {
			memcpy(p, fm->name, fm->name_len);
			p += fm->name_len;
			memcpy(p, arena + label_off[i], label_len[i]);
			p += label_len[i];
			memcpy(p, fm->suffix, fm->suffix_len);
			p += fm->suffix_len;
			*p++ = ' ';
			p = fm->is_double ? put_double(p, fm->d[i]) : put_u64(p, fm->u[i]);
			*p++ = '\n';
		}
	}
	return (size_t)(p - out);
}

/* ---- snprintf for every piece ---- */

static int snprintf_double(char *out, size_t room, double v)
{
	if (!isfinite(v))
		return snprintf(out, room, "%s", isnan(v) ? "NaN" : v < 0 ? "-Inf" : "+Inf");
	double m = fabs(v);
	if (m < 0x1p63 && trunc(v) == v)
		return snprintf(out, room, "%" PRId64, (int64_t)v);
	if (m < 0x1p53 / 1e9 && round(m * 1e9) / 1e9 == m) {
		int n = snprintf(out, room, "%.9f", v);
		while (out[n - 1] == '0')
			n--;
		out[n] = 0;
		return n;
	}
	return shortest_g(out, room, v);
}

static size_t format_snprintf(char *out, size_t room)
{
	char *a = arena;
	for (size_t i = 0; i < nflows; i++) {
		const struct flow *f = &flows[i];
		char s[INET6_ADDRSTRLEN], d[INET6_ADDRSTRLEN];
		inet_ntop(f->family, f->src, s, sizeof s);
		inet_ntop(f->family, f->dst, d, sizeof d);
		int n = sprintf(a, "{src=\"%s\",sport=\"%u\",dst=\"%s\",dport=\"%u", s, f->sport, d,
				f->dport);
		label_off[i] = (size_t)(a - arena);
		label_len[i] = (size_t)n;
		a += n;
	}
	char *p = out, *end = out + room;
	for (int k = 0; k < nfams; k++) {
		const struct fam *fm = &fams[k];
		p += snprintf(p, (size_t)(end - p), "%s", fm->header);
		for (size_t i = 0; i < nflows; i++) {
			char value[48];
			if (fm->is_double)
				snprintf_double(value, sizeof value, fm->d[i]);
			else
				snprintf(value, sizeof value, "%" PRIu64, fm->u[i]);
			p += snprintf(p, (size_t)(end - p), "%s%.*s%s %s\n", fm->name, (int)label_len[i],
				      arena + label_off[i], fm->suffix, value);
		}
	}
	return (size_t)(p - out);
}

/* ---- sorting flows by label tuple (the agent's output order) ---- */

static int compare_flows(const void *x, const void *y)
{
	const struct flow *a = &flows[*(const uint32_t *)x], *b = &flows[*(const uint32_t *)y];
	/* IPv4 as ::ffff:a.b.c.d, as the agent orders them. */
	unsigned char as[16], bs[16], ad[16], bd[16];
	const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
#define WIDE(dst, f, addr)                              \
	do {                                            \
		if ((f)->family == AF_INET) {           \
			memcpy(dst, mapped, 12);        \
			memcpy(dst + 12, (f)->addr, 4); \
		} else {                                \
			memcpy(dst, (f)->addr, 16);     \
		}                                       \
	} while (0)
	WIDE(as, a, src);
	WIDE(bs, b, src);
	int c = memcmp(as, bs, 16);
	if (c)
		return c;
	if (a->sport != b->sport)
		return a->sport < b->sport ? -1 : 1;
	WIDE(ad, a, dst);
	WIDE(bd, b, dst);
	c = memcmp(ad, bd, 16);
	if (c)
		return c;
	return a->dport < b->dport ? -1 : a->dport > b->dport;
}

/* ---- reading the agent's exposition ---- */

static bool parse_address(const char *text, size_t len, int *family, unsigned char *out)
{
	char buf[INET6_ADDRSTRLEN + 1];
	if (len >= sizeof buf)
		return false;
	memcpy(buf, text, len);
	buf[len] = 0;
	if (inet_pton(AF_INET, buf, out) == 1) {
		*family = AF_INET;
		return true;
	}
	if (inet_pton(AF_INET6, buf, out) == 1) {
		*family = AF_INET6;
		return true;
	}
	return false;
}

/* Reads `key="value"` at *p; returns the value's start and length. */
static const char *label(const char **p, const char *key, size_t *len)
{
	size_t k = strlen(key);
	if (strncmp(*p, key, k) != 0 || (*p)[k] != '=' || (*p)[k + 1] != '"')
		die("unexpected label set (the floor knows src, sport, dst, dport and one more)", *p);
	const char *v = *p + k + 2, *q = strchr(v, '"');
	if (!q)
		die("unterminated label value", v);
	*len = (size_t)(q - v);
	*p = q + 1;
	if (**p == ',')
		(*p)++;
	return v;
}

static char *expected; /* the agent's text for the per-flow families */
static size_t expected_len;

static void append_expected(const char *s, size_t n)
{
	memcpy(expected + expected_len, s, n);
	expected_len += n;
}

/* Whether the family `name` (its HELP line at `line`) has per-flow series: its first sample
 * is `name{src="`. The closed-flow histograms share the tcp_flow_ prefix and are not. */
static bool per_flow_family(const char *line, const char *name, size_t name_len)
{
	for (const char *l = line; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
		if (*l == '#')
			continue;
		return strncmp(l, name, name_len) == 0 && strncmp(l + name_len, "{src=\"", 6) == 0;
	}
	return false;
}

static void read_exposition(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		die("cannot open", path);
	fseek(f, 0, SEEK_END);
	long size = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *text = malloc((size_t)size + 1);
	if (fread(text, 1, (size_t)size, f) != (size_t)size)
		die("cannot read", path);
	text[size] = 0;
	fclose(f);
	expected = malloc((size_t)size + 1);

	struct fam *cur = NULL;
	size_t row = 0;
	char *line = text;
	while (*line) {
		char *eol = strchr(line, '\n');
		if (!eol)
			eol = line + strlen(line);
		size_t len = (size_t)(eol - line);
		if (strncmp(line, "# HELP ", 7) == 0) {
			if (cur && row != nflows)
				die("a family has fewer series than the first", cur->name);
			cur = NULL;
			const char *n = line + 7, *ne = n;
			while (*ne != ' ' && *ne != '\n' && *ne)
				ne++;
			if (strncmp(n, "tcp_flow_", 9) == 0 && per_flow_family(line, n, (size_t)(ne - n))) {
				if (nfams == MAX_FAMILIES)
					die("too many families", NULL);
				cur = &fams[nfams++];
				memset(cur, 0, sizeof *cur);
				cur->name = strndup(n, (size_t)(ne - n));
				cur->name_len = (size_t)(ne - n);
				/* The agent keeps seconds and rates as doubles, counts as integers. */
				cur->is_double = strstr(cur->name, "seconds") || strstr(cur->name, "rate");
				cur->header = calloc(1, 4096);
				row = 0;
			}
		}
		if (cur && line[0] == '#') {
			if (cur->header_len + len + 2 > 4096)
				die("header too long", cur->name);
			memcpy(cur->header + cur->header_len, line, len + 1);
			cur->header_len += len + 1;
			append_expected(line, len + 1);
		} else if (cur) {
			if (strncmp(line, cur->name, cur->name_len) != 0 || line[cur->name_len] != '{')
				die("unexpected series in a per-flow family", line);
			const char *p = line + cur->name_len + 1;
			const char *labels_start = line + cur->name_len;
			size_t sl, spl, dl, dpl;
			const char *s = label(&p, "src", &sl), *sp = label(&p, "sport", &spl);
			const char *d = label(&p, "dst", &dl), *dp = label(&p, "dport", &dpl);
			/* Past dport: `}`, or the one label that tells a family's series apart. */
			const char *close = strstr(p, "} ");
			if (!close || close > eol || (close != p && memchr(p, '{', (size_t)(close - p))))
				die("unexpected label set (the floor knows src, sport, dst, dport and one "
				    "more)",
				    labels_start);
			char suffix[64];
			int suffix_len =
				close == p ? snprintf(suffix, sizeof suffix, "\"}")
					   : snprintf(suffix, sizeof suffix, "\",%.*s}", (int)(close - p), p);
			if (suffix_len < 0 || (size_t)suffix_len >= sizeof suffix)
				die("extra label too long", labels_start);
			if (row > 0 && (cur->suffix_len != (size_t)suffix_len ||
					memcmp(cur->suffix, suffix, (size_t)suffix_len))) {
				/* The family's next run of series: one more run of every flow. */
				if (row != nflows)
					die("a family's runs of series differ in length", cur->name);
				if (nfams == MAX_FAMILIES)
					die("too many families", NULL);
				struct fam *next = &fams[nfams++];
				memset(next, 0, sizeof *next);
				next->name = cur->name;
				next->name_len = cur->name_len;
				next->is_double = cur->is_double;
				next->header = calloc(1, 1);
				cur = next;
				row = 0;
			}
			if (row == 0) {
				memcpy(cur->suffix, suffix, (size_t)suffix_len);
				cur->suffix_len = (size_t)suffix_len;
			}
			const char *value = close + 2;
			if (cur == &fams[0]) {
				if (nflows == flow_cap) {
					flow_cap = flow_cap ? 2 * flow_cap : 1024;
					flows = realloc(flows, flow_cap * sizeof *flows);
					cur->d = realloc(cur->d, flow_cap * sizeof(double));
					cur->u = realloc(cur->u, flow_cap * sizeof(uint64_t));
				}
				struct flow *fl = &flows[nflows++];
				memset(fl, 0, sizeof *fl);
				int fs, fd;
				if (!parse_address(s, sl, &fs, fl->src) ||
				    !parse_address(d, dl, &fd, fl->dst) || fs != fd)
					die("bad address", labels_start);
				fl->family = fs;
				fl->sport = (uint16_t)strtoul(sp, NULL, 10);
				fl->dport = (uint16_t)strtoul(dp, NULL, 10);
			} else {
				if (row >= nflows)
					die("a family has more series than the first", cur->name);
				if (!cur->d) {
					cur->d = calloc(nflows, sizeof(double));
					cur->u = calloc(nflows, sizeof(uint64_t));
				}
			}
			if (cur->is_double)
				cur->d[row] = strtod(value, NULL);
			else
				cur->u[row] = strtoull(value, NULL, 10);
			row++;
			append_expected(line, len + 1);
		}
		line = *eol ? eol + 1 : eol;
	}
	if (cur && row != nflows)
		die("a family has fewer series than the first", cur->name);
	if (!nflows)
		die("no per-flow series (tcp_flow_*) in", path);
	free(text);
}

int main(int argc, char **argv)
{
	if (argc != 3)
		die("usage: bench_encode_floor EXPOSITION_FILE ITERATIONS", NULL);
	read_exposition(argv[1]);
	int iterations = atoi(argv[2]);
	if (iterations < 1)
		iterations = 1;

	size_t room = expected_len + 4096;
	char *out = malloc(room);
	arena = malloc(nflows * 160);
	label_off = malloc(nflows * sizeof *label_off);
	label_len = malloc(nflows * sizeof *label_len);
	/* Touch every page once, as the agent's reused buffers are. */
	memset(out, 0, room);
	memset(arena, 0, nflows * 160);

	size_t n_tight = format_tight(out);
	bool match_tight = n_tight == expected_len && memcmp(out, expected, expected_len) == 0;
	if (!match_tight) {
		size_t i = 0;
		while (i < n_tight && i < expected_len && out[i] == expected[i])
			i++;
		size_t from = i > 60 ? i - 60 : 0;
		fprintf(stderr,
			"bench_encode_floor: tight output differs at byte %zu: agent \"%.100s\" floor "
			"\"%.100s\"\n",
			i, expected + from, out + from);
	}
	size_t n_snp = format_snprintf(out, room);
	bool match_snprintf = n_snp == expected_len && memcmp(out, expected, expected_len) == 0;

	uint64_t *tight = calloc((size_t)iterations, 8), *snp = calloc((size_t)iterations, 8),
		 *sorts = calloc((size_t)iterations, 8);
	uint32_t *order = malloc(nflows * sizeof *order);
	for (int it = 0; it < iterations; it++) {
		/* Alternate which formatter goes first. */
		for (int side = 0; side < 2; side++) {
			bool do_tight = (side == 0) == (it % 2 == 0);
			uint64_t t0 = now_ns();
			if (do_tight)
				format_tight(out);
			else
				format_snprintf(out, room);
			uint64_t t1 = now_ns();
			(do_tight ? tight : snp)[it] = t1 - t0;
		}
		/* A fixed pseudo-random order in, the label-tuple order out. */
		uint32_t x = 2463534242u;
		for (size_t i = 0; i < nflows; i++)
			order[i] = (uint32_t)i;
		for (size_t i = nflows - 1; i > 0; i--) {
			x ^= x << 13, x ^= x >> 17, x ^= x << 5;
			size_t j = x % (i + 1);
			uint32_t t = order[i];
			order[i] = order[j];
			order[j] = t;
		}
		uint64_t t0 = now_ns();
		qsort(order, nflows, sizeof *order, compare_flows);
		sorts[it] = now_ns() - t0;
	}
	size_t series = nflows * (size_t)nfams;
	printf("{\"flows\": %zu, \"families\": %d, \"series\": %zu, \"bytes\": %zu, \"match_tight\": %s, "
	       "\"match_snprintf\": %s, \"tight_ns\": [",
	       nflows, nfams, series, expected_len, match_tight ? "true" : "false",
	       match_snprintf ? "true" : "false");
	for (int i = 0; i < iterations; i++)
		printf("%s%" PRIu64, i ? ", " : "", tight[i]);
	printf("], \"snprintf_ns\": [");
	for (int i = 0; i < iterations; i++)
		printf("%s%" PRIu64, i ? ", " : "", snp[i]);
	printf("], \"sort_ns\": [");
	for (int i = 0; i < iterations; i++)
		printf("%s%" PRIu64, i ? ", " : "", sorts[i]);
	printf("]}\n");
	return match_tight ? 0 : 3;
}
