/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The few kernel-internal types flowstat.bpf.c reads, declared by hand instead
 * of pinning a multi-megabyte vmlinux.h. Only the members we touch are listed:
 * preserve_access_index makes every access a CO-RE relocation, so libbpf finds
 * each member by name in the running kernel's BTF (/sys/kernel/btf/vmlinux),
 * whatever its offset there. Names and member types must match the kernel's.
 */
#ifndef FLOWSTAT_KERNEL_TYPES_BPF_H
#define FLOWSTAT_KERNEL_TYPES_BPF_H

#include <linux/types.h>

#define __core __attribute__((preserve_access_index))

struct ns_common {
	unsigned int inum;
} __core;

struct net {
	struct ns_common ns;
} __core;

typedef struct {
	struct net *net;
} __core possible_net_t;

struct in6_addr {
	union {
		__u8 u6_addr8[16];
	} in6_u;
} __core;

struct sock_common {
	__be32 skc_daddr; /* in an anonymous union in the kernel: libbpf looks inside */
	__be32 skc_rcv_saddr;
	__be16 skc_dport;
	__u16 skc_num;
	unsigned short skc_family;
	unsigned char skc_state;
	possible_net_t skc_net;
	struct in6_addr skc_v6_daddr;
	struct in6_addr skc_v6_rcv_saddr;
} __core;

/*
 * A socket's cgroup v2 (the creating process's, a listener's for the flows it accepts):
 * sock_cgroup_data holds the cgroup pointer since Linux 5.15 (a tagged u64 before, which
 * flowstat leaves alone: bpf_core_field_exists() says which). A cgroup's id is its kernfs
 * node id, the inode number of its directory on 64-bit kernels.
 */
struct kernfs_node {
	__u64 id;
} __core;

struct cgroup {
	struct kernfs_node *kn;
} __core;

struct sock_cgroup_data {
	struct cgroup *cgroup;
} __core;

struct sock {
	struct sock_common __sk_common;
	__u16 sk_protocol;
	struct sock_cgroup_data sk_cgrp_data;
} __core;

/* inet_sport outlives skc_num, which the kernel zeroes when a closing socket releases its port. */
struct inet_sock {
	__be16 inet_sport;
} __core;

struct minmax_sample {
	__u32 t;
	__u32 v;
} __core;

struct minmax {
	struct minmax_sample s[3];
} __core;

/* The receiver's RTT estimate (tcpi_rcv_rtt = rtt_us >> 3). */
struct tcp_rcv_rtt_est {
	__u32 rtt_us;
} __core;

/*
 * chrono_type and rate_app_limited are bitfields on some kernels and chrono_type a plain byte
 * on others (6.18): read both with BPF_CORE_READ_BITFIELD*, which relocates either layout.
 * total_rto* and rto_stamp exist since Linux 6.7: read behind bpf_core_field_exists().
 */
struct tcp_sock {
	__u64 bytes_received;
	__u64 bytes_acked;
	__u32 segs_in;
	__u32 data_segs_in;
	__u32 segs_out;
	__u32 data_segs_out;
	__u32 srtt_us; /* smoothed RTT << 3, in usec */
	__u32 mdev_us; /* medium deviation << 2 */
	struct minmax rtt_min;
	__u32 snd_cwnd;
	__u32 snd_ssthresh;
	__u32 total_retrans;
	__u32 rate_delivered;
	__u32 rate_interval_us;
	__u32 mss_cache;
	__u8 bpf_sock_ops_cb_flags; /* BPF_SOCK_OPS_*_CB_FLAG set by sockops */
	__u8 chrono_type : 2;
	__u8 rate_app_limited : 1;
	__u32 chrono_start;   /* jiffies (tcp_jiffies32) when chrono_type began */
	__u32 chrono_stat[3]; /* jiffies busy, rwnd-limited, sndbuf-limited (enum tcp_chrono - 1) */
	__u32 write_seq;
	__u32 snd_nxt;
	__u32 snd_wnd;
	struct tcp_rcv_rtt_est rcv_rtt_est;
	__u32 lost_out;
	__u32 retrans_out;
	__u32 reord_seen;
	__u32 dsack_dups;
	__u32 rcv_ooopack;
	__u32 rto_stamp;
	__u16 total_rto;
	__u16 total_rto_recoveries;
	__u32 total_rto_time;
} __core;

/*
 * The socket a tcp_sock starts with, so a socket pointer is one to it too: the zero-window
 * probe count (tcpi_probes), and what the retransmit tracepoint classifies by: the
 * congestion-avoidance state (TCP_CA_*, a bitfield) and which retransmit-timer event is armed
 * (ICSK_TIME_*).
 */
struct inet_connection_sock {
	__u8 icsk_ca_state : 5;
	__u8 icsk_pending;
	__u8 icsk_probes_out;
} __core;

/* TCP's control block in skb->cb: tcp_gso_segs is tcp_skb_pcount(). */
struct tcp_skb_cb {
	__u16 tcp_gso_segs;
} __core;

struct sk_buff {
	char cb[48];
} __core;

/* The process name is the thread-group leader's comm: a thread's own name is often a pool's. */
struct task_struct {
	struct task_struct *group_leader;
	char comm[16];
} __core;

struct seq_file;

struct bpf_iter_meta {
	struct seq_file *seq;
} __core;

struct bpf_iter__tcp {
	struct bpf_iter_meta *meta;
	struct sock_common *sk_common;
} __core;

struct bpf_iter__bpf_sk_storage_map {
	struct bpf_iter_meta *meta;
	struct sock *sk;
	void *value;
} __core;

/* Classic tracepoint records: the format files under /sys/kernel/tracing/events. */
struct trace_event_raw_tcp_probe {
	const void *skaddr;
} __core;

struct trace_event_raw_inet_sock_set_state {
	const void *skaddr;
	int oldstate;
	int newstate;
	__u16 protocol;
} __core;

#endif /* FLOWSTAT_KERNEL_TYPES_BPF_H */
