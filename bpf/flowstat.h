/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * flowstat.h: the records shared by the kernel program (flowstat.bpf.c) and
 * user space (Sources/CFlowStat). Fixed-width __u* types and explicit padding
 * only, so both compilers lay them out identically; the size asserts catch drift.
 */
#ifndef FLOWSTAT_H
#define FLOWSTAT_H

#include <linux/types.h>

#define FS_COMM_LEN 16

/* Direction of a flow, from the sockops callback that saw it established. */
enum fs_direction {
	FS_DIR_UNKNOWN = 0, /* existed before flowstat attached, or seen only by tcp_probe */
	FS_DIR_ACTIVE = 1,  /* this host connected */
	FS_DIR_PASSIVE = 2, /* this host accepted */
};

/* Hook variants; a bit each in fs_flow_stats.seen_by and in the attach report. */
enum fs_hook {
	FS_HOOK_SOCKOPS = 1 << 0,	     /* cgroup sockops on the cgroup v2 root */
	FS_HOOK_RCV_FENTRY = 1 << 1,	     /* fentry/tcp_rcv_established */
	FS_HOOK_RCV_TP_BTF = 1 << 2,	     /* tp_btf/tcp_probe */
	FS_HOOK_RCV_TRACEPOINT = 1 << 3,     /* tracepoint/tcp/tcp_probe */
	FS_HOOK_STATE_TRACEPOINT = 1 << 4,   /* tracepoint/sock/inet_sock_set_state */
	FS_HOOK_ITER_TCP = 1 << 5,	     /* iter/tcp, run once to seed existing flows */
	FS_HOOK_STATE_TP_BTF = 1 << 6,	     /* tp_btf/inet_sock_set_state */
	FS_HOOK_ITER_OWNED = 1 << 7,	     /* iter/bpf_sk_storage_map over "owners": the refresh */
	FS_HOOK_ITER_SNAPSHOT = 1 << 8,	     /* iter/bpf_sk_storage_map over "owners": the snapshot */
	FS_HOOK_RCV_RAW_TP = 1 << 9,	     /* raw_tp/tcp_probe: no BTF typing, no tracefs */
	FS_HOOK_STATE_RAW_TP = 1 << 10,	     /* raw_tp/inet_sock_set_state */
	FS_HOOK_ITER_TCP_SNAPSHOT = 1 << 11, /* iter/tcp, once per network namespace: the snapshot */
	FS_HOOK_RETRANS_TP_BTF = 1 << 12,    /* tp_btf/tcp_retransmit_skb: host-wide retransmits */
	FS_HOOK_RETRANS_RAW_TP = 1 << 13,    /* raw_tp/tcp_retransmit_skb */
};

/* How snapshots are taken; user space picks the first the kernel allows. */
enum fs_mode {
	FS_MODE_EVENT = 0,	       /* the LRU map "flows", rewritten by events, copied in batches */
	FS_MODE_LIVE_STORAGE_ITER = 1, /* one iter/bpf_sk_storage_map run over every tracked socket */
	FS_MODE_LIVE_TCP_ITER = 2,     /* one iter/tcp run per network namespace with tracked flows */
};

/* Per-CPU event counters (map "counters"); user space sums the CPUs. */
enum fs_counter {
	FS_CTR_UPDATES = 0,	/* flow entries written */
	FS_CTR_UPDATES_SKIPPED, /* per-packet updates skipped by min_update_interval_ns */
	FS_CTR_INSERTS_FAILED,	/* new flows the map refused */
	FS_CTR_ENTRIES_REMOVED, /* entries removed because their socket closed */
	FS_CTR_INSERTS,		/* entries created; minus removals and live entries: LRU evictions */
	FS_CTR_OPENED_ACTIVE,	/* flows established by connect(): SYN_SENT -> ESTABLISHED */
	FS_CTR_OPENED_PASSIVE,	/* flows established by accept(): SYN_RECV -> ESTABLISHED */
	FS_CTR_CLOSED,		/* established flows that reached CLOSE */
	FS_CTR_EVENTS_LOST,	/* closed-flow records the ring buffer had no room for */
	FS_CTR_CLOSED_UNTIMED,	/* closed flows whose opening flowstat did not see: no duration */
	/*
	 * Segments retransmitted host-wide (every namespace), by kind, as tcp_retransmit_skb
	 * reports them sent: their sum is TcpRetransSegs minus TCPRetransFail and minus SYN-ACKs
	 * resent for connections not yet accepted (tcp_retransmit_synack).
	 */
	FS_CTR_RETRANS_FAST,	   /* not in Loss and not a tail-loss probe: fast/early/RACK recovery */
	FS_CTR_RETRANS_RTO,	   /* in TCP_CA_Loss: the RTO's retransmission and the slow start after it */
	FS_CTR_RETRANS_LOSS_PROBE, /* a tail-loss probe retransmitting the last segment */
	FS_CTR_RTO_TIMEOUTS,	   /* retransmission timer expiries: the first segment each sent */
	FS_CTR_MAX,
};

/*
 * Which optional fields of fs_flow_stats the source could fill (fs_flow_stats.has): a kernel
 * that lacks a field, or a value flowstat cannot convert, leaves its bit clear and user space
 * leaves the series out rather than export 0.
 */
enum fs_has {
	FS_HAS_TIME_LIMITS = 1 << 0, /* busy/rwnd_limited/sndbuf_limited_us: chrono fields and HZ known */
	FS_HAS_LOSS_DETAIL =
		1 << 1,		    /* reord_seen, dsack_dups, rcv_ooopack, snd_wnd (tcp_info of Linux 5.4) */
	FS_HAS_RTO_TOTALS = 1 << 2, /* total_rto, total_rto_recoveries, total_rto_time_ms (Linux 6.7) */
	/*
	 * delivery_rate_app_limited, probes, notsent_bytes, rcv_rtt_us, lost_out, retrans_out: read
	 * unless the snapshot was lean (LOSS_DETAIL and RTO_TOTALS only with it).
	 */
	FS_HAS_DETAIL = 1 << 3,
};

#define FS_RTT_BOUNDS_MAX 32
#define FS_PEER_GROUPS_MAX 16 /* RTT peer groups (map "peer_group_rtt_hist") */
#define FS_HIST_BOUNDS_MAX 32

/*
 * RTT histogram, the one value of the per-CPU array "rtt_hist": buckets[i] counts the
 * samples <= bound i and above bound i-1; buckets[bound_count] those above the last bound
 * (+Inf). One struct, so a sample costs one map lookup.
 */
struct fs_rtt_histogram {
	__u64 buckets[FS_RTT_BOUNDS_MAX + 1];
	__u64 sum_us; /* sum of all samples, microseconds */
};

/*
 * Key of the LPM trie "peer_networks": a network of an RTT peer group, in the 128-bit space
 * of fs_flow_key (an IPv4 network a.b.c.d/n is ::ffff:a.b.c.d/96+n). The value is the
 * group's 1-based index.
 */
struct fs_peer_network {
	__u32 prefix_len;
	__u8 addr[16];
};

/*
 * Histograms of closed flows, the one value of the per-CPU array "closed_hist": buckets
 * as in fs_rtt_histogram. Counted in the kernel, so they stay exact when the ring buffer
 * of closed-flow records overflows.
 */
struct fs_closed_histograms {
	__u64 duration_buckets[FS_HIST_BOUNDS_MAX + 1]; /* lifetime, of flows seen opening */
	__u64 duration_sum_ns;
	__u64 bytes_buckets[FS_HIST_BOUNDS_MAX + 1]; /* bytes acked + bytes received */
	__u64 bytes_sum;
};

/*
 * What flowstat keeps with each socket it tracks, in socket storage ("owners"): who owns it
 * (the process that called connect() or listen() on it; cloned from a listener to the flows
 * it accepts), and, in live mode, when it was established and in which direction: there the
 * snapshot reads everything else from the socket itself and the hash map is not used.
 */
struct fs_owner {
	__u64 first_seen_ns; /* live mode: established, or seeded; 0 before */
	__u32 pid;	     /* thread group id; 0 when unknown */
	__u8 direction;	     /* enum fs_direction; set where sockops sees the flow established */
	__u8 peer_group;     /* 1 + index of the RTT peer group the remote address is in; 0: none */
	__u16 service_slot;  /* 1 + index of its service port's RTT histogram; 0: none looked up */
	char comm[FS_COMM_LEN];
	/*
	 * bpf_jiffies64() when first seen established, set with first_seen_ns (event mode too):
	 * the application time is counted in the jiffies the busy time is counted in.
	 */
	__u64 first_seen_jiffies;
};

/*
 * Map key: one TCP socket. Addresses are 16 bytes; an IPv4 address is stored
 * IPv4-mapped (::ffff:a.b.c.d) so one key type serves both families.
 * "Local" is this host's end of the socket, as ss prints it first.
 */
struct fs_flow_key {
	__u8 saddr[16]; /* local address */
	__u8 daddr[16]; /* remote address */
	__u32 netns;	/* inode number of the socket's network namespace */
	__u16 sport;	/* local port, host byte order */
	__u16 dport;	/* remote port, host byte order */
	__u16 family;	/* AF_INET or AF_INET6: the socket's family */
	__u16 _pad;
};

/* Map value: the tcp_info-like state of one flow at its last update. */
struct fs_flow_stats {
	__u64 first_seen_ns; /* bpf_ktime_get_ns() (CLOCK_MONOTONIC) */
	__u64 last_update_ns;
	__u64 bytes_acked;
	__u64 bytes_received;
	__u32 srtt_us;	    /* smoothed RTT, as tcpi_rtt */
	__u32 rttvar_us;    /* as tcpi_rttvar */
	__u32 min_rtt_us;   /* as tcpi_min_rtt */
	__u32 snd_cwnd;	    /* segments */
	__u32 snd_ssthresh; /* segments */
	__u32 data_segs_in;
	__u32 data_segs_out;
	__u32 total_retrans;
	__u32 rate_delivered; /* delivery rate = rate_delivered * mss_cache / rate_interval_us */
	__u32 rate_interval_us;
	__u32 mss_cache;
	__u32 pid;	/* 0 when unknown */
	__u8 state;	/* TCP state number, as in include/net/tcp_states.h */
	__u8 direction; /* enum fs_direction */
	__u8 seen_by;	/* enum fs_hook bits (the first eight) of the hooks that updated this entry */
	__u8 has;	/* enum fs_has bits: which optional fields below are filled */
	__u8 delivery_rate_app_limited; /* 1: the last delivery rate sample was app-limited */
	__u8 probes;			/* zero-window probes sent, unanswered: as tcpi_probes */
	__u8 _pad[2];
	char comm[FS_COMM_LEN]; /* empty when unknown */
	__u64 cgroup_id;	/* the socket's cgroup v2 id (its directory's inode); 0 when unknown */
	/* Where the flow's time went, as tcpi_busy_time, tcpi_rwnd_limited, tcpi_sndbuf_limited. */
	__u64 busy_us;		    /* sending data, including the two below (FS_HAS_TIME_LIMITS) */
	__u64 rwnd_limited_us;	    /* limited by the peer's receive window */
	__u64 sndbuf_limited_us;    /* limited by the send buffer */
	__u32 notsent_bytes;	    /* written but not yet sent: write_seq - snd_nxt, as tcpi_notsent_bytes */
	__u32 snd_wnd;		    /* the peer's advertised window, bytes (FS_HAS_LOSS_DETAIL) */
	__u32 rcv_rtt_us;	    /* receive-side RTT estimate, as tcpi_rcv_rtt */
	__u32 lost_out;		    /* segments presumed lost now, as tcpi_lost */
	__u32 retrans_out;	    /* retransmitted segments in flight, as tcpi_retrans */
	__u32 reord_seen;	    /* reordering events (FS_HAS_LOSS_DETAIL) */
	__u32 dsack_dups;	    /* segments the peer reported received twice (FS_HAS_LOSS_DETAIL) */
	__u32 rcv_ooopack;	    /* out-of-order packets received (FS_HAS_LOSS_DETAIL) */
	__u32 total_rto_time_ms;    /* time in RTO recovery, ms (FS_HAS_RTO_TOTALS) */
	__u16 total_rto;	    /* RTO timeouts (FS_HAS_RTO_TOTALS) */
	__u16 total_rto_recoveries; /* RTO recoveries (FS_HAS_RTO_TOTALS) */
	/*
	 * Time not busy sending since first seen (FS_HAS_TIME_LIMITS): the age in jiffies less
	 * the busy jiffies, both to the same jiffy, so it never falls between two reads; 0 when
	 * the flow's first jiffy is unknown.
	 */
	__u64 application_us;
};

/*
 * One closed flow, pushed to the ring buffer "closed_flows" when its socket reaches
 * CLOSE: the final tcp_info-like state read from the socket, with first_seen_ns,
 * direction, pid and comm from the flow's map entry (0 / empty when it had none).
 */
struct fs_closed_flow {
	struct fs_flow_key key;
	__u32 _pad;
	struct fs_flow_stats stats;
	__u64 closed_ns; /* bpf_ktime_get_ns() at CLOSE */
};

/*
 * One live flow as the snapshot iterator writes it: its key, its socket's state now, and
 * first_seen_ns, direction and owner from its socket storage.
 */
struct fs_flow_record {
	struct fs_flow_key key;
	__u32 _pad;
	struct fs_flow_stats stats;
};

_Static_assert(sizeof(struct fs_flow_record) == 232, "fs_flow_record layout changed");
_Static_assert(sizeof(struct fs_flow_key) == 44, "fs_flow_key layout changed");
_Static_assert(sizeof(struct fs_flow_stats) == 184, "fs_flow_stats layout changed");
_Static_assert(sizeof(struct fs_rtt_histogram) == 272, "fs_rtt_histogram layout changed");
_Static_assert(sizeof(struct fs_closed_histograms) == 544, "fs_closed_histograms layout changed");
_Static_assert(sizeof(struct fs_closed_flow) == 240, "fs_closed_flow layout changed");
_Static_assert(sizeof(struct fs_owner) == 40, "fs_owner layout changed");
_Static_assert(sizeof(struct fs_peer_network) == 20, "fs_peer_network layout changed");

#endif /* FLOWSTAT_H */
