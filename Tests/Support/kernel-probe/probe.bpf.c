// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * probe.bpf.c: one minimal program per kind of hook flowstat uses, for the tests' kernel
 * probe (kernel_probe.c). The tests' expectations of which variants attach and which
 * snapshot mode runs come from loading these, not from flowstat's own object: whether a
 * kernel allows a kind of program is a fact about the kernel, and this asks it directly.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define __core __attribute__((preserve_access_index))

struct sock_common;
struct tcp_sock;
struct bpf_iter_meta {
	void *seq;
} __core;
struct bpf_iter__tcp {
	struct bpf_iter_meta *meta;
	struct sock_common *sk_common;
} __core;

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u64);
} probe_storage SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} probe_array SEC(".maps");

SEC("fentry/tcp_rcv_established")
int rcv_fentry(void *ctx)
{
	return 0;
}

SEC("tp_btf/tcp_probe")
int rcv_tp_btf(void *ctx)
{
	return 0;
}

SEC("raw_tp/tcp_probe")
int rcv_raw_tp(void *ctx)
{
	return 0;
}

/*
 * The classic tracepoints give a record, not a socket: a variant is usable only where the
 * record carries the socket's address, which tcp_probe's did not before Linux 6.x (6.1 has
 * no skaddr there). So these read the fields flowstat reads, relocated by CO-RE.
 */
struct trace_event_raw_tcp_probe {
	const void *skaddr;
} __core;

struct trace_event_raw_inet_sock_set_state {
	const void *skaddr;
	int oldstate;
	int newstate;
	__u16 protocol;
} __core;

SEC("tracepoint/tcp/tcp_probe")
int rcv_tracepoint(struct trace_event_raw_tcp_probe *ctx)
{
	return ctx->skaddr != 0;
}

SEC("tp_btf/inet_sock_set_state")
int state_tp_btf(void *ctx)
{
	return 0;
}

SEC("raw_tp/inet_sock_set_state")
int state_raw_tp(void *ctx)
{
	return 0;
}

SEC("tracepoint/sock/inet_sock_set_state")
int state_tracepoint(struct trace_event_raw_inet_sock_set_state *ctx)
{
	return ctx->skaddr && ctx->protocol == 6 && ctx->oldstate != ctx->newstate;
}

SEC("sockops")
int sockops_root(struct bpf_sock_ops *skops)
{
	return 1;
}

/* The shape of a per-namespace snapshot: socket storage from iter/tcp, written to a mapped array. */
SEC("iter/tcp")
int iter_tcp_storage(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;
	struct tcp_sock *tp;
	__u32 zero = 0;
	__u64 *slot;

	if (!skc)
		return 0;
	tp = bpf_skc_to_tcp_sock(skc);
	if (!tp || !bpf_sk_storage_get(&probe_storage, tp, 0, BPF_SK_STORAGE_GET_F_CREATE))
		return 0;
	slot = bpf_map_lookup_elem(&probe_array, &zero);
	if (slot)
		*slot += 1;
	return 0;
}

SEC("iter/bpf_sk_storage_map")
int iter_sk_storage_map(void *ctx)
{
	return 0;
}

/*
 * The retransmit witness (kernel_probe --retransmits): segments the kernel hands to BPF
 * programs at tcp_retransmit_skb, counted by a program that is not flowstat's, so a test can
 * tell segments the kernel never ran BPF for from segments flowstat lost.
 */
struct sk_buff {
	char cb[48];
} __core;

/* The head of the kernel's tcp_skb_cb (include/net/tcp.h), relocated by CO-RE. */
struct tcp_skb_cb {
	__u32 seq;
	__u32 end_seq;
	union {
		__u32 tcp_tw_isn;
		struct {
			__u16 tcp_gso_segs;
			__u16 tcp_gso_size;
		};
	};
} __core;

/* Set by the loader from the kernel's BTF: the tracepoint passes the attempt's error (6.18). */
const volatile __u32 retransmit_reports_errors = 0;
__u64 retransmitted_segments;

static __always_inline int witness(__u64 *ctx)
{
	struct sk_buff *skb = (struct sk_buff *)ctx[1];
	struct tcp_skb_cb *cb = (struct tcp_skb_cb *)__builtin_preserve_access_index(&skb->cb);
	__u16 segments = 0;

	if (retransmit_reports_errors && (int)ctx[2] != 0)
		return 0;
	bpf_probe_read_kernel(&segments, sizeof(segments),
			      __builtin_preserve_access_index(&cb->tcp_gso_segs));
	__sync_fetch_and_add(&retransmitted_segments, segments ? segments : 1);
	return 0;
}

SEC("tp_btf/tcp_retransmit_skb")
int retransmit_witness(__u64 *ctx)
{
	return witness(ctx);
}

/* Where the kernel refuses tp_btf, as flowstat falls back. */
SEC("raw_tp/tcp_retransmit_skb")
int retransmit_witness_raw(__u64 *ctx)
{
	return witness(ctx);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
