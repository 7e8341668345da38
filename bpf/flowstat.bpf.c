// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * flowstat.bpf.c: keeps one entry per live TCP socket in the LRU map "flows",
 * updated from the kernel's own tcp_sock on every RTT sample and received
 * segment, removed when the socket closes.
 *
 * Hooks (user space picks the variants the running kernel allows):
 *   sockops (cgroup v2 root)   established -> enable RTT/STATE/RETRANS callbacks;
 *                              RTT and RETRANS callbacks -> update; STATE to CLOSE -> remove
 *   tcp_rcv_established        flows sockops cannot see (opened before flowstat
 *                              attached): fentry, else tp_btf/tcp_probe, else
 *                              tracepoint/tcp/tcp_probe; all three share one handler
 *   sock/inet_sock_set_state   removes closed flows whatever opened them
 *   iter/tcp                   run at start-up to seed flows that already exist, and
 *                              before each snapshot to make idle flows exact: the
 *                              event hooks see a socket before the kernel finishes
 *                              processing a packet (cwnd grows after the RTT callback)
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

/* Runtime knobs, set by user space between open and load. */
const volatile __u64 min_update_interval_ns = 0;	/* 0: update on every event */
const volatile __u32 rtt_bound_count = 0;		/* 0: no RTT histogram */
const volatile __u64 rtt_bounds_ns[FS_RTT_BOUNDS_MAX] = {};	/* increasing upper bounds */
const volatile __u32 rtt_sample_every = 1;		/* count 1 in N RTT samples */

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);	/* user space resizes before load */
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

static __always_inline void count(__u32 counter)
{
	__u64 *value = bpf_map_lookup_elem(&counters, &counter);

	if (value)
		*value += 1;	/* per-CPU slot: no other writer */
}

/* Adds one RTT sample to the histogram: a binary search over the configured bounds. */
static __always_inline void histogram_add_rtt(__u32 rtt_us)
{
	__u64 rtt_ns = (__u64)rtt_us * 1000;
	__u32 low = 0, high = rtt_bound_count, zero = 0;
	struct fs_rtt_histogram *histogram;

	if (!rtt_bound_count || !rtt_us)
		return;
	if (rtt_sample_every > 1 && bpf_get_prandom_u32() % rtt_sample_every)
		return;
	for (int step = 0; step < 6 && low < high; step++) {	/* 2^6 > FS_RTT_BOUNDS_MAX */
		__u32 middle = (low + high) / 2;

		if (middle >= FS_RTT_BOUNDS_MAX)
			break;
		if (rtt_ns <= rtt_bounds_ns[middle])
			high = middle;
		else
			low = middle + 1;
	}
	histogram = bpf_map_lookup_elem(&rtt_hist, &zero);
	if (!histogram || low > FS_RTT_BOUNDS_MAX)
		return;
	histogram->buckets[low] += 1;	/* per-CPU value: no other writer */
	histogram->sum_us += rtt_us;
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

/* Fills key from the socket; false for sockets that are not IPv4/IPv6. */
static __always_inline bool flow_key_of(struct sock *sk, struct fs_flow_key *key, bool direct)
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
	key->sport = FIELD(direct, sk, __sk_common.skc_num);
	key->dport = bpf_ntohs(FIELD(direct, sk, __sk_common.skc_dport));
	key->netns = direct ? sk->__sk_common.skc_net.net->ns.inum
			    : BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum);
	return true;
}

/* Copies the tcp_info-like fields, with the same derivations tcp_get_info() makes. */
static __always_inline void read_tcp_state(struct tcp_sock *tp, struct fs_flow_stats *s, bool direct)
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
}

/*
 * The one update path every hook shares. rate_limited events (per-packet and
 * per-RTT-sample ones) are skipped while the entry is younger than
 * min_update_interval_ns; lifecycle events always write. new_srtt_us, when not
 * 0, is the smoothed RTT the kernel is about to store (see the RTT callback).
 */
static __always_inline void record_flow(struct sock *sk, __u8 hook, __u8 direction,
					 bool rate_limited, __u32 new_srtt_us, bool direct)
{
	struct fs_flow_key key;
	struct fs_flow_stats *entry;
	__u64 now = bpf_ktime_get_ns();

	if (!flow_key_of(sk, &key, direct))
		return;

	entry = bpf_map_lookup_elem(&flows, &key);
	if (entry) {
		if (rate_limited && min_update_interval_ns &&
		    now - entry->last_update_ns < min_update_interval_ns) {
			count(FS_CTR_UPDATES_SKIPPED);
			return;
		}
		read_tcp_state((struct tcp_sock *)sk, entry, direct);
		if (new_srtt_us)
			entry->srtt_us = new_srtt_us;
		entry->last_update_ns = now;
		entry->seen_by |= hook;
		if (direction != FS_DIR_UNKNOWN)
			entry->direction = direction;
	} else {
		struct fs_flow_stats fresh = {};

		read_tcp_state((struct tcp_sock *)sk, &fresh, direct);
		if (new_srtt_us)
			fresh.srtt_us = new_srtt_us;
		fresh.first_seen_ns = now;
		fresh.last_update_ns = now;
		fresh.seen_by = hook;
		fresh.direction = direction;
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

static __always_inline void forget_flow(struct sock *sk, bool direct)
{
	struct fs_flow_key key;

	if (flow_key_of(sk, &key, direct) && bpf_map_delete_elem(&flows, &key) == 0)
		count(FS_CTR_ENTRIES_REMOVED);
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
		bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags |
					  BPF_SOCK_OPS_RTT_CB_FLAG |
					  BPF_SOCK_OPS_STATE_CB_FLAG |
					  BPF_SOCK_OPS_RETRANS_CB_FLAG);
		record_flow((struct sock *)tp, FS_HOOK_SOCKOPS,
			    op == BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB ? FS_DIR_ACTIVE : FS_DIR_PASSIVE,
			    false, 0, true);
		break;
	case BPF_SOCK_OPS_RTT_CB:
		/*
		 * Since Linux 6.10 this runs before tcp_rtt_estimator() stores the
		 * new srtt, and passes the sample in args[0] and the new srtt (<< 3)
		 * in args[1]; older kernels pass 0: then the histogram takes srtt.
		 */
		histogram_add_rtt(skops->args[0] ? skops->args[0] : tp->srtt_us >> 3);
		record_flow((struct sock *)tp, FS_HOOK_SOCKOPS, FS_DIR_UNKNOWN, true,
			    skops->args[1] >> 3, true);
		break;
	case BPF_SOCK_OPS_RETRANS_CB:
		record_flow((struct sock *)tp, FS_HOOK_SOCKOPS, FS_DIR_UNKNOWN, false, 0, true);
		break;
	case BPF_SOCK_OPS_STATE_CB:
		if (skops->args[1] == TCP_CLOSE)
			forget_flow((struct sock *)tp, true);
		break;
	}
	return 1;
}

/*
 * tcp_rcv_established variants: the same handler behind three attach points. It runs
 * for every received segment, so it leaves alone the flows whose sockops callbacks are
 * on (one field read): their RTT callback already updates them on every ACK.
 */
static __always_inline int on_rcv_established(struct sock *sk, __u8 hook, bool direct)
{
	/* The verifier types a BTF argument as struct sock: cast it to reach tcp_sock fields. */
	struct tcp_sock *tp = direct ? bpf_skc_to_tcp_sock(sk) : (struct tcp_sock *)sk;

	if (!tp)
		return 0;
	if (FIELD(direct, tp, bpf_sock_ops_cb_flags) & BPF_SOCK_OPS_RTT_CB_FLAG)
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

SEC("tracepoint/tcp/tcp_probe")
int flowstat_rcv_tracepoint(struct trace_event_raw_tcp_probe *ctx)
{
	return on_rcv_established((struct sock *)ctx->skaddr, FS_HOOK_RCV_TRACEPOINT, false);
}

/*
 * Every TCP state change of every socket, whatever opened it: the exact count of flows
 * opened and closed (no ring buffer involved, so nothing can be lost), and removal.
 */
SEC("tracepoint/sock/inet_sock_set_state")
int flowstat_state_tracepoint(struct trace_event_raw_inet_sock_set_state *ctx)
{
	int oldstate = ctx->oldstate;

	if (ctx->protocol != IPPROTO_TCP)
		return 0;
	if (ctx->newstate == TCP_ESTABLISHED) {
		if (oldstate == TCP_SYN_SENT)
			count(FS_CTR_OPENED_ACTIVE);
		else if (oldstate == TCP_SYN_RECV)
			count(FS_CTR_OPENED_PASSIVE);
	} else if (ctx->newstate == TCP_CLOSE) {
		/* From SYN_SENT/SYN_RECV/LISTEN no flow was ever established. */
		if (oldstate != TCP_SYN_SENT && oldstate != TCP_SYN_RECV && oldstate != TCP_LISTEN &&
		    oldstate != TCP_CLOSE)
			count(FS_CTR_CLOSED);
		forget_flow((struct sock *)ctx->skaddr, false);
	}
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

char LICENSE[] SEC("license") = "Dual BSD/GPL";
