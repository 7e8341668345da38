// SPDX-License-Identifier: Apache-2.0
/*
 * cflowstat.c: everything flowstat does through libbpf. See cflowstat.h.
 *
 * The BPF object is compiled by the Makefile and embedded in this file through
 * the skeleton bpftool generates (generated/flowstat.skel.h), so the flowstat
 * binary carries its kernel program and needs no file beside it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>

#include "cflowstat.h"
#include "generated/flowstat.skel.h"

#define FS_HOOK_SLOTS 14

struct fs_agent {
	struct flowstat_bpf *skel;
	uint32_t attached;
	enum fs_mode mode;    /* see fs_agent_mode */
	bool mounted_tracefs; /* a classic tracepoint needed it */
	int hook_errors[FS_HOOK_SLOTS];
	char cgroup_path[PATH_MAX];
	int cgroup_fd;
	int possible_cpus;
	uint64_t *percpu_buffer;		    /* one counter per CPU */
	struct fs_rtt_histogram *histogram_buffer;  /* one histogram per CPU */
	struct fs_closed_histograms *closed_buffer; /* one per CPU */
	struct ring_buffer *closed_ring;	    /* consumer of "closed_flows" */
	struct fs_closed_flow *read_target;	    /* fs_agent_read_closed's caller buffer */
	uint32_t read_capacity, read_count;
	uint32_t capacity;	      /* the flow map's entries, or the flows a live snapshot hands over */
	unsigned char *record_buffer; /* iter/tcp snapshot reads, FS_RECORD_BUFFER_BYTES */
};

/*
 * One read() of an iter/tcp snapshot: at least the 32 KiB the kernel fills per read
 * (bpf_seq_read's buffer), so reads end on whole records; a cut one is carried anyway.
 */
#define FS_RECORD_BUFFER_BYTES (64 * 1024)

/* ---- libbpf's messages: forwarded to Swift, last lines kept for error reports ---- */

static fs_log_fn log_handler;
static char log_tail[2048];

void fs_set_log_handler(fs_log_fn handler)
{
	log_handler = handler;
}

static void log_tail_reset(void)
{
	log_tail[0] = '\0';
}

/* Keeps the newest text: the verifier's verdict is at the end of its log. */
static void log_tail_append(const char *text)
{
	size_t have = strlen(log_tail), add = strlen(text), room = sizeof(log_tail) - 1;

	if (add >= room) {
		memcpy(log_tail, text + add - room, room);
		log_tail[room] = '\0';
		return;
	}
	if (have + add > room) {
		size_t drop = have + add - room;

		memmove(log_tail, log_tail + drop, have - drop + 1);
		have -= drop;
	}
	memcpy(log_tail + have, text, add + 1);
}

static int on_libbpf_print(enum libbpf_print_level level, const char *format, va_list args)
{
	char line[16384];
	int fs_level = level == LIBBPF_WARN ? 0 : level == LIBBPF_INFO ? 1 : 2;

	vsnprintf(line, sizeof(line), format, args);
	if (level != LIBBPF_DEBUG)
		log_tail_append(line);
	/* One call per line: a verifier log arrives as one message of many lines. */
	for (char *start = line, *end; log_handler && *start; start = end + 1) {
		end = start + strcspn(start, "\n");
		if (*end == '\0') {
			log_handler(fs_level, start);
			break;
		}
		*end = '\0';
		log_handler(fs_level, start);
	}
	return 0;
}

static int fail(fs_error *error, int code, const char *step_format, ...)
{
	va_list args;
	const char *tail = log_tail;
	size_t tail_length = strlen(log_tail);

	if (code > 0)
		code = -code;
	if (!error)
		return code;
	error->code = code;
	va_start(args, step_format);
	vsnprintf(error->step, sizeof(error->step), step_format, args);
	va_end(args);
	/* The last few lines are the useful part of a long verifier log. */
	if (tail_length > 300)
		tail += tail_length - 300;
	snprintf(error->message, sizeof(error->message), "%s%s%s", strerror(-code),
		 tail_length ? "; libbpf: " : "", tail);
	return code;
}

/* ---- hooks ---- */

static int hook_slot(uint32_t hook)
{
	return __builtin_ctz(hook);
}

static struct bpf_program *program_of(struct flowstat_bpf *skel, uint32_t hook)
{
	switch (hook) {
	case FS_HOOK_SOCKOPS: return skel->progs.flowstat_sockops;
	case FS_HOOK_RCV_FENTRY: return skel->progs.flowstat_rcv_fentry;
	case FS_HOOK_RCV_TP_BTF: return skel->progs.flowstat_rcv_tp_btf;
	case FS_HOOK_RCV_TRACEPOINT: return skel->progs.flowstat_rcv_tracepoint;
	case FS_HOOK_STATE_TRACEPOINT: return skel->progs.flowstat_state_tracepoint;
	case FS_HOOK_STATE_TP_BTF: return skel->progs.flowstat_state_tp_btf;
	case FS_HOOK_ITER_TCP: return skel->progs.flowstat_iter_tcp;
	case FS_HOOK_ITER_OWNED: return skel->progs.flowstat_iter_owned;
	case FS_HOOK_ITER_SNAPSHOT: return skel->progs.flowstat_iter_snapshot;
	case FS_HOOK_RCV_RAW_TP: return skel->progs.flowstat_rcv_raw_tp;
	case FS_HOOK_STATE_RAW_TP: return skel->progs.flowstat_state_raw_tp;
	case FS_HOOK_ITER_TCP_SNAPSHOT: return skel->progs.flowstat_iter_tcp_snapshot;
	case FS_HOOK_RETRANS_TP_BTF: return skel->progs.flowstat_retrans_tp_btf;
	case FS_HOOK_RETRANS_RAW_TP: return skel->progs.flowstat_retrans_raw_tp;
	}
	return NULL;
}

static struct bpf_link **link_of(struct flowstat_bpf *skel, uint32_t hook)
{
	switch (hook) {
	case FS_HOOK_SOCKOPS: return &skel->links.flowstat_sockops;
	case FS_HOOK_RCV_FENTRY: return &skel->links.flowstat_rcv_fentry;
	case FS_HOOK_RCV_TP_BTF: return &skel->links.flowstat_rcv_tp_btf;
	case FS_HOOK_RCV_TRACEPOINT: return &skel->links.flowstat_rcv_tracepoint;
	case FS_HOOK_STATE_TRACEPOINT: return &skel->links.flowstat_state_tracepoint;
	case FS_HOOK_STATE_TP_BTF: return &skel->links.flowstat_state_tp_btf;
	case FS_HOOK_ITER_TCP: return &skel->links.flowstat_iter_tcp;
	case FS_HOOK_ITER_OWNED: return &skel->links.flowstat_iter_owned;
	case FS_HOOK_ITER_SNAPSHOT: return &skel->links.flowstat_iter_snapshot;
	case FS_HOOK_RCV_RAW_TP: return &skel->links.flowstat_rcv_raw_tp;
	case FS_HOOK_STATE_RAW_TP: return &skel->links.flowstat_state_raw_tp;
	case FS_HOOK_ITER_TCP_SNAPSHOT: return &skel->links.flowstat_iter_tcp_snapshot;
	case FS_HOOK_RETRANS_TP_BTF: return &skel->links.flowstat_retrans_tp_btf;
	case FS_HOOK_RETRANS_RAW_TP: return &skel->links.flowstat_retrans_raw_tp;
	}
	return NULL;
}

/*
 * Typed variants first (direct reads, socket storage), then raw_tp (probe reads, no
 * tracefs), then the classic tracepoint (probe reads, needs tracefs mounted).
 */
static const uint32_t rcv_preference[] = {
	FS_HOOK_RCV_FENTRY,
	FS_HOOK_RCV_TP_BTF,
	FS_HOOK_RCV_RAW_TP,
	FS_HOOK_RCV_TRACEPOINT,
};

static const uint32_t state_preference[] = {
	FS_HOOK_STATE_TP_BTF,
	FS_HOOK_STATE_RAW_TP,
	FS_HOOK_STATE_TRACEPOINT,
};

/* Host-wide retransmit counts: optional, the agent runs without them (and says so). */
static const uint32_t retransmit_preference[] = {
	FS_HOOK_RETRANS_TP_BTF,
	FS_HOOK_RETRANS_RAW_TP,
};

/*
 * Whether tcp_retransmit_skb has the attempt's error as a third argument (recent kernels, 6.18
 * among them, where it also fires for failed attempts): its btf_trace_ typedef is a pointer to a prototype
 * of (void *, sk, skb[, err]). Without kernel BTF: the older two-argument form.
 */
static bool retransmit_tracepoint_reports_errors(void)
{
	struct btf *vmlinux = btf__load_vmlinux_btf();
	const struct btf_type *type;
	bool reports = false;
	int id;

	if (!vmlinux)
		return false;
	id = btf__find_by_name_kind(vmlinux, "btf_trace_tcp_retransmit_skb", BTF_KIND_TYPEDEF);
	type = id > 0 ? btf__type_by_id(vmlinux, id) : NULL;
	type = type ? btf__type_by_id(vmlinux, type->type) : NULL; /* the pointer */
	type = type && btf_is_ptr(type) ? btf__type_by_id(vmlinux, type->type) : NULL;
	if (type && btf_is_func_proto(type))
		reports = btf_vlen(type) >= 4;
	btf__free(vmlinux);
	return reports;
}

/* Variants that read the socket through probes: no typed socket, so no socket storage. */
static bool is_untyped(uint32_t hook)
{
	return hook & (FS_HOOK_RCV_RAW_TP | FS_HOOK_RCV_TRACEPOINT | FS_HOOK_STATE_RAW_TP |
		       FS_HOOK_STATE_TRACEPOINT);
}

/*
 * libbpf finds a classic tracepoint's id in tracefs, which many hosts do not mount (raw_tp
 * and tp_btf need it not): mount it where the kernel's default mount point is empty.
 */
static int ensure_tracefs(fs_agent *agent)
{
	if (access("/sys/kernel/tracing/events", F_OK) == 0 ||
	    access("/sys/kernel/debug/tracing/events", F_OK) == 0)
		return 0;
	if (mount("tracefs", "/sys/kernel/tracing", "tracefs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL))
		return -errno;
	agent->mounted_tracefs = true;
	return 0;
}

/*
 * Keeps autoload on for the most preferred variant of a group that is wanted and not
 * yet refused, off for the others. Returns the chosen hook, or 0.
 */
static uint32_t choose_variant(fs_agent *agent, const uint32_t *preference, size_t count, uint32_t wanted)
{
	uint32_t chosen = 0;

	for (size_t i = 0; i < count; i++) {
		uint32_t hook = preference[i];

		if (!chosen && (wanted & hook) && agent->hook_errors[hook_slot(hook)] == 0)
			chosen = hook;
		else
			bpf_program__set_autoload(program_of(agent->skel, hook), false);
	}
	return chosen;
}

/* Attaches an optional hook; a failure is recorded for the next pass to drop it. */
static int attach_optional(fs_agent *agent, uint32_t hook)
{
	struct bpf_link **link = link_of(agent->skel, hook);
	int err;

	if ((hook & (FS_HOOK_RCV_TRACEPOINT | FS_HOOK_STATE_TRACEPOINT)) && (err = ensure_tracefs(agent))) {
		agent->hook_errors[hook_slot(hook)] = err;
		return -EAGAIN;
	}
	*link = bpf_program__attach(program_of(agent->skel, hook));
	if (!*link) {
		agent->hook_errors[hook_slot(hook)] = -errno;
		return -EAGAIN;
	}
	agent->attached |= hook;
	return 0;
}

/*
 * The coarse clocks advance once per jiffy and report that tick (TICK_NSEC, HZ rounded) as
 * their resolution: HZ without a kernel config file, which libbpf's CONFIG_HZ extern needs
 * and Debian's kernels do not expose at /proc/config.gz (the load would fail without it).
 */
uint32_t fs_usec_per_jiffy(void)
{
	struct timespec resolution;
	uint64_t tick_ns, hz;

	if (clock_getres(CLOCK_MONOTONIC_COARSE, &resolution) != 0 || resolution.tv_sec != 0 ||
	    resolution.tv_nsec <= 0)
		return 0;
	tick_ns = (uint64_t)resolution.tv_nsec;
	hz = (1000000000u + tick_ns / 2) / tick_ns;
	/* Linux's HZ choices lie in 24..1200 on every architecture; anything else is not a tick. */
	if (hz < 24 || hz > 1200)
		return 0;
	return (uint32_t)(1000000u / hz); /* USEC_PER_SEC / HZ, as tcp_get_info_chrono_stats() */
}

/* Copies bounds into a rodata array, checking they fit. */
static int set_bounds(__u64 *target, __u32 *target_count, const uint64_t *bounds, uint32_t count,
		      const char *what, fs_error *error)
{
	if (count > FS_HIST_BOUNDS_MAX)
		return fail(error, EINVAL, "configure %s histogram: %u bounds, at most %d", what, count,
			    FS_HIST_BOUNDS_MAX);
	*target_count = count;
	for (uint32_t i = 0; i < count; i++)
		target[i] = bounds[i];
	return 0;
}

/* Which hook's program libbpf reported as failing to load, or 0. */
static uint32_t hook_failed_to_load(struct flowstat_bpf *skel)
{
	const char *marker = strstr(log_tail, "': failed to load");
	const char *start;

	if (!marker)
		return 0;
	for (start = marker; start > log_tail && start[-1] != '\''; start--)
		;
	for (uint32_t hook = 1; hook < (1u << FS_HOOK_SLOTS); hook <<= 1) {
		struct bpf_program *program = program_of(skel, hook);
		const char *name = program ? bpf_program__name(program) : NULL;

		if (name && strlen(name) == (size_t)(marker - start) &&
		    strncmp(name, start, marker - start) == 0)
			return hook;
	}
	return 0;
}

int fs_find_cgroup2_mount(char *buffer, size_t length)
{
	char device[256], path[PATH_MAX], type[64];
	FILE *mounts = fopen("/proc/mounts", "re");
	int result = -ENOENT;

	if (!mounts)
		return -errno;
	while (fscanf(mounts, "%255s %4095s %63s %*[^\n]\n", device, path, type) == 3) {
		if (strcmp(type, "cgroup2") == 0) {
			snprintf(buffer, length, "%s", path);
			result = 0;
			break;
		}
	}
	fclose(mounts);
	return result;
}

static bool in_tail(const struct fs_record_reader *reader, const struct fs_flow_key *key)
{
	for (uint32_t i = 0; i < reader->tail_count; i++)
		if (!memcmp(&reader->tail[i], key, sizeof(*key)))
			return true;
	return false;
}

/* Hands one read's whole records to the sink, less repeats of the previous read's last ones. */
static void deliver_records(struct fs_record_reader *reader, const struct fs_flow_record *records,
			    uint32_t count)
{
	uint32_t skip = 0, room, kept, i;

	while (skip < count && skip < reader->tail_count && in_tail(reader, &records[skip].key))
		skip++;
	kept = count > FS_TAIL_KEYS ? FS_TAIL_KEYS : count;
	for (i = 0; i < kept; i++)
		reader->tail[i] = records[count - kept + i].key;
	reader->tail_count = kept;
	records += skip;
	count -= skip;
	room = reader->capacity - reader->delivered;
	if (count > room) {
		reader->missed += count - room;
		count = room;
	}
	if (count) {
		reader->sink(reader->context, records, count);
		reader->delivered += count;
	}
}

int fs_read_records(int fd, unsigned char *buffer, size_t buffer_bytes, struct fs_record_reader *reader)
{
	size_t held = 0, whole;
	ssize_t got;

	if (buffer_bytes < sizeof(struct fs_flow_record))
		return -EINVAL;
	reader->tail_count = 0;
	while ((got = read(fd, buffer + held, buffer_bytes - held)) > 0) {
		held += (size_t)got;
		whole = held / sizeof(struct fs_flow_record);
		deliver_records(reader, (const struct fs_flow_record *)buffer, (uint32_t)whole);
		held -= whole * sizeof(struct fs_flow_record);
		memmove(buffer, buffer + whole * sizeof(struct fs_flow_record), held);
	}
	return got < 0 ? -errno : 0;
}

/*
 * Runs an iterator once: reading it runs the program on every object (for iter/tcp, every
 * TCP socket of the caller's network namespace). With a reader, what the program writes
 * are fs_flow_records, handed over as they arrive; without, its output is discarded.
 */
static int run_iterator(struct bpf_link *link, unsigned char *buffer, struct fs_record_reader *reader)
{
	char discard[4096];
	ssize_t got = 0;
	int err, fd = bpf_iter_create(bpf_link__fd(link));

	if (fd < 0)
		return -errno;
	if (reader) {
		err = fs_read_records(fd, buffer, FS_RECORD_BUFFER_BYTES, reader);
	} else {
		while ((got = read(fd, discard, sizeof(discard))) > 0)
			;
		err = got < 0 ? -errno : 0;
	}
	close(fd);
	return err;
}

/*
 * Runs an iter/tcp link in a network namespace (netns_fd), or in ours (-1): the iterator
 * walks the namespace of the thread that creates it, so the thread visits and returns.
 */
static int run_iterator_in(struct bpf_link *link, int netns_fd, unsigned char *buffer,
			   struct fs_record_reader *reader, fs_error *error, const char *what)
{
	int home = -1, err;

	if (netns_fd >= 0) {
		home = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
		if (home < 0)
			return fail(error, errno, "open own network namespace");
		if (setns(netns_fd, CLONE_NEWNET)) {
			err = errno;
			close(home);
			return fail(error, err, "enter network namespace (needs CAP_SYS_ADMIN)");
		}
	}
	err = run_iterator(link, buffer, reader);
	if (home >= 0) {
		if (setns(home, CLONE_NEWNET))
			abort(); /* this thread would serve from a foreign namespace */
		close(home);
	}
	return err ? fail(error, err, "%s", what) : 0;
}

/* Attaches an iterator over the "owners" socket storage, if it loaded; failures are recorded. */
static void attach_storage_iterator(fs_agent *agent, uint32_t hook)
{
	DECLARE_LIBBPF_OPTS(bpf_iter_attach_opts, opts);
	union bpf_iter_link_info info = {};
	struct bpf_program *program = program_of(agent->skel, hook);
	struct bpf_link **link = link_of(agent->skel, hook);

	if (!bpf_program__autoload(program))
		return;
	info.map.map_fd = bpf_map__fd(agent->skel->maps.owners);
	opts.link_info = &info;
	opts.link_info_len = sizeof(info);
	*link = bpf_program__attach_iter(program, &opts);
	if (*link)
		agent->attached |= hook;
	else
		agent->hook_errors[hook_slot(hook)] = -errno;
}

/*
 * The best snapshot mode this pass may try: the storage-map iterator reads every tracked
 * socket of every namespace in one run, but visits only sockets with storage, which
 * untyped receive hooks cannot give; iter/tcp runs once per namespace and gives storage
 * itself. Event mode where neither is allowed (or live snapshots are off).
 */
static int choose_mode(const fs_agent *agent, const fs_options *options, uint32_t rcv)
{
	uint32_t allowed = options->modes ? options->modes : ~0u;
	bool live = options->use_iterator && options->live_snapshot;

	if (live && (allowed & FS_MODE_BIT(FS_MODE_LIVE_STORAGE_ITER)) && !is_untyped(rcv) &&
	    !agent->hook_errors[hook_slot(FS_HOOK_ITER_SNAPSHOT)])
		return FS_MODE_LIVE_STORAGE_ITER;
	if (live && (allowed & FS_MODE_BIT(FS_MODE_LIVE_TCP_ITER)) &&
	    !agent->hook_errors[hook_slot(FS_HOOK_ITER_TCP_SNAPSHOT)])
		return FS_MODE_LIVE_TCP_ITER;
	if (allowed & FS_MODE_BIT(FS_MODE_EVENT))
		return FS_MODE_EVENT;
	return -1;
}

/* Before attaching: the peer groups' networks. */
static int fill_rtt_breakdown_maps(fs_agent *agent, const fs_options *options, fs_error *error)
{
	int err;

	for (uint32_t i = 0; options->peer_group_count && i < options->peer_network_count; i++) {
		const fs_peer_group_network *entry = &options->peer_networks[i];
		uint8_t group = (uint8_t)(entry->group + 1);

		if (entry->group >= options->peer_group_count || entry->network.prefix_len > 128)
			return fail(error, EINVAL, "configure RTT peer group network %u", i);
		err = bpf_map_update_elem(bpf_map__fd(agent->skel->maps.peer_networks), &entry->network,
					  &group, BPF_ANY);
		if (err)
			return fail(error, err, "add RTT peer group network %u", i);
	}
	return 0;
}

/*
 * One open → configure → load → attach pass. Returns 0 when the agent is up,
 * -EAGAIN when an optional variant failed (recorded in hook_errors) and another
 * pass should try without it, or another negative errno on a fatal failure.
 */
static int try_start(fs_agent *agent, const fs_options *options, uint32_t want_rcv, fs_error *error)
{
	struct flowstat_bpf *skel;
	uint32_t rcv, state, retransmit, hook, capacity;
	bool live;
	int err;

	log_tail_reset();
	skel = flowstat_bpf__open();
	if (!skel)
		return fail(error, errno ? errno : ENOMEM, "open embedded BPF object");
	agent->skel = skel;

	skel->rodata->min_update_interval_ns = options->min_update_interval_ns;
	if ((err = set_bounds(skel->rodata->rtt_bounds_ns, &skel->rodata->rtt_bound_count,
			      options->rtt_bounds_ns, options->rtt_bound_count, "RTT", error)) ||
	    (err = set_bounds(skel->rodata->duration_bounds_ns, &skel->rodata->duration_bound_count,
			      options->duration_bounds_ns, options->duration_bound_count, "flow duration",
			      error)) ||
	    (err = set_bounds(skel->rodata->bytes_bounds, &skel->rodata->bytes_bound_count,
			      options->bytes_bounds, options->bytes_bound_count, "flow bytes", error)))
		return err;
	skel->rodata->rtt_sample_every = options->rtt_sample_every ? options->rtt_sample_every : 1;
	skel->rodata->usec_per_jiffy = fs_usec_per_jiffy();
	if (options->peer_group_count > FS_PEER_GROUPS_MAX)
		return fail(error, EINVAL, "configure RTT peer groups: %u groups, at most %d",
			    options->peer_group_count, FS_PEER_GROUPS_MAX);
	skel->rodata->service_port_limit = options->service_port_limit;
	skel->rodata->peer_group_count = options->peer_network_count ? options->peer_group_count : 0;
	if ((err = bpf_map__set_max_entries(skel->maps.service_rtt_hist, options->service_port_limit + 1)) ||
	    (err = bpf_map__set_max_entries(skel->maps.service_slots,
					    options->service_port_limit ? options->service_port_limit : 1)) ||
	    (err = bpf_map__set_max_entries(skel->maps.peer_networks,
					    options->peer_network_count ? options->peer_network_count : 1)))
		return fail(error, err, "size the per-service and peer-group RTT maps");
	if (options->ring_buffer_bytes) {
		err = bpf_map__set_max_entries(skel->maps.closed_flows, options->ring_buffer_bytes);
		if (err)
			return fail(error, err,
				    "set closed-flow ring buffer to %u bytes (a power of 2 pages)",
				    options->ring_buffer_bytes);
	}

	rcv = choose_variant(agent, rcv_preference, sizeof(rcv_preference) / sizeof(rcv_preference[0]),
			     want_rcv);
	state = choose_variant(agent, state_preference,
			       sizeof(state_preference) / sizeof(state_preference[0]),
			       FS_HOOK_STATE_TP_BTF | FS_HOOK_STATE_RAW_TP | FS_HOOK_STATE_TRACEPOINT);
	retransmit = choose_variant(agent, retransmit_preference,
				    sizeof(retransmit_preference) / sizeof(retransmit_preference[0]),
				    FS_HOOK_RETRANS_TP_BTF | FS_HOOK_RETRANS_RAW_TP);
	skel->rodata->retransmit_reports_errors = retransmit && retransmit_tracepoint_reports_errors();
	if (!state)
		return fail(error, agent->hook_errors[hook_slot(FS_HOOK_STATE_TRACEPOINT)],
			    "attach sock/inet_sock_set_state (tp_btf, raw_tp and tracepoint all failed)");
	if (!options->use_iterator || agent->hook_errors[hook_slot(FS_HOOK_ITER_TCP)])
		bpf_program__set_autoload(skel->progs.flowstat_iter_tcp, false);
	if ((err = choose_mode(agent, options, rcv)) < 0) {
		hook = agent->hook_errors[hook_slot(FS_HOOK_ITER_SNAPSHOT)] ? FS_HOOK_ITER_SNAPSHOT
									    : FS_HOOK_ITER_TCP_SNAPSHOT;
		/* The step is matched in BPFError; the errno is the last refused iterator's. */
		err = fail(error,
			   agent->hook_errors[hook_slot(hook)] ? agent->hook_errors[hook_slot(hook)]
							       : EOPNOTSUPP,
			   "start a snapshot mode the options allow");
		if (error)
			snprintf(error->message, sizeof(error->message), "the kernel refused %s: %s%s",
				 bpf_program__name(program_of(skel, hook)), strerror(-err),
				 is_untyped(rcv) ? " (or the receive hook has no typed socket)" : "");
		return err;
	}
	agent->mode = err;
	live = agent->mode != FS_MODE_EVENT;
	skel->rodata->live_mode = live;
	skel->rodata->note_namespaces = agent->mode == FS_MODE_LIVE_TCP_ITER;
	if (agent->mode != FS_MODE_LIVE_STORAGE_ITER)
		bpf_program__set_autoload(skel->progs.flowstat_iter_snapshot, false);
	if (agent->mode != FS_MODE_LIVE_TCP_ITER)
		bpf_program__set_autoload(skel->progs.flowstat_iter_tcp_snapshot, false);
	if (!options->use_iterator || live || agent->hook_errors[hook_slot(FS_HOOK_ITER_OWNED)])
		bpf_program__set_autoload(skel->progs.flowstat_iter_owned, false);
	/*
	 * The capacity goes to the structure in use (the flow map, the storage-map snapshot's
	 * array, or none: iter/tcp's records stream out); the others keep a token size.
	 */
	capacity = options->map_entries ? options->map_entries : bpf_map__max_entries(skel->maps.flows);
	agent->capacity = capacity;
	if ((err = bpf_map__set_max_entries(skel->maps.flows, live ? 64 : capacity)) ||
	    (err = bpf_map__set_max_entries(skel->maps.snapshot,
					    agent->mode == FS_MODE_LIVE_STORAGE_ITER ? capacity : 1)))
		return fail(error, err, "set flow capacity to %u", capacity);

	err = flowstat_bpf__load(skel);
	if (err) {
		hook = hook_failed_to_load(skel);
		if (hook && hook != FS_HOOK_SOCKOPS) {
			agent->hook_errors[hook_slot(hook)] = err;
			return -EAGAIN;
		}
		return fail(error, err, "load BPF object (verifier or BTF)");
	}

	if ((err = fill_rtt_breakdown_maps(agent, options, error)))
		return err;

	/* Lifecycle first, so no flow is added after its close went unseen. */
	if ((err = attach_optional(agent, state)))
		return err;

	*link_of(skel, FS_HOOK_SOCKOPS) =
		bpf_program__attach_cgroup(skel->progs.flowstat_sockops, agent->cgroup_fd);
	if (!*link_of(skel, FS_HOOK_SOCKOPS)) {
		err = -errno;
		agent->hook_errors[hook_slot(FS_HOOK_SOCKOPS)] = err;
		return fail(error, err, "attach sockops to cgroup %s", agent->cgroup_path);
	}
	agent->attached |= FS_HOOK_SOCKOPS;

	if (rcv && (err = attach_optional(agent, rcv)))
		return err;
	if (retransmit && (err = attach_optional(agent, retransmit)))
		return err;

	if (bpf_program__autoload(skel->progs.flowstat_iter_tcp)) {
		hook = FS_HOOK_ITER_TCP;
		*link_of(skel, hook) = bpf_program__attach_iter(program_of(skel, hook), NULL);
		err = *link_of(skel, hook) ? run_iterator(*link_of(skel, hook), NULL, NULL) : -errno;
		if (err)
			agent->hook_errors[hook_slot(hook)] = err;
		else
			agent->attached |= hook;
	}

	/* Over tracked sockets only; without them (before 5.9), iter/tcp refreshes the map. */
	attach_storage_iterator(agent, FS_HOOK_ITER_OWNED);
	attach_storage_iterator(agent, FS_HOOK_ITER_SNAPSHOT);
	if (bpf_program__autoload(skel->progs.flowstat_iter_tcp_snapshot)) {
		hook = FS_HOOK_ITER_TCP_SNAPSHOT;
		*link_of(skel, hook) = bpf_program__attach_iter(program_of(skel, hook), NULL);
		if (*link_of(skel, hook))
			agent->attached |= hook;
		else
			agent->hook_errors[hook_slot(hook)] = -errno;
	}
	/* Live mode cannot run without its snapshot: start over with the next mode. */
	if ((agent->mode == FS_MODE_LIVE_STORAGE_ITER && !(agent->attached & FS_HOOK_ITER_SNAPSHOT)) ||
	    (agent->mode == FS_MODE_LIVE_TCP_ITER && !(agent->attached & FS_HOOK_ITER_TCP_SNAPSHOT)))
		return -EAGAIN;
	return 0;
}

/* ring_buffer__poll's callback: copies one record, or stops when the caller's buffer is full. */
static int on_closed_flow(void *context, void *data, size_t size)
{
	fs_agent *agent = context;

	if (size < sizeof(struct fs_closed_flow))
		return 0; /* not ours: skip it */
	if (agent->read_count >= agent->read_capacity)
		return -ENOSPC; /* left in the buffer for the next call */
	memcpy(&agent->read_target[agent->read_count++], data, sizeof(struct fs_closed_flow));
	return 0;
}

int fs_agent_open(const fs_options *options, fs_agent **out, fs_error *error)
{
	fs_options defaults = {0};
	fs_agent *agent;
	uint32_t want_rcv;
	int err;

	if (!options)
		options = &defaults;
	want_rcv = options->rcv_variants ? options->rcv_variants
					 : FS_HOOK_RCV_FENTRY | FS_HOOK_RCV_TP_BTF | FS_HOOK_RCV_RAW_TP |
						   FS_HOOK_RCV_TRACEPOINT;
	*out = NULL;
	libbpf_set_print(on_libbpf_print);
	log_tail_reset();

	agent = calloc(1, sizeof(*agent));
	if (!agent)
		return fail(error, ENOMEM, "allocate agent");
	agent->cgroup_fd = -1;

	if (options->cgroup_path) {
		snprintf(agent->cgroup_path, sizeof(agent->cgroup_path), "%s", options->cgroup_path);
	} else if ((err = fs_find_cgroup2_mount(agent->cgroup_path, sizeof(agent->cgroup_path)))) {
		err = fail(error, err, "find the cgroup v2 mount in /proc/mounts");
		goto failed;
	}
	agent->cgroup_fd = open(agent->cgroup_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (agent->cgroup_fd < 0) {
		err = fail(error, errno, "open cgroup %s", agent->cgroup_path);
		goto failed;
	}

	agent->possible_cpus = libbpf_num_possible_cpus();
	if (agent->possible_cpus <= 0) {
		err = fail(error, agent->possible_cpus, "count possible CPUs");
		goto failed;
	}
	agent->percpu_buffer = calloc(agent->possible_cpus, sizeof(uint64_t));
	agent->histogram_buffer = calloc(agent->possible_cpus, sizeof(struct fs_rtt_histogram));
	agent->closed_buffer = calloc(agent->possible_cpus, sizeof(struct fs_closed_histograms));
	agent->record_buffer = malloc(FS_RECORD_BUFFER_BYTES);
	if (!agent->percpu_buffer || !agent->histogram_buffer || !agent->closed_buffer ||
	    !agent->record_buffer) {
		err = fail(error, ENOMEM, "allocate per-CPU read buffers");
		goto failed;
	}

	/* Each pass that fails on an optional variant records it and retries without. */
	for (int pass = 0; pass < 2 * FS_HOOK_SLOTS; pass++) {
		err = try_start(agent, options, want_rcv, error);
		if (err != -EAGAIN)
			break;
		flowstat_bpf__destroy(agent->skel);
		agent->skel = NULL;
		agent->attached = 0;
	}
	if (err)
		goto failed;
	agent->closed_ring =
		ring_buffer__new(bpf_map__fd(agent->skel->maps.closed_flows), on_closed_flow, agent, NULL);
	if (!agent->closed_ring) {
		err = fail(error, errno, "open the closed-flow ring buffer");
		goto failed;
	}
	*out = agent;
	return 0;

failed:
	fs_agent_close(agent);
	return err;
}

void fs_agent_close(fs_agent *agent)
{
	if (!agent)
		return;
	ring_buffer__free(agent->closed_ring);
	flowstat_bpf__destroy(agent->skel); /* destroys every link: detaches */
	if (agent->cgroup_fd >= 0)
		close(agent->cgroup_fd);
	free(agent->percpu_buffer);
	free(agent->histogram_buffer);
	free(agent->closed_buffer);
	free(agent->record_buffer);
	free(agent);
}

uint32_t fs_agent_attached_hooks(const fs_agent *agent)
{
	return agent->attached;
}

int fs_agent_hook_error(const fs_agent *agent, uint32_t hook)
{
	return hook && hook < (1u << FS_HOOK_SLOTS) ? agent->hook_errors[hook_slot(hook)] : -EINVAL;
}

int fs_agent_refresh_tracked(fs_agent *agent, fs_error *error)
{
	struct bpf_link *link = agent->skel->links.flowstat_iter_owned;
	int err;

	if (!link)
		return fail(error, EOPNOTSUPP,
			    "refresh tracked flows: iter/bpf_sk_storage_map is not attached");
	err = run_iterator(link, NULL, NULL);
	return err ? fail(error, err, "refresh tracked flows (iter/bpf_sk_storage_map)") : 0;
}

int fs_agent_refresh(fs_agent *agent, int netns_fd, fs_error *error)
{
	struct bpf_link *link = agent->skel->links.flowstat_iter_tcp;

	if (!link)
		return fail(error, EOPNOTSUPP, "refresh flows: iter/tcp is not attached");
	return run_iterator_in(link, netns_fd, NULL, NULL, error, "refresh flows (iter/tcp)");
}

int fs_agent_take_new_namespaces(fs_agent *agent, uint32_t *inodes, uint32_t capacity, uint32_t *count,
				 fs_error *error)
{
	int fd = bpf_map__fd(agent->skel->maps.netns_with_flows);
	uint32_t key, n = 0;

	*count = 0;
	/* Deleting as we go restarts the walk from the first key, which is the next one. */
	while (n < capacity && bpf_map_get_next_key(fd, NULL, &key) == 0) {
		if (bpf_map_delete_elem(fd, &key) && errno != ENOENT)
			return fail(error, errno, "take noted network namespaces");
		inodes[n++] = key;
	}
	*count = n;
	return 0;
}

int fs_agent_read_tracked(fs_agent *agent, const int *netns_fds, int *netns_errors, uint32_t netns_count,
			  bool lean, fs_record_sink sink, void *context, uint32_t *count, uint32_t *missed,
			  fs_error *error)
{
	struct fs_record_reader reader = {.sink = sink, .context = context, .capacity = agent->capacity};
	long page = sysconf(_SC_PAGESIZE);
	uint32_t written;
	size_t bytes;
	void *mapped;
	int err;

	*count = 0;
	*missed = 0;
	if (agent->mode == FS_MODE_EVENT)
		return fail(error, EOPNOTSUPP, "read tracked flows: no snapshot iterator is attached");
	agent->skel->bss->snapshot_count = 0;
	agent->skel->bss->snapshot_missed = 0;
	agent->skel->bss->snapshot_time_ns = 0;
	agent->skel->bss->snapshot_lean = lean ? 1 : 0;
	if (agent->mode == FS_MODE_LIVE_TCP_ITER) {
		/* One namespace failing (it vanished, or we may not enter it) costs that namespace only. */
		for (uint32_t i = 0; i < netns_count; i++) {
			fs_error ignored;

			netns_errors[i] = run_iterator_in(agent->skel->links.flowstat_iter_tcp_snapshot,
							  netns_fds[i], agent->record_buffer, &reader,
							  &ignored, "read tracked flows (iter/tcp)");
		}
		*count = reader.delivered;
		*missed = reader.missed;
		return 0;
	}
	err = run_iterator(agent->skel->links.flowstat_iter_snapshot, NULL, NULL);
	if (err)
		return fail(error, err, "read tracked flows (iter/bpf_sk_storage_map)");
	*missed = agent->skel->bss->snapshot_missed;
	written = agent->skel->bss->snapshot_count;
	if (written == 0)
		return 0;
	/*
	 * Map the filled part only, and only for this call: the kernel maps every page at
	 * once, and a standing mapping of the whole array would count in our RSS.
	 */
	bytes = (size_t)written * sizeof(struct fs_flow_record);
	bytes = (bytes + page - 1) / page * page;
	mapped = mmap(NULL, bytes, PROT_READ, MAP_SHARED, bpf_map__fd(agent->skel->maps.snapshot), 0);
	if (mapped == MAP_FAILED)
		return fail(error, errno, "map the snapshot array");
	sink(context, mapped, written);
	munmap(mapped, bytes);
	*count = written;
	return 0;
}

uint32_t fs_agent_map_capacity(const fs_agent *agent)
{
	return agent->capacity;
}

enum fs_mode fs_agent_mode(const fs_agent *agent)
{
	return agent->mode;
}

int fs_agent_mounted_tracefs(const fs_agent *agent)
{
	return agent->mounted_tracefs;
}

const char *fs_agent_cgroup_path(const fs_agent *agent)
{
	return agent->cgroup_path;
}

/* For kernels without batch map operations (before 5.6): one syscall pair per entry. */
static int read_flows_one_by_one(int fd, struct fs_flow_key *keys, struct fs_flow_stats *values,
				 uint32_t capacity, uint32_t *count)
{
	struct fs_flow_key *previous = NULL;
	uint32_t n = 0;

	while (n < capacity && bpf_map_get_next_key(fd, previous, &keys[n]) == 0) {
		previous = &keys[n];
		/* The entry may close between the two calls: then reuse its slot. */
		if (bpf_map_lookup_elem(fd, &keys[n], &values[n]) == 0)
			n++;
	}
	*count = n;
	return 0;
}

int fs_agent_read_flows(fs_agent *agent, struct fs_flow_key *keys, struct fs_flow_stats *values,
			uint32_t capacity, uint32_t *count, fs_error *error)
{
	int fd = bpf_map__fd(agent->skel->maps.flows);
	uint64_t token[8]; /* opaque batch position; hash maps use 4 bytes of it */
	uint32_t total = 0;
	bool first = true;

	*count = 0;
	while (total < capacity) {
		uint32_t n = capacity - total;
		int err = bpf_map_lookup_batch(fd, first ? NULL : token, token, keys + total, values + total,
					       &n, NULL);

		if (err && err != -ENOENT) {
			if (first && (err == -EINVAL || err == -ENOTSUP || err == -EOPNOTSUPP))
				return read_flows_one_by_one(fd, keys, values, capacity, count);
			if (err == -ENOSPC) /* caller's buffer is full */
				break;
			return fail(error, err, "read flow map (batch)");
		}
		total += n;
		first = false;
		if (err == -ENOENT) /* walked the whole map */
			break;
	}
	*count = total;
	return 0;
}

int fs_agent_read_counters(fs_agent *agent, uint64_t out[FS_CTR_MAX], fs_error *error)
{
	int fd = bpf_map__fd(agent->skel->maps.counters);

	for (uint32_t counter = 0; counter < FS_CTR_MAX; counter++) {
		int err = bpf_map_lookup_elem(fd, &counter, agent->percpu_buffer);

		if (err)
			return fail(error, err, "read counter %u", counter);
		out[counter] = 0;
		for (int cpu = 0; cpu < agent->possible_cpus; cpu++)
			out[counter] += agent->percpu_buffer[cpu];
	}
	return 0;
}

int fs_agent_read_rtt_histogram(fs_agent *agent, uint64_t *out, uint32_t bound_count, uint64_t *sum_us,
				fs_error *error)
{
	struct fs_rtt_histogram *per_cpu = agent->histogram_buffer;
	uint32_t zero = 0;
	int err;

	if (bound_count > FS_RTT_BOUNDS_MAX)
		return fail(error, EINVAL, "read RTT histogram: %u bounds", bound_count);
	err = bpf_map_lookup_elem(bpf_map__fd(agent->skel->maps.rtt_hist), &zero, per_cpu);
	if (err)
		return fail(error, err, "read RTT histogram");
	memset(out, 0, (bound_count + 1) * sizeof(*out));
	*sum_us = 0;
	for (int cpu = 0; cpu < agent->possible_cpus; cpu++) {
		for (uint32_t bucket = 0; bucket <= bound_count; bucket++)
			out[bucket] += per_cpu[cpu].buckets[bucket];
		*sum_us += per_cpu[cpu].sum_us;
	}
	return 0;
}

int fs_agent_read_closed_histograms(fs_agent *agent, struct fs_closed_histograms *out, fs_error *error)
{
	uint32_t zero = 0;
	int err =
		bpf_map_lookup_elem(bpf_map__fd(agent->skel->maps.closed_hist), &zero, agent->closed_buffer);

	if (err)
		return fail(error, err, "read closed-flow histograms");
	memset(out, 0, sizeof(*out));
	for (int cpu = 0; cpu < agent->possible_cpus; cpu++) {
		const struct fs_closed_histograms *one = &agent->closed_buffer[cpu];

		for (int bucket = 0; bucket <= FS_HIST_BOUNDS_MAX; bucket++) {
			out->duration_buckets[bucket] += one->duration_buckets[bucket];
			out->bytes_buckets[bucket] += one->bytes_buckets[bucket];
		}
		out->duration_sum_ns += one->duration_sum_ns;
		out->bytes_sum += one->bytes_sum;
	}
	return 0;
}

int fs_agent_read_closed(fs_agent *agent, struct fs_closed_flow *records, uint32_t capacity, uint32_t *count,
			 int timeout_ms, fs_error *error)
{
	int err;

	agent->read_target = records;
	agent->read_capacity = capacity;
	agent->read_count = 0;
	err = timeout_ms > 0 ? ring_buffer__poll(agent->closed_ring, timeout_ms)
			     : ring_buffer__consume(agent->closed_ring);
	*count = agent->read_count;
	agent->read_target = NULL;
	if (err == -ENOSPC || err == -EINTR || err >= 0)
		return 0;
	return fail(error, err, "read the closed-flow ring buffer");
}

/* Sums one slot of a per-CPU histogram array into counts (bound_count + 1) and *sum_us. */
static int sum_histogram_slot(fs_agent *agent, int fd, uint32_t slot, uint64_t *counts, uint32_t bound_count,
			      uint64_t *sum_us)
{
	struct fs_rtt_histogram *per_cpu = agent->histogram_buffer;

	if (bpf_map_lookup_elem(fd, &slot, per_cpu))
		return -errno;
	memset(counts, 0, (bound_count + 1) * sizeof(*counts));
	*sum_us = 0;
	for (int cpu = 0; cpu < agent->possible_cpus; cpu++) {
		for (uint32_t bucket = 0; bucket <= bound_count; bucket++)
			counts[bucket] += per_cpu[cpu].buckets[bucket];
		*sum_us += per_cpu[cpu].sum_us;
	}
	return 0;
}

int fs_agent_read_service_rtt(fs_agent *agent, uint32_t *ports, uint64_t *out, uint64_t *sums_us,
			      uint32_t capacity, uint32_t bound_count, uint32_t *count, fs_error *error)
{
	int slots = bpf_map__fd(agent->skel->maps.service_slots);
	int histograms = bpf_map__fd(agent->skel->maps.service_rtt_hist);
	uint32_t other = agent->skel->rodata->service_port_limit, port, slot, *previous = NULL, n = 0;
	int err;

	*count = 0;
	if (bound_count > FS_RTT_BOUNDS_MAX || capacity == 0)
		return fail(error, EINVAL, "read per-service RTT histograms: %u bounds, room for %u",
			    bound_count, capacity);
	/* The ports with a slot of their own, then "other" (port 0) in the last place. */
	while (n + 1 < capacity && bpf_map_get_next_key(slots, previous, &port) == 0) {
		if (bpf_map_lookup_elem(slots, &port, &slot) || slot >= other)
			return fail(error, errno ? errno : ERANGE, "read the RTT histogram slot of port %u",
				    port);
		err = sum_histogram_slot(agent, histograms, slot, out + (size_t)n * (bound_count + 1),
					 bound_count, &sums_us[n]);
		if (err)
			return fail(error, err, "read the per-service RTT histogram of port %u", port);
		ports[n] = port;
		previous = &ports[n];
		n++;
	}
	err = sum_histogram_slot(agent, histograms, other, out + (size_t)n * (bound_count + 1), bound_count,
				 &sums_us[n]);
	if (err)
		return fail(error, err, "read the per-service RTT histogram of other ports");
	ports[n++] = 0;
	*count = n;
	return 0;
}

int fs_agent_read_peer_group_rtt(fs_agent *agent, uint64_t *out, uint64_t *sums_us, uint32_t group_count,
				 uint32_t bound_count, fs_error *error)
{
	int fd = bpf_map__fd(agent->skel->maps.peer_group_rtt_hist);

	if (bound_count > FS_RTT_BOUNDS_MAX || group_count > FS_PEER_GROUPS_MAX)
		return fail(error, EINVAL, "read peer-group RTT histograms: %u groups, %u bounds",
			    group_count, bound_count);
	for (uint32_t group = 0; group < group_count; group++) {
		int err = sum_histogram_slot(agent, fd, group, out + (size_t)group * (bound_count + 1),
					     bound_count, &sums_us[group]);

		if (err)
			return fail(error, err, "read the RTT histogram of peer group %u", group);
	}
	return 0;
}
