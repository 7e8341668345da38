// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * The floor of any sockops-based agent, for `make bench`: a sockops program that does no
 * work but turn on the callbacks flowstat asks for (state changes, RTT samples). Churn
 * with it attached shows what the kernel's callbacks alone cost, next to flowstat's figure.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("sockops")
int bench_sockops_floor(struct bpf_sock_ops *skops)
{
	if (skops->op == BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB ||
	    skops->op == BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB)
		bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_STATE_CB_FLAG |
							 BPF_SOCK_OPS_RTT_CB_FLAG);
	return 1;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
