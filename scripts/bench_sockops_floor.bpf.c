// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Floors of a sockops-based agent, for `make bench`; churn with each attached shows what the
 * kernel charges for it, next to flowstat's figure:
 *
 *  - bench_sockops_floor: no work but turning on the callbacks flowstat asks for (state
 *    changes, RTT samples): the floor of any sockops-based agent.
 *  - bench_sockops_state: also keeps a 40-byte record per socket (flowstat's `struct
 *    fs_owner` is 40 bytes) in socket storage from the open to the close, where it reads it
 *    back: the floor of any agent that knows a flow's age when it closes. flowstat creates
 *    the same storage, once per socket, as its record of the owner.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define TCP_CLOSE 7

struct socket_record {
	__u64 opened_ns;
	__u64 lifetime_ns;
	__u8 pad[24];
};

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct socket_record);
} bench_records SEC(".maps");

static __always_inline void turn_on_callbacks(struct bpf_sock_ops *skops)
{
	bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_STATE_CB_FLAG |
						 BPF_SOCK_OPS_RTT_CB_FLAG);
}

SEC("sockops")
int bench_sockops_floor(struct bpf_sock_ops *skops)
{
	if (skops->op == BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB ||
	    skops->op == BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB)
		turn_on_callbacks(skops);
	return 1;
}

SEC("sockops")
int bench_sockops_state(struct bpf_sock_ops *skops)
{
	struct socket_record *record;
	struct bpf_sock *sk = skops->sk;

	if (!sk)
		return 1;
	if (skops->op == BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB ||
	    skops->op == BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB) {
		turn_on_callbacks(skops);
		record = bpf_sk_storage_get(&bench_records, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
		if (record)
			record->opened_ns = bpf_ktime_get_ns();
	} else if (skops->op == BPF_SOCK_OPS_STATE_CB && skops->args[1] == TCP_CLOSE) {
		record = bpf_sk_storage_get(&bench_records, sk, 0, 0);
		if (record)
			record->lifetime_ns = bpf_ktime_get_ns() - record->opened_ns;
	}
	return 1;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
