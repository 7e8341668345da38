// SPDX-License-Identifier: Apache-2.0

import FlowStatCore

/// Snapshots and contexts shared by the encoder and server tests.
enum Fixtures {
    /// `Tests/FlowStatCoreTests/Fixtures`, found from this file's path (the package has no
    /// resources): the YAML configs and golden files tests read by path.
    static let directory: String = {
        let support = String(#filePath.prefix(upTo: #filePath.lastIndex(of: "/")!))
        return String(support.prefix(upTo: support.lastIndex(of: "/")!)) + "/Fixtures"
    }()

    /// The package's root directory (README, scripts).
    static let packageRoot: String = {
        var path = directory
        for _ in 0..<3 { path = String(path.prefix(upTo: path.lastIndex(of: "/")!)) }
        return path
    }()

    static let hostNetns: UInt32 = 4_026_531_840
    static let containerNetns: UInt32 = 4_026_532_000

    static func key(
        _ family: AddressFamily, _ local: String, _ localPort: UInt16, _ remote: String, _ remotePort: UInt16,
        netns: UInt32 = hostNetns
    ) -> FlowKey {
        FlowKey(
            family: family, local: IPAddress(local)!, localPort: localPort, remote: IPAddress(remote)!,
            remotePort: remotePort, netns: netns)
    }

    /// IPv4, IPv6 and IPv4-mapped flows, two flows that share a 4-tuple in different
    /// namespaces, and values that take each float-formatting path. Deliberately not in
    /// output order.
    static let snapshot = FlowSnapshot(
        flows: [
            FlowSample(
                key: key(.ipv6, "2001:db8::1", 8080, "2001:db8::2", 40_000),
                rtt: 0.0125, rttVariance: 1e-10, minRTT: 0,
                cwnd: 20, ssthresh: 2_147_483_647, deliveryRate: 0.1 + 0.2,
                dataSegmentsIn: 0, dataSegmentsOut: 0, bytesAcked: .max, bytesReceived: 0, retransmits: 0,
                lastUpdate: 5),
            FlowSample(
                key: key(.ipv4, "10.0.0.1", 80, "10.0.0.3", 1_000, netns: containerNetns),
                rtt: 0.002, rttVariance: 0.001, minRTT: 0.0015,
                cwnd: 10, ssthresh: 8, deliveryRate: 2_500_000,
                dataSegmentsIn: 3, dataSegmentsOut: 4, bytesAcked: 300, bytesReceived: 400, retransmits: 0,
                pid: 42, comm: "nginx", lastUpdate: 4),
            FlowSample(
                key: key(.ipv6, "::ffff:192.168.1.5", 22, "::ffff:192.168.1.9", 50_000),
                rtt: 0.000031, rttVariance: 0.000015, minRTT: 0.000009,
                cwnd: 10, ssthresh: 2_147_483_647, deliveryRate: .nan,
                dataSegmentsIn: 1, dataSegmentsOut: 1, bytesAcked: 1_845, bytesReceived: 146, retransmits: 0,
                lastUpdate: 3),
            FlowSample(
                key: key(.ipv4, "10.0.0.1", 443, "10.0.0.2", 51_234),
                rtt: 123e-6, rttVariance: 50e-6, minRTT: 100e-6,
                cwnd: 10, ssthresh: 7, deliveryRate: 1_250_000,
                dataSegmentsIn: 5, dataSegmentsOut: 7, bytesAcked: 1_000, bytesReceived: 2_000, retransmits: 1,
                lastUpdate: 2),
            FlowSample(
                key: key(.ipv4, "10.0.0.1", 80, "10.0.0.3", 1_000),
                rtt: 0.001, rttVariance: 0.0005, minRTT: 0.0008,
                cwnd: 12, ssthresh: 9, deliveryRate: 1e6,
                dataSegmentsIn: 1, dataSegmentsOut: 2, bytesAcked: 100, bytesReceived: 200, retransmits: 0,
                lastUpdate: 1),
        ],
        mapEntries: 5,
        mapCapacity: 65_536)

    static let sourceInfo = SourceInfo(
        kind: .bpf,
        hooks: [
            HookStatus(name: "inet_sock_set_state", variant: "tracepoint", attached: true),
            HookStatus(name: "sockops", variant: "cgroup_sockops", attached: true),
            HookStatus(
                name: "tcp_rcv_established", variant: "fentry", attached: false, error: "Operation not supported"),
            HookStatus(name: "tcp_rcv_established", variant: "tp_btf", attached: true),
        ])

    static let build = BuildInfo(version: "1.2.3", revision: "1a2b3c4d", swiftVersion: "6.3")

    /// The default config without the cardinality cap: every flow keeps its series.
    static let uncapped: FlowStatConfig = {
        var config = FlowStatConfig()
        config.cardinality.maxFlows = 0
        return config
    }()

    static let context = ExpositionContext(build: build, source: sourceInfo, previousScrapeDuration: 0.0042)

    /// `snapshot` as the encoder must write it, fixed text: the oracle of the exact-text tests
    /// (MetricsEncoderTests with a scrape duration of 4.2 ms; MetricsServerTests on a first
    /// scrape, which has no duration sample yet).
    static let exposition = #"""
        # HELP tcp_flow_rtt_seconds Smoothed round-trip time of the TCP flow.
        # TYPE tcp_flow_rtt_seconds gauge
        tcp_flow_rtt_seconds{src="10.0.0.1",sport="80",dst="10.0.0.3",dport="1000",netns="4026531840"} 0.001
        tcp_flow_rtt_seconds{src="10.0.0.1",sport="80",dst="10.0.0.3",dport="1000",netns="4026532000"} 0.002
        tcp_flow_rtt_seconds{src="10.0.0.1",sport="443",dst="10.0.0.2",dport="51234"} 0.000123
        tcp_flow_rtt_seconds{src="192.168.1.5",sport="22",dst="192.168.1.9",dport="50000"} 0.000031
        tcp_flow_rtt_seconds{src="2001:db8::1",sport="8080",dst="2001:db8::2",dport="40000"} 0.0125
        # HELP tcp_flow_rtt_variance_seconds Round-trip time variance (mean deviation) of the TCP flow.
        # TYPE tcp_flow_rtt_variance_seconds gauge
        tcp_flow_rtt_variance_seconds{src="10.0.0.1",sport="80",dst="10.0.0.3",dport="1000",netns="4026531840"} 0.0005
        tcp_flow_rtt_variance_seconds{src="10.0.0.1",sport="80",dst="10.0.0.3",dport="1000",netns="4026532000"} 0.001
        tcp_flow_rtt_variance_seconds{src="10.0.0.1",sport="443",dst="10.0.0.2",dport="51234"} 0.00005
        tcp_flow_rtt_variance_seconds{src="192.168.1.5",sport="22",dst="192.168.1.9",dport="50000"} 0.000015
        tcp_flow_rtt_variance_seconds{src="2001:db8::1",sport="8080",dst="2001:db8::2",dport="40000"} 1e-10
        # HELP tcp_flow_min_rtt_seconds Minimum round-trip time seen on the TCP flow.
        # TYPE tcp_flow_min_rtt_seconds gauge
        tcp_flow_min_rtt_seconds{src="10.0.0.1",sport="80",dst="10.0.0.3",dport="1000",netns="4026531840"} 0.0008
        tcp_flow_min_rtt_seconds{src="10.0.0.1",sport="80",dst="10.0.0.3",dport="1000",netns="4026532000"} 0.0015
        tcp_flow_min_rtt_seconds{src="10.0.0.1",sport="443",dst="10.0.0.2",dport="51234"} 0.0001
        tcp_flow_min_rtt_seconds{src="192.168.1.5",sport="22",dst="192.168.1.9",dport="50000"} 0.000009
        tcp_flow_min_rtt_seconds{src="2001:db8::1",sport="8080",dst="2001:db8::2",dport="40000"} 0
        # HELP tcp_flow_cwnd_segments Congestion window of the TCP flow.
        # TYPE tcp_flow_cwnd_segments gauge
        tcp_flow_cwnd_segments{src="10.0.0.1",sport="80",dst="10.0.0.3",dport="1000",netns="4026531840"} 12
        tcp_flow_cwnd_segments{src="10.0.0.1",sport="80",dst="10.0.0.3",dport="1000",netns="4026532000"} 10
        tcp_flow_cwnd_segments{src="10.0.0.1",sport="443",dst="10.0.0.2",dport="51234"} 10
        tcp_flow_cwnd_segments{src="192.168.1.5",sport="22",dst="192.168.1.9",dport="50000"} 10
        tcp_flow_cwnd_segments{src="2001:db8::1",sport="8080",dst="2001:db8::2",dport="40000"} 20
        # HELP tcp_flow_ssthresh_segments Slow-start threshold of the TCP flow.
        # TYPE tcp_flow_ssthresh_segments gauge
        tcp_flow_ssthresh_segments{src="10.0.0.1",sport="80",dst="10.0.0.3",dport="1000",netns="4026531840"} 9
        tcp_flow_ssthresh_segments{src="10.0.0.1",sport="80",dst="10.0.0.3",dport="1000",netns="4026532000"} 8
        tcp_flow_ssthresh_segments{src="10.0.0.1",sport="443",dst="10.0.0.2",dport="51234"} 7
        tcp_flow_ssthresh_segments{src="192.168.1.5",sport="22",dst="192.168.1.9",dport="50000"} 2147483647
        tcp_flow_ssthresh_segments{src="2001:db8::1",sport="8080",dst="2001:db8::2",dport="40000"} 2147483647
        # HELP tcp_flow_delivery_rate_bytes_per_second Most recent delivery rate estimate of the TCP flow.
        # TYPE tcp_flow_delivery_rate_bytes_per_second gauge
        tcp_flow_delivery_rate_bytes_per_second{src="10.0.0.1",sport="80",dst="10.0.0.3",dport="1000",netns="4026531840"} 1000000
        tcp_flow_delivery_rate_bytes_per_second{src="10.0.0.1",sport="80",dst="10.0.0.3",dport="1000",netns="4026532000"} 2500000
        tcp_flow_delivery_rate_bytes_per_second{src="10.0.0.1",sport="443",dst="10.0.0.2",dport="51234"} 1250000
        tcp_flow_delivery_rate_bytes_per_second{src="192.168.1.5",sport="22",dst="192.168.1.9",dport="50000"} NaN
        tcp_flow_delivery_rate_bytes_per_second{src="2001:db8::1",sport="8080",dst="2001:db8::2",dport="40000"} 0.30000000000000004
        # HELP tcp_flow_data_segments_in_total Segments carrying data received on the TCP flow.
        # TYPE tcp_flow_data_segments_in_total counter
        tcp_flow_data_segments_in_total{src="10.0.0.1",sport="80",dst="10.0.0.3",dport="1000",netns="4026531840"} 1
        tcp_flow_data_segments_in_total{src="10.0.0.1",sport="80",dst="10.0.0.3",dport="1000",netns="4026532000"} 3
        tcp_flow_data_segments_in_total{src="10.0.0.1",sport="443",dst="10.0.0.2",dport="51234"} 5
        tcp_flow_data_segments_in_total{src="192.168.1.5",sport="22",dst="192.168.1.9",dport="50000"} 1
        tcp_flow_data_segments_in_total{src="2001:db8::1",sport="8080",dst="2001:db8::2",dport="40000"} 0
        # HELP tcp_flow_data_segments_out_total Segments carrying data sent on the TCP flow.
        # TYPE tcp_flow_data_segments_out_total counter
        tcp_flow_data_segments_out_total{src="10.0.0.1",sport="80",dst="10.0.0.3",dport="1000",netns="4026531840"} 2
        tcp_flow_data_segments_out_total{src="10.0.0.1",sport="80",dst="10.0.0.3",dport="1000",netns="4026532000"} 4
        tcp_flow_data_segments_out_total{src="10.0.0.1",sport="443",dst="10.0.0.2",dport="51234"} 7
        tcp_flow_data_segments_out_total{src="192.168.1.5",sport="22",dst="192.168.1.9",dport="50000"} 1
        tcp_flow_data_segments_out_total{src="2001:db8::1",sport="8080",dst="2001:db8::2",dport="40000"} 0
        # HELP tcp_flow_bytes_acked_total Bytes sent on the TCP flow and acknowledged by the peer.
        # TYPE tcp_flow_bytes_acked_total counter
        tcp_flow_bytes_acked_total{src="10.0.0.1",sport="80",dst="10.0.0.3",dport="1000",netns="4026531840"} 100
        tcp_flow_bytes_acked_total{src="10.0.0.1",sport="80",dst="10.0.0.3",dport="1000",netns="4026532000"} 300
        tcp_flow_bytes_acked_total{src="10.0.0.1",sport="443",dst="10.0.0.2",dport="51234"} 1000
        tcp_flow_bytes_acked_total{src="192.168.1.5",sport="22",dst="192.168.1.9",dport="50000"} 1845
        tcp_flow_bytes_acked_total{src="2001:db8::1",sport="8080",dst="2001:db8::2",dport="40000"} 18446744073709551615
        # HELP tcp_flow_bytes_received_total Bytes received on the TCP flow.
        # TYPE tcp_flow_bytes_received_total counter
        tcp_flow_bytes_received_total{src="10.0.0.1",sport="80",dst="10.0.0.3",dport="1000",netns="4026531840"} 200
        tcp_flow_bytes_received_total{src="10.0.0.1",sport="80",dst="10.0.0.3",dport="1000",netns="4026532000"} 400
        tcp_flow_bytes_received_total{src="10.0.0.1",sport="443",dst="10.0.0.2",dport="51234"} 2000
        tcp_flow_bytes_received_total{src="192.168.1.5",sport="22",dst="192.168.1.9",dport="50000"} 146
        tcp_flow_bytes_received_total{src="2001:db8::1",sport="8080",dst="2001:db8::2",dport="40000"} 0
        # HELP tcp_flow_retransmits_total Segments retransmitted on the TCP flow.
        # TYPE tcp_flow_retransmits_total counter
        tcp_flow_retransmits_total{src="10.0.0.1",sport="80",dst="10.0.0.3",dport="1000",netns="4026531840"} 0
        tcp_flow_retransmits_total{src="10.0.0.1",sport="80",dst="10.0.0.3",dport="1000",netns="4026532000"} 0
        tcp_flow_retransmits_total{src="10.0.0.1",sport="443",dst="10.0.0.2",dport="51234"} 1
        tcp_flow_retransmits_total{src="192.168.1.5",sport="22",dst="192.168.1.9",dport="50000"} 0
        tcp_flow_retransmits_total{src="2001:db8::1",sport="8080",dst="2001:db8::2",dport="40000"} 0
        # HELP tcp_flow_limited_seconds_total Seconds of the TCP flow's observed life by what limited it: network (busy, cwnd-bound), receiver (peer window), sender_buffer (send buffer), application (idle or app-limited).
        # TYPE tcp_flow_limited_seconds_total counter
        # HELP tcp_flows TCP flows the agent sees now (selected ones, before the cardinality cap).
        # TYPE tcp_flows gauge
        tcp_flows 5
        # HELP flowstat_build_info flowstat version, commit and the Swift version it was built with.
        # TYPE flowstat_build_info gauge
        flowstat_build_info{version="1.2.3",revision="1a2b3c4d",swift="6.3"} 1
        # HELP flowstat_source_info Flow source in use, one series per attached kernel hook.
        # TYPE flowstat_source_info gauge
        flowstat_source_info{source="bpf",hook="inet_sock_set_state",variant="tracepoint"} 1
        flowstat_source_info{source="bpf",hook="sockops",variant="cgroup_sockops"} 1
        flowstat_source_info{source="bpf",hook="tcp_rcv_established",variant="tp_btf"} 1
        # HELP flowstat_map_entries Entries in the flow map when it was read.
        # TYPE flowstat_map_entries gauge
        flowstat_map_entries 5
        # HELP flowstat_map_capacity Capacity of the flow map.
        # TYPE flowstat_map_capacity gauge
        flowstat_map_capacity 65536
        # HELP flowstat_scrape_duration_seconds Duration of the previous scrape: snapshot plus encoding.
        # TYPE flowstat_scrape_duration_seconds gauge
        flowstat_scrape_duration_seconds 0.0042
        # HELP flowstat_snapshot_duration_seconds Part of the previous scrape spent reading the flows from the source (kernel refresh and map read).
        # TYPE flowstat_snapshot_duration_seconds gauge

        """#

    /// Fixed `process_*` values for the scraper in exact-text tests (the real ones change).
    static let process = ProcessMetrics(
        cpuSeconds: 12.5, residentMemoryBytes: 25_165_824, virtualMemoryBytes: 1_073_741_824,
        startTimeSeconds: 1_700_000_000.25, openFDs: 17, maxFDs: 20_000)

    /// `process` as the scraper appends it to the exposition, Prometheus text: names, types
    /// and HELP texts as client_golang's process collector writes them.
    static let processExposition = """
        # HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.
        # TYPE process_cpu_seconds_total counter
        process_cpu_seconds_total 12.5
        # HELP process_open_fds Number of open file descriptors.
        # TYPE process_open_fds gauge
        process_open_fds 17
        # HELP process_max_fds Maximum number of open file descriptors.
        # TYPE process_max_fds gauge
        process_max_fds 20000
        # HELP process_virtual_memory_bytes Virtual memory size in bytes.
        # TYPE process_virtual_memory_bytes gauge
        process_virtual_memory_bytes 1073741824
        # HELP process_resident_memory_bytes Resident memory size in bytes.
        # TYPE process_resident_memory_bytes gauge
        process_resident_memory_bytes 25165824
        # HELP process_start_time_seconds Start time of the process since unix epoch in seconds.
        # TYPE process_start_time_seconds gauge
        process_start_time_seconds 1700000000.25

        """
}
