/* SPDX-License-Identifier: Apache-2.0 */
/*
 * cflowstat.h: the one seam between flowstat's Swift code and libbpf.
 *
 * Life of an agent: fs_agent_open() opens the embedded BPF object, sets its
 * knobs, loads it (dropping variants the kernel rejects), attaches every hook
 * with the fallback chain and seeds the map with flows that already exist;
 * fs_agent_read_* copy kernel state into caller buffers; fs_agent_close()
 * detaches everything. All attachments are bpf_links owned by this process,
 * so the kernel detaches them too if the process dies without closing.
 *
 * Errors are negative errno values; fs_error says which step failed and why.
 * No function keeps a pointer to caller memory past its return.
 */
#ifndef CFLOWSTAT_H
#define CFLOWSTAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "../../../bpf/flowstat.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct fs_agent fs_agent;

typedef struct fs_error {
	int code;	   /* negative errno */
	char step[64];	   /* e.g. "load BPF object", "attach sockops to /sys/fs/cgroup/unified" */
	char message[512]; /* strerror, plus the last lines libbpf printed (verifier log tail) */
} fs_error;

/* One network of an RTT peer group: group is the group's index (0-based). */
typedef struct fs_peer_group_network {
	struct fs_peer_network network;
	uint32_t group;
} fs_peer_group_network;

typedef struct fs_options {
	uint32_t map_entries;		 /* capacity of the flow map; 0: the object's default */
	uint64_t min_update_interval_ns; /* per-flow minimum time between rate-limited updates */
	const char *cgroup_path; /* cgroup v2 mount to attach sockops to; NULL: found in /proc/mounts */
	uint32_t rcv_variants; /* FS_HOOK_RCV_* bits to try (fentry > tp_btf > raw_tp > tracepoint); 0: all */
	int use_iterator;      /* non-zero: attach iter/tcp, seed existing flows, allow fs_agent_refresh */
	int live_snapshot;     /* non-zero: live mode where the kernel allows (see fs_agent_mode) */
	const uint64_t *rtt_bounds_ns;	    /* increasing RTT histogram bounds; copied at open */
	uint32_t rtt_bound_count;	    /* at most FS_RTT_BOUNDS_MAX; 0: no histogram */
	uint32_t rtt_sample_every;	    /* count 1 in N RTT samples; 0 or 1: all */
	const uint64_t *duration_bounds_ns; /* closed-flow lifetime histogram bounds */
	uint32_t duration_bound_count;	    /* at most FS_HIST_BOUNDS_MAX; 0: no histogram */
	const uint64_t *bytes_bounds;	    /* closed-flow bytes histogram bounds */
	uint32_t bytes_bound_count;	    /* at most FS_HIST_BOUNDS_MAX; 0: no histogram */
	uint32_t ring_buffer_bytes;  /* closed-flow ring buffer: a power of 2, >= page size; 0: 4 MiB */
	uint32_t modes;		     /* FS_MODE_BIT()s the agent may run in, best first; 0: any */
	uint32_t service_port_limit; /* per-service RTT histograms for this many ports (+ other); 0: off */
	const fs_peer_group_network *peer_networks; /* RTT peer groups' networks; copied at open */
	uint32_t peer_network_count;
	uint32_t peer_group_count; /* at most FS_PEER_GROUPS_MAX; 0: no per-group histograms */
} fs_options;

#define FS_MODE_BIT(mode) (1u << (mode))

/* Receives libbpf's messages (level: 0 warn, 1 info, 2 debug), one line at a time. */
typedef void (*fs_log_fn)(int level, const char *line);
void fs_set_log_handler(fs_log_fn handler);

int fs_agent_open(const fs_options *options, fs_agent **out, fs_error *error);
/* USEC_PER_SEC / HZ of the running kernel, from the coarse clock's tick; 0 when unknown. */
uint32_t fs_usec_per_jiffy(void);
void fs_agent_close(fs_agent *agent);

/* FS_HOOK_* bits of the hooks that are attached (FS_HOOK_ITER_TCP: seeding ran). */
uint32_t fs_agent_attached_hooks(const fs_agent *agent);
/* Why an attempted hook variant is not attached: negative errno, or 0. */
int fs_agent_hook_error(const fs_agent *agent, uint32_t hook);
uint32_t fs_agent_map_capacity(const fs_agent *agent);
/*
 * Live modes (FS_MODE_LIVE_*): snapshots come from fs_agent_read_tracked(), every tracked
 * socket read as it is now, and no hook writes the flow map. Event mode (asked for, or no
 * snapshot iterator loads) hooks keep the map up to date and snapshots copy it
 * (fs_agent_read_flows), after fs_agent_refresh_tracked / fs_agent_refresh.
 * The capacity (fs_agent_map_capacity) is the flows a live snapshot hands over, or the
 * flow map's entries in event mode.
 */
enum fs_mode fs_agent_mode(const fs_agent *agent);
/* Non-zero when the agent mounted tracefs for a classic tracepoint (it stays mounted). */
int fs_agent_mounted_tracefs(const fs_agent *agent);
/* Path sockops is attached to. */
const char *fs_agent_cgroup_path(const fs_agent *agent);

/*
 * Copies up to capacity flows into keys/values with batched map reads and
 * stores how many in *count. Returns 0, or a negative errno.
 */
int fs_agent_read_flows(fs_agent *agent, struct fs_flow_key *keys, struct fs_flow_stats *values,
			uint32_t capacity, uint32_t *count, fs_error *error);

/*
 * Rewrites every flow of one network namespace from its socket's current state
 * (iter/tcp), as ss would read it now. Event hooks record state as of the last
 * packet; this makes idle flows exact before a snapshot. netns_fd: an open
 * /proc/PID/ns/net (entered and left within this call, on the calling thread),
 * or -1 for the caller's own namespace.
 */
int fs_agent_refresh(fs_agent *agent, int netns_fd, fs_error *error);

/*
 * Rewrites every flow flowstat tracks, in every network namespace, from its socket's
 * current state: iterates the sockets that have flowstat's socket storage, no namespace
 * switch needed. Available when FS_HOOK_ITER_OWNED is attached (Linux 5.9+).
 */
int fs_agent_refresh_tracked(fs_agent *agent, fs_error *error);

/* Receives a live snapshot's records, a batch at a time; they are valid during the call only. */
typedef void (*fs_record_sink)(void *context, const struct fs_flow_record *records, uint32_t count);

/*
 * Where a live snapshot's records go: the sink, a read's whole records at a time, up to
 * capacity; past it they count as missed.
 */
#define FS_TAIL_KEYS 8

struct fs_record_reader {
	fs_record_sink sink;
	void *context;
	uint32_t capacity, delivered, missed;
	/*
	 * Keys of the last records of the previous read() of this run. Kernels whose iter/tcp
	 * resumes a hash bucket by position (6.1 and 6.12 do; newer ones resume by socket
	 * cookie): a socket added to the bucket between two reads shows the one before it
	 * again, at the start of the next read. 8: more sockets of one namespace added to one
	 * bucket between two reads is past what a hash spreads.
	 */
	struct fs_flow_key tail[FS_TAIL_KEYS];
	uint32_t tail_count;
};

/*
 * Reads fs_flow_records from fd (an iter/tcp snapshot's iterator) until end of file, into
 * buffer (at least one record), and hands them to the reader: a record cut across two reads
 * is joined, and records at the start of a read that repeat the previous read's last ones
 * are dropped. 0 or negative errno. Public for the tests, which feed it from a socket pair.
 */
int fs_read_records(int fd, unsigned char *buffer, size_t buffer_bytes, struct fs_record_reader *reader);

/*
 * The live snapshot: every flow flowstat tracks, as its socket is now, handed to sink in
 * batches as the kernel produces them (no copy of the whole snapshot is held).
 * FS_MODE_LIVE_STORAGE_ITER reads every network namespace in one pass and ignores
 * netns_fds; FS_MODE_LIVE_TCP_ITER runs once in each of netns_fds (open namespace files,
 * or -1 for the caller's own) and stores each run's result (0 or negative errno) in
 * netns_errors. *count: records handed over; *missed: flows past the capacity, left out.
 * lean: leave out the fields of FS_HAS_DETAIL, FS_HAS_LOSS_DETAIL and FS_HAS_RTO_TOTALS
 * (their bits stay clear), which costs the kernel fewer of each socket's cache lines.
 */
int fs_agent_read_tracked(fs_agent *agent, const int *netns_fds, int *netns_errors, uint32_t netns_count,
			  bool lean, fs_record_sink sink, void *context, uint32_t *count, uint32_t *missed,
			  fs_error *error);

/*
 * FS_MODE_LIVE_TCP_ITER: the network namespaces (inode numbers) where flows became tracked
 * since the last call, up to capacity; taking them clears them.
 */
int fs_agent_take_new_namespaces(fs_agent *agent, uint32_t *inodes, uint32_t capacity, uint32_t *count,
				 fs_error *error);

/*
 * Sums the per-CPU RTT histogram: out[0..bound_count] non-cumulative bucket counts (the
 * last is +Inf), *sum_us the sum of the samples. out must hold bound_count + 1 values.
 */
int fs_agent_read_rtt_histogram(fs_agent *agent, uint64_t *out, uint32_t bound_count, uint64_t *sum_us,
				fs_error *error);

/*
 * The per-service RTT histograms: up to capacity ports (the last is 0: "other") into ports, each with
 * bound_count + 1 non-cumulative counts at out[i * (bound_count + 1)] and its sum in
 * sums_us[i]; *count says how many.
 */
int fs_agent_read_service_rtt(fs_agent *agent, uint32_t *ports, uint64_t *out, uint64_t *sums_us,
			      uint32_t capacity, uint32_t bound_count, uint32_t *count, fs_error *error);

/* The per-peer-group RTT histograms of groups 0..group_count-1, laid out as above. */
int fs_agent_read_peer_group_rtt(fs_agent *agent, uint64_t *out, uint64_t *sums_us, uint32_t group_count,
				 uint32_t bound_count, fs_error *error);

/* Sums the per-CPU closed-flow histograms into *out. */
int fs_agent_read_closed_histograms(fs_agent *agent, struct fs_closed_histograms *out, fs_error *error);

/*
 * Moves up to capacity closed-flow records out of the ring buffer into records and
 * stores how many in *count. timeout_ms > 0 waits that long for the first record;
 * 0 takes what is there. Records that do not fit stay for the next call. Call from one
 * thread at a time. Returns 0, or a negative errno.
 */
int fs_agent_read_closed(fs_agent *agent, struct fs_closed_flow *records, uint32_t capacity, uint32_t *count,
			 int timeout_ms, fs_error *error);

/* Sums the per-CPU event counters into out[FS_CTR_MAX]. */
int fs_agent_read_counters(fs_agent *agent, uint64_t out[FS_CTR_MAX], fs_error *error);

/* ---- inet_diag: the fallback source, no BPF and no privileges ---- */

/*
 * Caller-owned destination of a dump. count counts every flow seen, also those past
 * capacity (not stored), so after -ENOSPC it says how many records to allocate.
 */
typedef struct fs_flow_buffer {
	struct fs_flow_key *keys;
	struct fs_flow_stats *values;
	uint32_t capacity;
	uint32_t count; /* in: records already stored (appended after); out: total */
} fs_flow_buffer;

/*
 * Appends the TCP flows of one network namespace (IPv4 and IPv6 sockets, the states
 * the BPF source records, listeners excluded) read with one NETLINK_SOCK_DIAG dump
 * each, with struct tcp_info, as the records the BPF map holds: same units, key with
 * netns_inode, direction unknown, seen_by 0, both timestamps the dump's CLOCK_MONOTONIC
 * time. netns_fd: an open network namespace file (entered only to create the socket,
 * on the calling thread; needs CAP_SYS_ADMIN), or -1 for the caller's own namespace.
 * Returns 0; -ENOSPC when out->count exceeds out->capacity; or a negative errno.
 * Thread-safe; it changes the calling thread's namespace only for the socket call.
 */
int fs_diag_dump(int netns_fd, uint32_t netns_inode, fs_flow_buffer *out, fs_error *error);

/*
 * Parses one buffer of netlink messages as read from a sock_diag socket, appending
 * flows to out (the parser behind fs_diag_dump, exposed for tests). Messages of
 * another sequence number are skipped. Returns 0 when more messages are due, 1 at
 * NLMSG_DONE, the (negative) error of an NLMSG_ERROR or of a failed DONE, or
 * -EBADMSG for a truncated or malformed message.
 */
int fs_diag_parse(const void *data, size_t length, uint32_t seq, uint32_t netns_inode, uint64_t now_ns,
		  fs_flow_buffer *out);

/* Finds the cgroup v2 mount point in /proc/mounts. Returns 0, or -ENOENT. */
int fs_find_cgroup2_mount(char *buffer, size_t length);

/* ---- privileges: `serve --run-as` (privileges.c) ---- */

/* The calling thread's effective and permitted capability sets (bit n: capability n). */
int fs_capabilities(uint64_t *effective, uint64_t *permitted);

/*
 * Switches the whole process (every thread) from root to uid/gid: supplementary
 * groups become just gid, real/effective/saved ids all change, so the kernel
 * clears every thread's capabilities; then clears this thread's inheritable set,
 * sets no_new_privs on every thread (PR_SET_NO_NEW_PRIVS, spread by an allow-all
 * seccomp filter with TSYNC) and checks that uid 0 cannot be regained. Open file
 * descriptors (BPF programs, links, maps, sockets) stay usable. Returns 0, or a
 * negative errno with error->step naming the call that failed.
 */
int fs_drop_privileges(uint32_t uid, uint32_t gid, fs_error *error);

/* ---- the process's heap (process.c) ---- */

/*
 * Fixes glibc's mmap threshold at bytes (mallopt M_MMAP_THRESHOLD): blocks this large are
 * mapped on their own and returned to the kernel when freed, instead of the threshold
 * rising to the largest block freed so far. Returns 1 on success, 0 if refused.
 */
int fs_set_mmap_threshold(int bytes);

/* ---- memory ---- */

/*
 * Asks the CPU to start loading the cache line at address, for a loop that will read it a
 * few iterations later (Swift has no prefetch of its own). Inlined into the Swift caller.
 */
static inline void fs_prefetch(const void *address)
{
	__builtin_prefetch(address);
}

#ifdef __cplusplus
}
#endif

#endif /* CFLOWSTAT_H */
