// SPDX-License-Identifier: Apache-2.0
/*
 * inet_diag.c: the fallback flow source. One NETLINK_SOCK_DIAG dump of the TCP
 * sockets of a network namespace (IPv4, then IPv6) with struct tcp_info attached,
 * turned into the same fs_flow_key / fs_flow_stats records the BPF map holds, so
 * that Swift decodes both sources with one routine. No BPF, no privileges: any
 * process may dump the sockets of its own namespace.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/tcp.h>

#include "cflowstat.h"

enum {
	TCP_ESTABLISHED = 1,
	TCP_SYN_SENT,
	TCP_SYN_RECV,
	TCP_FIN_WAIT1,
	TCP_FIN_WAIT2,
	TCP_TIME_WAIT,
	TCP_CLOSE,
	TCP_CLOSE_WAIT,
	TCP_LAST_ACK,
	TCP_LISTEN,
	TCP_CLOSING,
};

/*
 * The states the BPF source records: iter/tcp and the event hooks see full tcp_socks
 * from connect() until CLOSE. Not LISTEN (not a flow), CLOSE (gone from the map),
 * TIME_WAIT and SYN_RECV (minisockets without a tcp_sock, hence without tcp_info).
 */
#define FS_DIAG_STATES                                                                                    \
	((1u << TCP_ESTABLISHED) | (1u << TCP_SYN_SENT) | (1u << TCP_FIN_WAIT1) | (1u << TCP_FIN_WAIT2) | \
	 (1u << TCP_CLOSE_WAIT) | (1u << TCP_LAST_ACK) | (1u << TCP_CLOSING))

/*
 * The kernel fills each dump message up to the reader's buffer size, at most 32 KiB
 * (netlink's dump allocation cap); 64 KiB leaves room. A flow is about 330 bytes, so
 * a dump of 10,000 flows is about 100 reads.
 */
#define FS_DIAG_RECV_BUFFER (64 * 1024)

static int diag_fail(fs_error *error, int code, const char *step, const char *detail)
{
	if (code > 0)
		code = -code;
	if (!error)
		return code;
	error->code = code;
	snprintf(error->step, sizeof(error->step), "%s", step);
	snprintf(error->message, sizeof(error->message), "%s%s%s", strerror(-code), detail ? ": " : "",
		 detail ? detail : "");
	return code;
}

static uint64_t monotonic_ns(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
}

/*
 * tcp_info gives the delivery rate already derived (rate_delivered * mss_cache *
 * 1e6 / rate_interval_us, bytes per second); the record keeps the three factors.
 * mss_cache is the real MSS; rate_delivered / rate_interval_us is chosen as a
 * fraction with the same value, over an interval of 1000 s, so the Swift decoder
 * gets the rate back to within mss/1000 bytes per second (1 s if it would overflow).
 */
static void store_delivery_rate(struct fs_flow_stats *stats, uint64_t rate, uint32_t mss)
{
	if (!rate || !mss)
		return;
	uint64_t per_ks = rate <= UINT64_MAX / 1000 ? (rate * 1000 + mss / 2) / mss : UINT64_MAX;

	if (per_ks <= UINT32_MAX) { /* segments per 1000 s */
		stats->rate_delivered = (uint32_t)per_ks;
		stats->rate_interval_us = 1000000000u;
	} else {
		uint64_t per_s = (rate + mss / 2) / mss;

		stats->rate_delivered = per_s > UINT32_MAX ? UINT32_MAX : (uint32_t)per_s;
		stats->rate_interval_us = 1000000u;
	}
	stats->mss_cache = mss;
}

/*
 * Where tcp_info's fields end, so that the kernel's tcp_info length says which it has. Linux
 * 6.7 appended, after tcpi_snd_wnd: __u32 tcpi_rcv_wnd, __u32 tcpi_rehash (both 6.2),
 * __u16 tcpi_total_rto, __u16 tcpi_total_rto_recoveries, __u32 tcpi_total_rto_time; this
 * build's <linux/tcp.h> may stop at tcpi_snd_wnd, so those are read by offset.
 */
#define FS_TCP_INFO_END_OF(field) (offsetof(struct tcp_info, field) + sizeof(((struct tcp_info *)0)->field))
#define FS_TCP_INFO_TOTAL_RTO (FS_TCP_INFO_END_OF(tcpi_snd_wnd) + 8)
#define FS_TCP_INFO_RTO_END (FS_TCP_INFO_TOTAL_RTO + 8)

/* The fields of fs_flow_stats past cgroup_id, from tcp_info; `raw` is the attribute as sent. */
static void store_diagnosis(struct fs_flow_stats *stats, const struct tcp_info *info,
			    const unsigned char *raw, size_t length)
{
	stats->has = 0;
	if (length >= FS_TCP_INFO_END_OF(tcpi_sndbuf_limited)) {
		stats->busy_us = info->tcpi_busy_time;
		stats->rwnd_limited_us = info->tcpi_rwnd_limited;
		stats->sndbuf_limited_us = info->tcpi_sndbuf_limited;
		stats->has |= FS_HAS_TIME_LIMITS;
	}
	stats->has |= FS_HAS_DETAIL;
	stats->delivery_rate_app_limited = info->tcpi_delivery_rate_app_limited;
	stats->probes = info->tcpi_probes;
	stats->notsent_bytes = info->tcpi_notsent_bytes;
	stats->rcv_rtt_us = info->tcpi_rcv_rtt;
	stats->lost_out = info->tcpi_lost;
	stats->retrans_out = info->tcpi_retrans;
	if (length >= FS_TCP_INFO_END_OF(tcpi_snd_wnd)) {
		stats->snd_wnd = info->tcpi_snd_wnd;
		stats->reord_seen = info->tcpi_reord_seen;
		stats->dsack_dups = info->tcpi_dsack_dups;
		stats->rcv_ooopack = info->tcpi_rcv_ooopack;
		stats->has |= FS_HAS_LOSS_DETAIL;
	}
	if (length >= FS_TCP_INFO_RTO_END) {
		memcpy(&stats->total_rto, raw + FS_TCP_INFO_TOTAL_RTO, 2);
		memcpy(&stats->total_rto_recoveries, raw + FS_TCP_INFO_TOTAL_RTO + 2, 2);
		memcpy(&stats->total_rto_time_ms, raw + FS_TCP_INFO_TOTAL_RTO + 4, 4);
		stats->has |= FS_HAS_RTO_TOTALS;
	}
}

/* Fills one record from one SOCK_DIAG_BY_FAMILY message; false if it is not a flow. */
static bool record_of(const struct nlmsghdr *header, uint32_t netns, uint64_t now_ns, struct fs_flow_key *key,
		      struct fs_flow_stats *stats, int *malformed)
{
	const struct inet_diag_msg *msg = NLMSG_DATA(header);
	const struct rtattr *attr;
	struct tcp_info info;
	/* The whole attribute, for the fields newer than this build's <linux/tcp.h>. */
	unsigned char raw[FS_TCP_INFO_RTO_END];
	size_t info_length = 0;
	bool have_info = false;
	int length;

	if (header->nlmsg_len < NLMSG_LENGTH(sizeof(*msg))) {
		*malformed = 1;
		return false;
	}
	if (msg->idiag_state >= 32 || !(FS_DIAG_STATES & (1u << msg->idiag_state)))
		return false;
	if (msg->idiag_family != AF_INET && msg->idiag_family != AF_INET6)
		return false;

	memset(&info, 0, sizeof(info));
	length = (int)(header->nlmsg_len - NLMSG_LENGTH(sizeof(*msg)));
	for (attr = (const struct rtattr *)(msg + 1); RTA_OK(attr, length); attr = RTA_NEXT(attr, length)) {
		if (attr->rta_type != INET_DIAG_INFO)
			continue;
		/* Older kernels send a shorter tcp_info, newer ones a longer: take what both know. */
		size_t have = RTA_PAYLOAD(attr);
		memcpy(&info, RTA_DATA(attr), have < sizeof(info) ? have : sizeof(info));
		memset(raw, 0, sizeof(raw));
		memcpy(raw, RTA_DATA(attr), have < sizeof(raw) ? have : sizeof(raw));
		info_length = have;
		have_info = true;
	}
	/* Sockets without a tcp_sock carry no tcp_info: the BPF source does not see them either. */
	if (!have_info)
		return false;

	memset(key, 0, sizeof(*key));
	if (msg->idiag_family == AF_INET) {
		/* IPv4 stored IPv4-mapped (::ffff:a.b.c.d), as the BPF program does. */
		key->saddr[10] = key->saddr[11] = 0xff;
		key->daddr[10] = key->daddr[11] = 0xff;
		memcpy(&key->saddr[12], &msg->id.idiag_src[0], 4);
		memcpy(&key->daddr[12], &msg->id.idiag_dst[0], 4);
	} else {
		memcpy(key->saddr, msg->id.idiag_src, 16);
		memcpy(key->daddr, msg->id.idiag_dst, 16);
	}
	key->family = msg->idiag_family;
	key->sport = ntohs(msg->id.idiag_sport);
	key->dport = ntohs(msg->id.idiag_dport);
	key->netns = netns;

	/* tcp_get_info() derives these from the same tcp_sock fields the BPF program reads. */
	/* cgroup_id stays 0: flowstat does not ask inet_diag for a socket's cgroup (INET_DIAG_CGROUP_ID). */
	memset(stats, 0, sizeof(*stats));
	stats->first_seen_ns = now_ns;
	stats->last_update_ns = now_ns;
	stats->bytes_acked = info.tcpi_bytes_acked;
	stats->bytes_received = info.tcpi_bytes_received;
	stats->srtt_us = info.tcpi_rtt;
	stats->rttvar_us = info.tcpi_rttvar;
	stats->min_rtt_us = info.tcpi_min_rtt;
	stats->snd_cwnd = info.tcpi_snd_cwnd;
	stats->snd_ssthresh = info.tcpi_snd_ssthresh;
	stats->data_segs_in = info.tcpi_data_segs_in;
	stats->data_segs_out = info.tcpi_data_segs_out;
	stats->total_retrans = info.tcpi_total_retrans;
	store_delivery_rate(stats, info.tcpi_delivery_rate, info.tcpi_snd_mss);
	stats->state = msg->idiag_state;
	stats->direction = FS_DIR_UNKNOWN;
	stats->seen_by = 0; /* no hook: read by inet_diag */
	store_diagnosis(stats, &info, raw, info_length);
	return true;
}

int fs_diag_parse(const void *data, size_t length, uint32_t seq, uint32_t netns, uint64_t now_ns,
		  fs_flow_buffer *out)
{
	const struct nlmsghdr *header = data;
	int remaining = length > INT32_MAX ? INT32_MAX : (int)length;

	for (; NLMSG_OK(header, remaining); header = NLMSG_NEXT(header, remaining)) {
		if (header->nlmsg_seq != seq)
			continue; /* an answer to some earlier request on this socket */
		if (header->nlmsg_type == NLMSG_DONE) {
			/* A dump that failed part-way ends with DONE carrying the error. */
			if (header->nlmsg_len >= NLMSG_LENGTH(sizeof(int))) {
				int status;

				memcpy(&status, NLMSG_DATA(header), sizeof(status));
				if (status < 0)
					return status;
			}
			return 1;
		}
		if (header->nlmsg_type == NLMSG_ERROR) {
			const struct nlmsgerr *failure = NLMSG_DATA(header);

			if (header->nlmsg_len < NLMSG_LENGTH(sizeof(*failure)))
				return -EBADMSG;
			if (failure->error == 0)
				continue; /* an acknowledgement */
			return failure->error < 0 ? failure->error : -failure->error;
		}
		if (header->nlmsg_type != SOCK_DIAG_BY_FAMILY)
			continue;

		int malformed = 0;
		uint32_t index = out->count;
		struct fs_flow_key key;
		struct fs_flow_stats stats;

		if (!record_of(header, netns, now_ns, &key, &stats, &malformed)) {
			if (malformed)
				return -EBADMSG;
			continue;
		}
		/* Past capacity, flows are still counted so the caller knows how much to allocate. */
		if (index < out->capacity) {
			out->keys[index] = key;
			out->values[index] = stats;
		}
		out->count = index + 1;
	}
	/* Bytes left that do not form a message: the reader's buffer cut one. */
	return remaining > 0 ? -EBADMSG : 0;
}

/* Sends the dump request for one family and reads the answer to the end into out. */
static int dump_family(int fd, int family, uint32_t seq, uint32_t netns, uint64_t now_ns, char *buffer,
		       fs_flow_buffer *out, fs_error *error)
{
	struct {
		struct nlmsghdr header;
		struct inet_diag_req_v2 request;
	} message = {
		.header =
			{
				.nlmsg_len = sizeof(message),
				.nlmsg_type = SOCK_DIAG_BY_FAMILY,
				.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP,
				.nlmsg_seq = seq,
			},
		.request =
			{
				.sdiag_family = (uint8_t)family,
				.sdiag_protocol = IPPROTO_TCP,
				.idiag_ext = 1u << (INET_DIAG_INFO - 1),
				.idiag_states = FS_DIAG_STATES,
			},
	};
	struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
	ssize_t sent;

	do {
		sent = sendto(fd, &message, sizeof(message), 0, (struct sockaddr *)&kernel, sizeof(kernel));
	} while (sent < 0 && errno == EINTR);
	if (sent < 0)
		return diag_fail(error, errno, "send inet_diag request", NULL);

	for (;;) {
		struct iovec vector = {.iov_base = buffer, .iov_len = FS_DIAG_RECV_BUFFER};
		struct msghdr header = {.msg_name = &kernel,
					.msg_namelen = sizeof(kernel),
					.msg_iov = &vector,
					.msg_iovlen = 1};
		ssize_t received = recvmsg(fd, &header, 0);
		int status;

		if (received < 0) {
			if (errno == EINTR)
				continue;
			/* ENOBUFS: the socket's receive queue overflowed; the dump is incomplete. */
			return diag_fail(error, errno, "read inet_diag dump", NULL);
		}
		if (received == 0)
			return diag_fail(error, EPIPE, "read inet_diag dump", "the kernel closed the socket");
		if (header.msg_flags & MSG_TRUNC)
			return diag_fail(error, EMSGSIZE, "read inet_diag dump",
					 "message larger than the buffer");
		if (kernel.nl_pid != 0)
			continue; /* not from the kernel */
		status = fs_diag_parse(buffer, (size_t)received, seq, netns, now_ns, out);
		if (status == 1)
			return 0;
		if (status < 0) {
			/* A kernel without IPv6 (or without its diag handler) has no IPv6 flows. */
			if (family == AF_INET6 && (status == -ENOENT || status == -EAFNOSUPPORT))
				return 0;
			return diag_fail(error, status,
					 family == AF_INET ? "inet_diag dump of IPv4 TCP sockets"
							   : "inet_diag dump of IPv6 TCP sockets",
					 status == -EBADMSG ? "malformed netlink message" : NULL);
		}
	}
}

/* A NETLINK_SOCK_DIAG socket of netns_fd's namespace (a netlink socket belongs to the
 * namespace it is created in), or of the caller's with -1. */
static int open_diag_socket(int netns_fd, fs_error *error)
{
	int home = -1, fd, err = 0;

	if (netns_fd >= 0) {
		home = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
		if (home < 0)
			return diag_fail(error, errno, "open own network namespace", NULL);
		if (setns(netns_fd, CLONE_NEWNET)) {
			err = errno;
			close(home);
			return diag_fail(error, err, "enter network namespace", "needs CAP_SYS_ADMIN");
		}
	}
	fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
	if (fd < 0)
		err = errno;
	if (home >= 0) {
		if (setns(home, CLONE_NEWNET))
			abort(); /* this thread would go on in a foreign namespace */
		close(home);
	}
	if (fd < 0)
		return diag_fail(error, err, "open NETLINK_SOCK_DIAG socket", NULL);
	return fd;
}

int fs_diag_dump(int netns_fd, uint32_t netns_inode, fs_flow_buffer *out, fs_error *error)
{
	static uint32_t next_seq = 1; /* tells this dump's answers from any stale ones */
	uint32_t seq = __atomic_fetch_add(&next_seq, 2, __ATOMIC_RELAXED);
	uint64_t now_ns = monotonic_ns();
	char *buffer;
	int fd, err;

	fd = open_diag_socket(netns_fd, error);
	if (fd < 0)
		return fd;
	buffer = malloc(FS_DIAG_RECV_BUFFER);
	if (!buffer) {
		close(fd);
		return diag_fail(error, ENOMEM, "allocate inet_diag buffer", NULL);
	}
	err = dump_family(fd, AF_INET, seq, netns_inode, now_ns, buffer, out, error);
	if (!err)
		err = dump_family(fd, AF_INET6, seq + 1, netns_inode, now_ns, buffer, out, error);
	free(buffer);
	close(fd);
	if (err)
		return err;
	if (out->count > out->capacity)
		return diag_fail(error, ENOSPC, "store inet_diag flows", "more flows than the buffer holds");
	return 0;
}
