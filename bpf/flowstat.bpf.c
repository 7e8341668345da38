// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * flowstat.bpf.c: follows every TCP flow of the host, in one of two modes user space
 * picks before load (live_mode):
 *
 *   live mode    a flow is its socket storage ("owners": first seen, direction, owner);
 *                a snapshot iterator reads each tracked socket's tcp_sock at the scrape
 *                into a record per flow. Events only count, sample RTTs and report
 *                closes: no per-flow copy to keep up to date on every ACK. The iterator
 *                is iter/bpf_sk_storage_map (every namespace in one run, records into the
 *                mapped array "snapshot") where the kernel allows it, else iter/tcp (records
 *                out through its seq_file) run once per network namespace that holds
 *                tracked flows ("netns_with_flows" names the new ones).
 *   event mode   one entry per flow in the LRU map "flows", rewritten from tcp_sock on
 *                every RTT sample, retransmit and (flows sockops does not follow) received
 *                segment, removed at close; "flowstat_iter_owned" (or iter/tcp before 5.9)
 *                rewrites entries before user space copies the map, since the event hooks
 *                see a socket before the kernel finishes a packet (cwnd grows after the
 *                RTT callback). For kernels or settings live mode cannot serve.
 *
 * Hooks (user space picks the variants the running kernel allows):
 *   sockops (cgroup v2 root)   established -> count the open, make the record, enable
 *                              callbacks; RTT -> histogram (and update); RETRANS ->
 *                              update; STATE to CLOSE -> count and report the flow
 *   tcp_rcv_established        flows sockops cannot see (opened before flowstat
 *                              attached): fentry, else tp_btf/tcp_probe, else
 *                              raw_tp/tcp_probe (untyped, needs no tracefs), else
 *                              tracepoint/tcp/tcp_probe (needs tracefs); one handler
 *   sock/inet_sock_set_state   records socket owners at connect() and listen(); counts
 *                              and reports closed flows sockops does not follow;
 *                              tp_btf, else raw_tp, else the classic tracepoint
 *   tcp_retransmit_skb         host-wide retransmitted segments by kind and RTO expiries,
 *                              every namespace, tracked flows or not: tp_btf, else raw_tp
 *   iter/tcp                   run at start-up to seed flows that already exist; the
 *                              live snapshot, per namespace, where the next is refused
 *   iter/bpf_sk_storage_map    the snapshot (live) or the rewrite (event mode)
 */
#include <linux/bpf.h>
#include <stdbool.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "kernel_types.bpf.h"
#include "flowstat.h"

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define TCP_ESTABLISHED 1
#define TCP_SYN_SENT 2
#define TCP_SYN_RECV 3
#define TCP_CLOSE 7
#define TCP_LISTEN 10
#define TCP_CA_Open 0
#define TCP_CA_CWR 2
#define TCP_CA_Loss 4
#define ICSK_TIME_LOSS_PROBE 5

/* Runtime knobs, set by user space between open and load. */
/*
 * Live mode: the snapshot iterator reads every tracked socket's state at each scrape, so
 * events need not keep a copy: a flow is its socket storage (first seen, direction, owner),
 * made when it is established or first seen, and the hash map "flows" is not used. Off:
 * event mode, for kernels or settings the snapshot iterator cannot serve.
 */
const volatile bool live_mode = false;
/* Live mode through iter/tcp: note the namespaces where flows become tracked (netns_with_flows). */
const volatile bool note_namespaces = false;
const volatile __u64 min_update_interval_ns = 0;	    /* 0: update on every event */
const volatile __u32 rtt_bound_count = 0;		    /* 0: no RTT histogram */
const volatile __u64 rtt_bounds_ns[FS_RTT_BOUNDS_MAX] = {}; /* increasing upper bounds */
const volatile __u32 rtt_sample_every = 1;		    /* count 1 in N RTT samples */
/* Per-service RTT histograms: at most this many service ports, the rest in port 0 ("other"); 0: off. */
const volatile __u32 service_port_limit = 0;
/* RTT peer groups (networks in "peer_networks"); 0: no per-group histograms. */
const volatile __u32 peer_group_count = 0;
const volatile __u32 duration_bound_count = 0; /* 0: no closed-flow duration histogram */
const volatile __u64 duration_bounds_ns[FS_HIST_BOUNDS_MAX] = {};
const volatile __u32 bytes_bound_count = 0; /* 0: no closed-flow bytes histogram */
const volatile __u64 bytes_bounds[FS_HIST_BOUNDS_MAX] = {};
/*
 * Microseconds per jiffy (USEC_PER_SEC / HZ, as tcp_get_info_chrono_stats() converts): user
 * space learns HZ from the coarse clocks' resolution, which is one tick. 0: HZ unknown, so
 * the busy/limited times are left out (FS_HAS_TIME_LIMITS clear), not exported wrong.
 */
const volatile __u32 usec_per_jiffy = 0;
/*
 * tcp_retransmit_skb passes the attempt's error as a third argument and fires for failed
 * attempts too on recent kernels (6.18; not 6.12); before, it fired only for sent segments.
 * User space reads which from the kernel's BTF: a program must not touch a missing argument.
 */
const volatile bool retransmit_reports_errors = false;

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536); /* user space resizes before load */
	__type(key, struct fs_flow_key);
	__type(value, struct fs_flow_stats);
} flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, FS_CTR_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fs_rtt_histogram);
} rtt_hist SEC(".maps");

/*
 * The RTT histogram per service port (the local port of accepted flows, the remote port of
 * opened ones), by slot: the first service_port_limit ports seen get a slot each
 * ("service_slots" maps port to slot); slot service_port_limit holds every later port's
 * samples ("other"). A flow finds its slot once, when established, and keeps it in its
 * storage: a sample costs one array lookup, not a hash lookup.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1); /* user space sets service_port_limit + 1 before load */
	__type(key, __u32);
	__type(value, struct fs_rtt_histogram);
} service_rtt_hist SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1); /* user space sets service_port_limit before load */
	__type(key, __u32);	/* port */
	__type(value, __u32);	/* slot */
} service_slots SEC(".maps");

/* Slots handed out so far; past service_port_limit, ports go to "other". */
__u32 service_slots_taken = 0;

/* The RTT histogram per peer group, by the group's index (fs_owner.peer_group - 1). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, FS_PEER_GROUPS_MAX);
	__type(key, __u32);
	__type(value, struct fs_rtt_histogram);
} peer_group_rtt_hist SEC(".maps");

/* The peer groups' networks, longest prefix first; user space fills it before attaching. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1); /* user space sets the number of networks before load */
	__type(key, struct fs_peer_network);
	__type(value, __u8);
} peer_networks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fs_closed_histograms);
} closed_hist SEC(".maps");

/*
 * Owners of sockets, recorded where the kernel runs in the owner's context: connect()
 * and listen(). BPF_F_CLONE copies a listener's owner to every flow it accepts.
 */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC | BPF_F_CLONE);
	__type(key, int);
	__type(value, struct fs_owner);
} owners SEC(".maps");

/*
 * The storage-map snapshot's output, mapped into user space: an array, not the iterator's
 * seq_file, because the storage map has as few hash buckets as CPUs and its iterator walks
 * a bucket from the start each time the 32 KiB seq buffer fills (quadratic in flows).
 * iter/tcp resumes where it stopped, so its snapshot writes to its seq_file instead and
 * this array keeps one slot: no kernel memory sized by flows besides the sockets' storage.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 65536); /* user space sizes it as "flows" before load */
	__type(key, __u32);
	__type(value, struct fs_flow_record);
} snapshot SEC(".maps");

/* iter/tcp's record is built here, off the 512-byte stack, then copied to its seq_file. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fs_flow_record);
} record_scratch SEC(".maps");

/* Records the storage-map snapshot wrote to "snapshot", and flows it had no room for; user space zeroes both. */
__u32 snapshot_count = 0;
__u32 snapshot_missed = 0;
/* When the snapshot was taken: one clock read per snapshot, not one per flow. */
__u64 snapshot_time_ns = 0;
/*
 * Set by user space before a snapshot whose reader needs none of the FS_HAS_DETAIL,
 * LOSS_DETAIL and RTO_TOTALS fields (a scrape with their metrics off, the default): each
 * record then costs fewer of the socket's cache lines.
 */
__u8 snapshot_lean = 0;

/*
 * Network namespaces (inode) where a flow became tracked since user space last took the
 * keys: the iter/tcp snapshot visits these besides those that had flows in the last one.
 * A full map only costs a namespace its flows until user space takes the keys.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u8);
} netns_with_flows SEC(".maps");

/* Closed-flow records for user space; a full buffer drops records, never blocks. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries,
	       4096); /* placeholder: user space sets the size before load (BPFOptions.ringBufferBytes) */
} closed_flows SEC(".maps");

static __always_inline void count_n(__u32 counter, __u64 n)
{
	__u64 *value = bpf_map_lookup_elem(&counters, &counter);

	if (value)
		*value += n; /* per-CPU slot: no other writer */
}

static __always_inline void count(__u32 counter)
{
	count_n(counter, 1);
}

/*
 * Index of the bucket `value` falls in: the first bound >= value, or `count` (+Inf).
 * A binary search over increasing bounds.
 */
static __always_inline __u32 bucket_of(__u64 value, const volatile __u64 *bounds, __u32 count)
{
	__u32 low = 0, high = count;

	for (int step = 0; step < 6 && low < high; step++) { /* 2^6 > FS_HIST_BOUNDS_MAX */
		__u32 middle = (low + high) / 2;

		if (middle >= FS_HIST_BOUNDS_MAX)
			break;
		if (value <= bounds[middle])
			high = middle;
		else
			low = middle + 1;
	}
	return low;
}

static __always_inline void histogram_count(struct fs_rtt_histogram *histogram, __u32 bucket, __u32 rtt_us)
{
	if (!histogram || bucket > FS_RTT_BOUNDS_MAX)
		return;
	histogram->buckets[bucket] += 1; /* per-CPU value: no other writer */
	histogram->sum_us += rtt_us;
}

/*
 * The slot of a service port's histogram: found, else the next free one while there are
 * any, else "other". Two CPUs making the same port's slot at once both take one; the loser
 * finds the winner's on its second lookup and its own slot stays unused (and unexported).
 */
static __always_inline __u32 service_slot(__u32 port)
{
	__u32 *found = bpf_map_lookup_elem(&service_slots, &port);
	__u32 slot;

	if (found)
		return *found;
	if (service_slots_taken >= service_port_limit)
		return service_port_limit;
	slot = __sync_fetch_and_add(&service_slots_taken, 1);
	if (slot >= service_port_limit)
		return service_port_limit;
	if (bpf_map_update_elem(&service_slots, &port, &slot, BPF_NOEXIST) == 0)
		return slot;
	found = bpf_map_lookup_elem(&service_slots, &port);
	return found ? *found : service_port_limit;
}

/*
 * Adds one RTT sample (or 1 in rtt_sample_every) to the host's histogram and, when they are
 * on, to its service port's and its peer group's. The direction and the peer group were
 * stored with the socket when it was established (classify_flow): one storage lookup here.
 */
static __always_inline void histogram_add_rtt(struct tcp_sock *tp, __u32 rtt_us)
{
	struct sock *sk = (struct sock *)tp;
	struct fs_owner *info;
	__u32 zero = 0, bucket, slot;

	if (!rtt_bound_count || !rtt_us)
		return;
	if (rtt_sample_every > 1 && bpf_get_prandom_u32() % rtt_sample_every)
		return;
	bucket = bucket_of((__u64)rtt_us * 1000, rtt_bounds_ns, rtt_bound_count);
	histogram_count(bpf_map_lookup_elem(&rtt_hist, &zero), bucket, rtt_us);
	if (!service_port_limit && !peer_group_count)
		return;
	info = bpf_sk_storage_get(&owners, sk, 0, 0);
	if (service_port_limit) {
		/* A flow not classified when established (no storage then): "other". */
		slot = info && info->service_slot ? info->service_slot - 1 : service_port_limit;
		histogram_count(bpf_map_lookup_elem(&service_rtt_hist, &slot), bucket, rtt_us);
	}
	if (peer_group_count && info && info->peer_group) {
		__u32 group = info->peer_group - 1;

		histogram_count(bpf_map_lookup_elem(&peer_group_rtt_hist, &group), bucket, rtt_us);
	}
}

/*
 * Once per flow, where sockops sees it established: stores its direction, its service
 * port's histogram slot and its peer group (an LPM lookup of the remote address) with the
 * socket, for every RTT sample to read. Live mode has the storage already; event mode makes
 * it here.
 */
static __always_inline void classify_flow(struct sock *sk, __u8 direction)
{
	struct fs_peer_network network = {.prefix_len = 128};
	struct fs_owner *info;
	__u8 *group;

	if (!service_port_limit && !peer_group_count)
		return;
	info = bpf_sk_storage_get(&owners, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!info)
		return;
	info->direction = direction;
	if (service_port_limit)
		info->service_slot =
			1 + service_slot(direction == FS_DIR_PASSIVE ? sk->__sk_common.skc_num
								     : bpf_ntohs(sk->__sk_common.skc_dport));
	if (!peer_group_count)
		return;
	if (sk->__sk_common.skc_family == AF_INET) {
		network.addr[10] = network.addr[11] = 0xff;
		*(__be32 *)&network.addr[12] = sk->__sk_common.skc_daddr;
	} else {
		__builtin_memcpy(network.addr, &sk->__sk_common.skc_v6_daddr, 16);
	}
	group = bpf_map_lookup_elem(&peer_networks, &network);
	info->peer_group = group && *group <= FS_PEER_GROUPS_MAX ? *group : 0;
}

/*
 * Field reads. Where the verifier knows the pointer's BTF type (tp_btf, fentry, iter/tcp,
 * sockops after bpf_skc_to_tcp_sock) a plain load is allowed and costs one instruction;
 * the classic tracepoint only has a raw address and must go through
 * bpf_probe_read_kernel(). Handlers pass `direct` as a constant, so after inlining each
 * program keeps one kind of read. Both are CO-RE relocated.
 */
#define FIELD(direct, ptr, ...) \
	((direct) ? __builtin_preserve_access_index((ptr)->__VA_ARGS__) : BPF_CORE_READ(ptr, __VA_ARGS__))

/*
 * Fills key from the socket; false for sockets that are not IPv4/IPv6. holds_port: the
 * caller knows the socket is not closing, so skc_num (on the cache line the addresses share)
 * still holds the local port, and no key made on the way to CLOSE must match this one.
 */
static __always_inline bool flow_key_of_socket(struct sock *sk, struct fs_flow_key *key, bool direct,
					       bool holds_port)
{
	__u16 family = FIELD(direct, sk, __sk_common.skc_family);

	__builtin_memset(key, 0, sizeof(*key));
	if (family == AF_INET) {
		/* Store IPv4 mapped into IPv6 (::ffff:a.b.c.d): one key type for both. */
		key->saddr[10] = key->saddr[11] = 0xff;
		key->daddr[10] = key->daddr[11] = 0xff;
		*(__be32 *)&key->saddr[12] = FIELD(direct, sk, __sk_common.skc_rcv_saddr);
		*(__be32 *)&key->daddr[12] = FIELD(direct, sk, __sk_common.skc_daddr);
	} else if (family == AF_INET6) {
		if (direct) {
			__builtin_memcpy(key->saddr, &sk->__sk_common.skc_v6_rcv_saddr, 16);
			__builtin_memcpy(key->daddr, &sk->__sk_common.skc_v6_daddr, 16);
		} else {
			BPF_CORE_READ_INTO(&key->saddr, sk, __sk_common.skc_v6_rcv_saddr);
			BPF_CORE_READ_INTO(&key->daddr, sk, __sk_common.skc_v6_daddr);
		}
	} else {
		return false;
	}
	key->family = family;
	/*
	 * Not skc_num: on the way to CLOSE the kernel releases the port (zeroing skc_num)
	 * before the state tracepoint fires, and the close must find the same key.
	 */
	key->sport = holds_port ? FIELD(direct, sk, __sk_common.skc_num)
				: bpf_ntohs(FIELD(direct, (struct inet_sock *)sk, inet_sport));
	key->dport = bpf_ntohs(FIELD(direct, sk, __sk_common.skc_dport));
	key->netns = direct ? sk->__sk_common.skc_net.net->ns.inum
			    : BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
	return true;
}

/* The key every event uses: the same from establishment to CLOSE. */
static __always_inline bool flow_key_of(struct sock *sk, struct fs_flow_key *key, bool direct)
{
	return flow_key_of_socket(sk, key, direct, false);
}

/* A bitfield on some kernels, a plain byte on others: the relocated read fits both. */
#define BITFIELD(direct, ptr, field) \
	((direct) ? BPF_CORE_READ_BITFIELD(ptr, field) : BPF_CORE_READ_BITFIELD_PROBED(ptr, field))

/*
 * Where the flow's time went and how it recovers from loss: the fields tcp_get_info() adds
 * for tcpi_busy_time … tcpi_total_rto_time, with its derivations. Fields a kernel lacks leave
 * their fs_has bit clear.
 */
static __always_inline void read_tcp_diagnosis(struct tcp_sock *tp, struct fs_flow_stats *s, bool direct,
					       __u64 first_seen_jiffies, bool lean)
{
	__u8 has = 0;
	__s32 notsent;

	/* tcp_get_info_chrono_stats(): the running chrono counts up to now (tcp_jiffies32). */
	if (usec_per_jiffy && bpf_core_field_exists(tp->chrono_stat)) {
		__u64 now = bpf_jiffies64(), busy_jiffies;
		__u32 type = BITFIELD(direct, tp, chrono_type);
		__u32 busy = FIELD(direct, tp, chrono_stat[0]);
		__u32 rwnd = FIELD(direct, tp, chrono_stat[1]);
		__u32 sndbuf = FIELD(direct, tp, chrono_stat[2]);
		__u32 running = (__u32)now - FIELD(direct, tp, chrono_start);

		/* enum tcp_chrono: 1 busy, 2 rwnd-limited, 3 sndbuf-limited; 0 none running. */
		if (type == 1)
			busy += running;
		else if (type == 2)
			rwnd += running;
		else if (type == 3)
			sndbuf += running;
		/* Each term converted, then summed: the rounding tcpi_busy_time has. */
		s->rwnd_limited_us = (__u64)rwnd * usec_per_jiffy;
		s->sndbuf_limited_us = (__u64)sndbuf * usec_per_jiffy;
		s->busy_us = (__u64)busy * usec_per_jiffy + s->rwnd_limited_us + s->sndbuf_limited_us;
		/*
		 * The rest of the flow's age, counted in the same jiffies to the same jiffy: busy
		 * time grows by at most the jiffies that pass, so this never falls between reads
		 * (age in nanoseconds less busy jiffies could, by a tick, and a counter must not).
		 */
		busy_jiffies = (__u64)busy + rwnd + sndbuf;
		if (first_seen_jiffies && now - first_seen_jiffies > busy_jiffies)
			s->application_us = (now - first_seen_jiffies - busy_jiffies) * usec_per_jiffy;
		has |= FS_HAS_TIME_LIMITS;
	}
	if (lean) {
		s->has = has;
		return;
	}
	has |= FS_HAS_DETAIL;
	s->delivery_rate_app_limited = BITFIELD(direct, tp, rate_app_limited) ? 1 : 0;
	notsent = (__s32)(FIELD(direct, tp, write_seq) - FIELD(direct, tp, snd_nxt));
	s->notsent_bytes = notsent > 0 ? notsent : 0;
	s->rcv_rtt_us = FIELD(direct, tp, rcv_rtt_est.rtt_us) >> 3;
	s->lost_out = FIELD(direct, tp, lost_out);
	s->retrans_out = FIELD(direct, tp, retrans_out);
	s->probes = FIELD(direct, (struct inet_connection_sock *)tp, icsk_probes_out);
	if (bpf_core_field_exists(tp->rcv_ooopack)) {
		s->snd_wnd = FIELD(direct, tp, snd_wnd);
		s->reord_seen = FIELD(direct, tp, reord_seen);
		s->dsack_dups = FIELD(direct, tp, dsack_dups);
		s->rcv_ooopack = FIELD(direct, tp, rcv_ooopack);
		has |= FS_HAS_LOSS_DETAIL;
	}
	if (bpf_core_field_exists(tp->total_rto)) {
		__u32 rto_stamp = FIELD(direct, tp, rto_stamp);

		s->total_rto = FIELD(direct, tp, total_rto);
		s->total_rto_recoveries = FIELD(direct, tp, total_rto_recoveries);
		s->total_rto_time_ms = FIELD(direct, tp, total_rto_time);
		/* A recovery under way counts up to now (tcp_clock_ms(), CLOCK_MONOTONIC). */
		if (rto_stamp)
			s->total_rto_time_ms += (__u32)(bpf_ktime_get_ns() / 1000000) - rto_stamp;
		has |= FS_HAS_RTO_TOTALS;
	}
	s->has = has;
}

/*
 * Copies the tcp_info-like fields, with the same derivations tcp_get_info() makes.
 * first_seen_jiffies: fs_owner's, 0 when unknown (no application time then). lean: leave
 * out the FS_HAS_DETAIL fields and those after them.
 */
static __always_inline void read_tcp_state(struct tcp_sock *tp, struct fs_flow_stats *s, bool direct,
					   __u64 first_seen_jiffies, bool lean)
{
	s->srtt_us = FIELD(direct, tp, srtt_us) >> 3;
	s->rttvar_us = FIELD(direct, tp, mdev_us) >> 2;
	s->min_rtt_us = FIELD(direct, tp, rtt_min.s[0].v);
	s->snd_cwnd = FIELD(direct, tp, snd_cwnd);
	s->snd_ssthresh = FIELD(direct, tp, snd_ssthresh);
	s->bytes_acked = FIELD(direct, tp, bytes_acked);
	s->bytes_received = FIELD(direct, tp, bytes_received);
	s->data_segs_in = FIELD(direct, tp, data_segs_in);
	s->data_segs_out = FIELD(direct, tp, data_segs_out);
	s->total_retrans = FIELD(direct, tp, total_retrans);
	s->rate_delivered = FIELD(direct, tp, rate_delivered);
	s->rate_interval_us = FIELD(direct, tp, rate_interval_us);
	s->mss_cache = FIELD(direct, tp, mss_cache);
	s->state = FIELD(direct, (struct sock *)tp, __sk_common.skc_state);
	read_tcp_diagnosis(tp, s, direct, first_seen_jiffies, lean);
}

/*
 * The socket's cgroup v2 id: set when the socket is made (the caller's cgroup) and cloned
 * from a listener to the flows it accepts, so it names the container that owns the flow,
 * whichever hook or iterator sees the socket first. Read where a record is written (once
 * per new event-mode entry, per snapshot record, per close), never per packet. 0 on kernels
 * before 5.15, whose sock_cgroup_data has no cgroup pointer.
 */
static __always_inline __u64 socket_cgroup_id(struct sock *sk, bool direct)
{
	if (!bpf_core_field_exists(sk->sk_cgrp_data.cgroup))
		return 0;
	return direct ? sk->sk_cgrp_data.cgroup->kn->id : BPF_CORE_READ(sk, sk_cgrp_data.cgroup, kn, id);
}

/* One lookup when the namespace is already noted: no write on the common path. */
static __always_inline void note_namespace(struct sock *sk, bool direct)
{
	__u32 inode = direct ? sk->__sk_common.skc_net.net->ns.inum
			     : BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
	__u8 one = 1;

	if (!bpf_map_lookup_elem(&netns_with_flows, &inode))
		bpf_map_update_elem(&netns_with_flows, &inode, &one, BPF_ANY);
}

/*
 * Live mode's update: makes sure the socket has its storage, stamped with when flowstat
 * first saw it established. Cheap enough for every packet: a socket caches its storage.
 * Returns the storage, or NULL if the kernel had no room.
 */
static __always_inline struct fs_owner *track_socket(struct sock *sk, __u8 direction)
{
	struct fs_owner *info = bpf_sk_storage_get(&owners, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);

	if (!info) {
		count(FS_CTR_INSERTS_FAILED);
		return NULL;
	}
	if (!info->first_seen_ns) {
		info->first_seen_ns = bpf_ktime_get_ns();
		info->first_seen_jiffies = bpf_jiffies64();
		count(FS_CTR_INSERTS);
		if (note_namespaces)
			note_namespace(sk, true);
	}
	if (direction != FS_DIR_UNKNOWN)
		info->direction = direction;
	return info;
}

/*
 * The one update path every hook shares. rate_limited events (per-packet and
 * per-RTT-sample ones) are skipped while the entry is younger than
 * min_update_interval_ns; lifecycle events always write. new_srtt_us, when not
 * 0, is the smoothed RTT the kernel is about to store (see the RTT callback).
 */
static __always_inline void record_flow(struct sock *sk, __u32 hook, __u8 direction, bool rate_limited,
					__u32 new_srtt_us, bool direct)
{
	struct fs_flow_key key;
	struct fs_flow_stats *entry;
	struct fs_owner *owner = NULL;
	__u64 now;

	/*
	 * Untyped callers (raw_tp, the classic tracepoint) cannot give a socket storage; with
	 * iter/tcp snapshots they point it at the namespace, whose next snapshot tracks the flow.
	 */
	if (live_mode) {
		if (direct)
			track_socket(sk, direction);
		else if (note_namespaces)
			note_namespace(sk, false);
		return;
	}
	if (!flow_key_of(sk, &key, direct))
		return;

	now = bpf_ktime_get_ns();
	entry = bpf_map_lookup_elem(&flows, &key);
	if (entry) {
		if (rate_limited && min_update_interval_ns &&
		    now - entry->last_update_ns < min_update_interval_ns) {
			count(FS_CTR_UPDATES_SKIPPED);
			return;
		}
		/* Its storage holds the first jiffy (a socket caches its storage: one load). */
		if (direct)
			owner = bpf_sk_storage_get(&owners, sk, 0, 0);
		read_tcp_state((struct tcp_sock *)sk, entry, direct, owner ? owner->first_seen_jiffies : 0,
			       false);
		if (new_srtt_us)
			entry->srtt_us = new_srtt_us;
		entry->last_update_ns = now;
		entry->seen_by |= (__u8)hook; /* the first eight hooks fit */
		if (direction != FS_DIR_UNKNOWN)
			entry->direction = direction;
	} else {
		struct fs_flow_stats fresh = {};

		/*
		 * Every tracked socket gets storage (even without a known owner): the refresh
		 * iterates the storage map, so it visits tracked sockets only, in every
		 * namespace. Storage needs a typed socket: not from the classic tracepoint.
		 */
		if (direct) {
			owner = bpf_sk_storage_get(&owners, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
			if (owner) {
				/* A new entry is a new flow, even on a socket seen before. */
				owner->first_seen_jiffies = bpf_jiffies64();
				if (owner->pid) {
					fresh.pid = owner->pid;
					__builtin_memcpy(fresh.comm, owner->comm, sizeof(fresh.comm));
				}
			}
		}
		read_tcp_state((struct tcp_sock *)sk, &fresh, direct, owner ? owner->first_seen_jiffies : 0,
			       false);
		if (new_srtt_us)
			fresh.srtt_us = new_srtt_us;
		fresh.first_seen_ns = now;
		fresh.last_update_ns = now;
		fresh.seen_by = (__u8)hook;
		fresh.direction = direction;
		fresh.cgroup_id = socket_cgroup_id(sk, direct);
		if (bpf_map_update_elem(&flows, &key, &fresh, BPF_NOEXIST) == 0) {
			count(FS_CTR_INSERTS);
		} else if (!bpf_map_lookup_elem(&flows, &key)) {
			/* Not a lost race with another CPU (whose insert counted): refused. */
			count(FS_CTR_INSERTS_FAILED);
			return;
		}
	}
	count(FS_CTR_UPDATES);
}

static __always_inline void forget_flow(struct fs_flow_key *key)
{
	if (bpf_map_delete_elem(&flows, key) == 0)
		count(FS_CTR_ENTRIES_REMOVED);
}

/*
 * An established flow reached CLOSE: count it into the closed-flow histograms (exact,
 * in the kernel) and push its final state to the ring buffer (best effort: a full
 * buffer is counted in FS_CTR_EVENTS_LOST). `entry` is the flow's map entry (event mode)
 * and `info` its socket storage (live mode), if any.
 */
static __always_inline void report_closed_flow(struct sock *sk, struct fs_flow_key *key,
					       struct fs_flow_stats *entry, struct fs_owner *info,
					       bool direct)
{
	struct fs_closed_histograms *histograms;
	struct fs_closed_flow *record;
	__u64 now = bpf_ktime_get_ns(), bytes, first_seen_ns = 0,
	      first_seen_jiffies = info ? info->first_seen_jiffies : 0;
	__u32 zero = 0, bucket;
	__u8 direction = FS_DIR_UNKNOWN;

	if (entry) {
		first_seen_ns = entry->first_seen_ns;
		direction = entry->direction;
	} else if (info) {
		first_seen_ns = info->first_seen_ns;
		direction = info->direction;
	}
	record = bpf_ringbuf_reserve(&closed_flows, sizeof(*record), 0);
	if (record) {
		__builtin_memcpy(&record->key, key, sizeof(*key));
		record->_pad = 0;
		if (entry) {
			__builtin_memcpy(&record->stats, entry, sizeof(*entry));
		} else {
			__builtin_memset(&record->stats, 0, sizeof(record->stats));
			record->stats.first_seen_ns = first_seen_ns;
			record->stats.direction = direction;
			if (info && info->pid) {
				record->stats.pid = info->pid;
				__builtin_memcpy(record->stats.comm, info->comm, sizeof(record->stats.comm));
			}
		}
		read_tcp_state((struct tcp_sock *)sk, &record->stats, direct, first_seen_jiffies, false);
		if (!record->stats.cgroup_id)
			record->stats.cgroup_id = socket_cgroup_id(sk, direct);
		record->stats.state = TCP_CLOSE;
		record->stats.last_update_ns = now;
		record->closed_ns = now;
		bytes = record->stats.bytes_acked + record->stats.bytes_received;
		/* No wakeup: the reader polls on a timer, so a busy host pays no wakeup per close. */
		bpf_ringbuf_submit(record, BPF_RB_NO_WAKEUP);
	} else {
		count(FS_CTR_EVENTS_LOST);
		bytes = FIELD(direct, (struct tcp_sock *)sk, bytes_acked) +
			FIELD(direct, (struct tcp_sock *)sk, bytes_received);
	}

	histograms = bpf_map_lookup_elem(&closed_hist, &zero);
	if (!histograms)
		return;
	if (bytes_bound_count) {
		bucket = bucket_of(bytes, bytes_bounds, bytes_bound_count);
		if (bucket <= FS_HIST_BOUNDS_MAX) {
			histograms->bytes_buckets[bucket] += 1;
			histograms->bytes_sum += bytes;
		}
	}
	/* A lifetime is only known for flows whose opening a sockops callback saw. */
	if (direction == FS_DIR_UNKNOWN || !first_seen_ns) {
		count(FS_CTR_CLOSED_UNTIMED);
		return;
	}
	if (duration_bound_count) {
		__u64 duration = now - first_seen_ns;

		bucket = bucket_of(duration, duration_bounds_ns, duration_bound_count);
		if (bucket <= FS_HIST_BOUNDS_MAX) {
			histograms->duration_buckets[bucket] += 1;
			histograms->duration_sum_ns += duration;
		}
	}
}

/*
 * A socket reached CLOSE: if it was ever established, count it and report it (histograms,
 * ring buffer); forget its entry either way.
 */
static __always_inline void on_close(struct sock *sk, int oldstate, bool direct)
{
	struct fs_flow_key key;
	struct fs_flow_stats *entry = NULL;
	struct fs_owner *info = NULL;

	if (!flow_key_of(sk, &key, direct))
		return;
	/* The storage goes with the socket; the classic tracepoint cannot reach it. */
	if (direct)
		info = bpf_sk_storage_get(&owners, sk, 0, 0);
	if (!live_mode)
		entry = bpf_map_lookup_elem(&flows, &key);
	/* From SYN_SENT/SYN_RECV/LISTEN no flow was ever established. */
	if (oldstate != TCP_SYN_SENT && oldstate != TCP_SYN_RECV && oldstate != TCP_LISTEN &&
	    oldstate != TCP_CLOSE) {
		count(FS_CTR_CLOSED);
		report_closed_flow(sk, &key, entry, info, direct);
	}
	if (entry)
		forget_flow(&key);
	else if (info && info->first_seen_ns)
		count(FS_CTR_ENTRIES_REMOVED);
}

/*
 * The state tracepoints' part: closes of flows sockops does not follow (those established
 * before flowstat attached). Flows with the sockops STATE callback on are counted there,
 * because sockops programs always run, while tracing programs skip a run that would nest
 * in another run of the same program on that CPU (a softirq closing a socket while a
 * process closes another): at 20,000 closes a second that lost about 1% of them.
 */
static __always_inline void on_state_change(struct sock *sk, int oldstate, int newstate, bool direct)
{
	if (newstate != TCP_CLOSE)
		return;
	if (FIELD(direct, (struct tcp_sock *)sk, bpf_sock_ops_cb_flags) & BPF_SOCK_OPS_STATE_CB_FLAG)
		return;
	on_close(sk, oldstate, direct);
}

SEC("sockops")
int flowstat_sockops(struct bpf_sock_ops *skops)
{
	__u32 op = skops->op;
	struct bpf_sock *bsk;
	struct tcp_sock *tp;

	/* Other callbacks (connect, RTO init, ECN, header options…) are not ours. */
	if (op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB && op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB &&
	    op != BPF_SOCK_OPS_RTT_CB && op != BPF_SOCK_OPS_RETRANS_CB && op != BPF_SOCK_OPS_STATE_CB)
		return 1;
	bsk = skops->sk;
	if (!bsk)
		return 1;
	tp = bpf_skc_to_tcp_sock(bsk);
	if (!tp)
		return 1;

	switch (op) {
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
	case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
		/*
		 * Opens and closes are counted here, not in the state tracepoint: sockops
		 * programs never skip a run (see on_state_change).
		 */
		count(op == BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB ? FS_CTR_OPENED_ACTIVE
							       : FS_CTR_OPENED_PASSIVE);
		/*
		 * Every callback costs a run per ACK or event: live mode asks only for what it
		 * uses (RTT samples for the histogram, the close), event mode for every update.
		 */
		bpf_sock_ops_cb_flags_set(
			skops, skops->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_STATE_CB_FLAG |
				       (!live_mode || rtt_bound_count ? BPF_SOCK_OPS_RTT_CB_FLAG : 0) |
				       (!live_mode ? BPF_SOCK_OPS_RETRANS_CB_FLAG : 0));
		record_flow((struct sock *)tp, FS_HOOK_SOCKOPS,
			    op == BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB ? FS_DIR_ACTIVE : FS_DIR_PASSIVE, false,
			    0, true);
		classify_flow((struct sock *)tp,
			      op == BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB ? FS_DIR_ACTIVE : FS_DIR_PASSIVE);
		break;
	case BPF_SOCK_OPS_RTT_CB:
		/*
		 * Since Linux 6.10 this runs before tcp_rtt_estimator() stores the
		 * new srtt, and passes the sample in args[0] and the new srtt (<< 3)
		 * in args[1]; older kernels pass 0: then the histogram takes srtt.
		 */
		histogram_add_rtt(tp, skops->args[0] ? skops->args[0] : tp->srtt_us >> 3);
		if (!live_mode)
			record_flow((struct sock *)tp, FS_HOOK_SOCKOPS, FS_DIR_UNKNOWN, true,
				    skops->args[1] >> 3, true);
		break;
	case BPF_SOCK_OPS_RETRANS_CB:
		record_flow((struct sock *)tp, FS_HOOK_SOCKOPS, FS_DIR_UNKNOWN, false, 0, true);
		break;
	case BPF_SOCK_OPS_STATE_CB:
		/* Runs before the kernel stores the new state: args are old and new. */
		if (skops->args[1] == TCP_CLOSE)
			on_close((struct sock *)tp, skops->args[0], true);
		break;
	}
	return 1;
}

/*
 * tcp_rcv_established variants: the same handler behind three attach points. It runs
 * for every received segment, so it leaves alone the flows whose sockops callbacks are
 * on (one field read): their callbacks already follow them (event mode: the RTT callback
 * updates them on every ACK). In live mode it only makes sure the others have storage.
 */
static __always_inline int on_rcv_established(struct sock *sk, __u32 hook, bool direct)
{
	/* The verifier types a BTF argument as struct sock: cast it to reach tcp_sock fields. */
	struct tcp_sock *tp = direct ? bpf_skc_to_tcp_sock(sk) : (struct tcp_sock *)sk;

	if (!tp)
		return 0;
	if (FIELD(direct, tp, bpf_sock_ops_cb_flags) & BPF_SOCK_OPS_STATE_CB_FLAG)
		return 0;
	record_flow((struct sock *)tp, hook, FS_DIR_UNKNOWN, true, 0, direct);
	return 0;
}

SEC("fentry/tcp_rcv_established")
int BPF_PROG(flowstat_rcv_fentry, struct sock *sk, struct sk_buff *skb)
{
	return on_rcv_established(sk, FS_HOOK_RCV_FENTRY, true);
}

SEC("tp_btf/tcp_probe")
int BPF_PROG(flowstat_rcv_tp_btf, struct sock *sk, struct sk_buff *skb)
{
	return on_rcv_established(sk, FS_HOOK_RCV_TP_BTF, true);
}

/* Raw tracepoint: needs neither BTF typing of the hook nor tracefs; reads go through probes. */
SEC("raw_tp/tcp_probe")
int BPF_PROG(flowstat_rcv_raw_tp, struct sock *sk, struct sk_buff *skb)
{
	return on_rcv_established(sk, FS_HOOK_RCV_RAW_TP, false);
}

SEC("tracepoint/tcp/tcp_probe")
int flowstat_rcv_tracepoint(struct trace_event_raw_tcp_probe *ctx)
{
	return on_rcv_established((struct sock *)ctx->skaddr, FS_HOOK_RCV_TRACEPOINT, false);
}

/*
 * One segment sent again, anywhere on the host (the tracepoint fires in every network
 * namespace, for every socket, tracked or not). Counted by kind, in segments
 * (tcp_skb_pcount), at the event: nothing between scrapes is missed. The kind comes from the
 * socket's state at that moment (net/ipv4/tcp_timer.c, tcp_output.c on 6.1 to 6.18):
 *   rto         icsk_ca_state is Loss: tcp_retransmit_timer() entered it before resending the
 *               head, and the slow-start retransmissions that follow stay in it. The timer
 *               handler clears icsk_pending before calling tcp_retransmit_timer(), which
 *               re-arms it only after this retransmission: Loss with nothing pending is the
 *               timer's own retransmission, i.e. one RTO expiry.
 *   loss_probe  the loss-probe timer is what is pending (tcp_write_timer_handler() leaves it
 *               set while tcp_send_loss_probe() runs), in Open or CWR, the only states
 *               tcp_schedule_loss_probe() arms it in; an ACK that starts recovery with the
 *               probe timer still armed has left Open before it retransmits.
 *   fast        everything else: SACK/dupack/RACK recovery (Recovery, Disorder, CWR, Open).
 * Read through probes in both variants: retransmits are rare next to ACKs, and bitfields
 * and skb->cb are simplest that way.
 */
static __always_inline int on_retransmit(struct sock *sk, struct sk_buff *skb)
{
	struct inet_connection_sock *icsk = (struct inet_connection_sock *)sk;
	struct tcp_skb_cb *cb = (struct tcp_skb_cb *)&skb->cb;
	__u8 ca_state = BPF_CORE_READ_BITFIELD_PROBED(icsk, icsk_ca_state);
	__u8 pending = BPF_CORE_READ(icsk, icsk_pending);
	__u64 segments = BPF_CORE_READ(cb, tcp_gso_segs);

	if (!segments)
		segments = 1;
	if (ca_state == TCP_CA_Loss) {
		count_n(FS_CTR_RETRANS_RTO, segments);
		if (!pending)
			count(FS_CTR_RTO_TIMEOUTS);
	} else if (pending == ICSK_TIME_LOSS_PROBE && (ca_state == TCP_CA_Open || ca_state == TCP_CA_CWR)) {
		count_n(FS_CTR_RETRANS_LOSS_PROBE, segments);
	} else {
		count_n(FS_CTR_RETRANS_FAST, segments);
	}
	return 0;
}

SEC("tp_btf/tcp_retransmit_skb")
int flowstat_retrans_tp_btf(__u64 *ctx)
{
	/* A failed attempt (recent kernels) sent nothing; the kernel counts it in TCPRetransFail. */
	if (retransmit_reports_errors && (int)ctx[2] != 0)
		return 0;
	return on_retransmit((struct sock *)ctx[0], (struct sk_buff *)ctx[1]);
}

SEC("raw_tp/tcp_retransmit_skb")
int flowstat_retrans_raw_tp(__u64 *ctx)
{
	if (retransmit_reports_errors && (int)ctx[2] != 0)
		return 0;
	return on_retransmit((struct sock *)ctx[0], (struct sk_buff *)ctx[1]);
}

/* connect() and listen() move a socket to SYN_SENT and LISTEN in the caller's context. */
static __always_inline void record_owner(struct sock *sk)
{
	struct fs_owner *owner = bpf_sk_storage_get(&owners, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);

	if (!owner)
		return;
	owner->pid = bpf_get_current_pid_tgid() >> 32;
	/* The process's name, not the calling thread's (bpf_get_current_comm): "nginx", not "NIO-ELT-1-#1". */
	BPF_CORE_READ_STR_INTO(&owner->comm, (struct task_struct *)bpf_get_current_task(), group_leader,
			       comm);
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(flowstat_state_tp_btf, struct sock *sk, int oldstate, int newstate)
{
	/* NULL unless a full TCP socket (SCTP changes state through here too). */
	struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);

	if (!tp)
		return 0;
	if (newstate == TCP_SYN_SENT || newstate == TCP_LISTEN)
		record_owner((struct sock *)tp);
	else
		on_state_change((struct sock *)tp, oldstate, newstate, true);
	return 0;
}

/* No typed socket: no owners (storage), only closes of flows sockops does not follow. */
SEC("raw_tp/inet_sock_set_state")
int BPF_PROG(flowstat_state_raw_tp, struct sock *sk, int oldstate, int newstate)
{
	/* sk_protocol was a bitfield before Linux 5.6: the probed bitfield read fits both layouts. */
	if (BPF_CORE_READ_BITFIELD_PROBED(sk, sk_protocol) == IPPROTO_TCP)
		on_state_change(sk, oldstate, newstate, false);
	return 0;
}

SEC("tracepoint/sock/inet_sock_set_state")
int flowstat_state_tracepoint(struct trace_event_raw_inet_sock_set_state *ctx)
{
	if (ctx->protocol == IPPROTO_TCP)
		on_state_change((struct sock *)ctx->skaddr, ctx->oldstate, ctx->newstate, false);
	return 0;
}

SEC("iter/tcp")
int flowstat_iter_tcp(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;
	struct tcp_sock *tp;
	__u8 state;

	if (!skc)
		return 0;
	/* NULL for request and time-wait minisockets, which have no tcp_sock. */
	tp = bpf_skc_to_tcp_sock(skc);
	if (!tp)
		return 0;
	/* Listeners are not flows; a closed socket's entry is already gone. */
	state = skc->skc_state;
	if (state == TCP_LISTEN || state == TCP_CLOSE)
		return 0;
	record_flow((struct sock *)tp, FS_HOOK_ITER_TCP, FS_DIR_UNKNOWN, false, 0, true);
	return 0;
}

/*
 * The refresh before a snapshot: visits every socket with storage in "owners", i.e. every
 * socket flowstat tracks, in all network namespaces at once, and rewrites its entry from
 * its current state. Cheaper than iter/tcp, which walks every TCP socket of one namespace
 * (listeners, time-wait, empty hash buckets) and locks each; kernels before 5.9 lack it
 * and refresh with iter/tcp.
 */
SEC("iter/bpf_sk_storage_map")
int flowstat_iter_owned(struct bpf_iter__bpf_sk_storage_map *ctx)
{
	struct sock *sk = ctx->sk;
	struct tcp_sock *tp;
	__u8 state;

	if (!sk)
		return 0;
	tp = bpf_skc_to_tcp_sock(sk);
	if (!tp)
		return 0;
	state = ((struct sock *)tp)->__sk_common.skc_state;
	if (state == TCP_LISTEN || state == TCP_CLOSE)
		return 0;
	record_flow((struct sock *)tp, FS_HOOK_ITER_OWNED, FS_DIR_UNKNOWN, false, 0, true);
	return 0;
}

/*
 * Fills one snapshot record: the flow's key, its socket's state now, and what its storage
 * knows. Not for closing sockets (the caller filters them): the local port is read from
 * skc_num. False when the socket has no key (not a flow).
 */
static __always_inline bool fill_snapshot_record(struct tcp_sock *tp, struct fs_owner *info,
						 struct fs_flow_record *record)
{
	if (!flow_key_of_socket((struct sock *)tp, &record->key, true, true))
		return false;
	record->_pad = 0;
	__builtin_memset(&record->stats, 0, sizeof(record->stats));
	read_tcp_state(tp, &record->stats, true, info->first_seen_jiffies, snapshot_lean);
	record->stats.first_seen_ns = info->first_seen_ns;
	/* One clock read per snapshot, not per flow; user space zeroes it before each. */
	if (!snapshot_time_ns)
		snapshot_time_ns = bpf_ktime_get_ns();
	record->stats.last_update_ns = snapshot_time_ns;
	record->stats.direction = info->direction;
	record->stats.pid = info->pid;
	__builtin_memcpy(record->stats.comm, info->comm, sizeof(record->stats.comm));
	record->stats.cgroup_id = socket_cgroup_id((struct sock *)tp, true);
	return true;
}

/* Appends one flow to the snapshot array (the storage-map snapshot). */
static __always_inline void write_snapshot_record(struct tcp_sock *tp, struct fs_owner *info)
{
	struct fs_flow_record *record;
	/* One reader runs the iterator at a time: a plain counter is enough. */
	__u32 slot = snapshot_count;

	record = bpf_map_lookup_elem(&snapshot, &slot);
	if (!record) {
		snapshot_missed++;
		return;
	}
	if (fill_snapshot_record(tp, info, record))
		snapshot_count = slot + 1;
}

/*
 * Live mode's snapshot, in one pass: visits every socket flowstat tracks (in every
 * namespace) and writes one fs_flow_record from the socket's state now and its storage,
 * so user space reads live, exact values without a map to rewrite and copy.
 */
SEC("iter/bpf_sk_storage_map")
int flowstat_iter_snapshot(struct bpf_iter__bpf_sk_storage_map *ctx)
{
	struct fs_owner *info = ctx->value;
	struct sock *sk = ctx->sk;
	struct tcp_sock *tp;
	__u8 state;

	if (!sk || !info)
		return 0;
	tp = bpf_skc_to_tcp_sock(sk);
	if (!tp)
		return 0;
	/* Listeners and sockets on their way to or from a flow carry storage too. */
	state = ((struct sock *)tp)->__sk_common.skc_state;
	if (state == TCP_LISTEN || state == TCP_CLOSE || state == TCP_SYN_SENT || !info->first_seen_ns)
		return 0;
	write_snapshot_record(tp, info);
	return 0;
}

/*
 * Live mode's snapshot where the kernel refuses storage-map iterators: run by user space
 * once in each network namespace that holds tracked flows (iter/tcp walks the namespace
 * of the process that creates it). Established flows it finds without storage (sockops
 * did not see them open, no packet arrived since start-up) get it here.
 */
SEC("iter/tcp")
int flowstat_iter_tcp_snapshot(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;
	struct fs_flow_record *record;
	struct fs_owner *info;
	__u32 zero = 0;
	struct tcp_sock *tp;
	__u8 state;

	if (!skc)
		return 0;
	/* NULL for request and time-wait minisockets, which have no tcp_sock. */
	tp = bpf_skc_to_tcp_sock(skc);
	if (!tp)
		return 0;
	state = skc->skc_state;
	if (state == TCP_LISTEN || state == TCP_CLOSE || state == TCP_SYN_SENT)
		return 0;
	info = track_socket((struct sock *)tp, FS_DIR_UNKNOWN);
	if (!info)
		return 0;
	record = bpf_map_lookup_elem(&record_scratch, &zero);
	/*
	 * A record that does not fit the 32 KiB seq buffer is dropped whole and this socket is
	 * shown again at the next read(): nothing is lost or cut.
	 */
	if (record && fill_snapshot_record(tp, info, record))
		bpf_seq_write(ctx->meta->seq, record, sizeof(*record));
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
