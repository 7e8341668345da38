// SPDX-License-Identifier: Apache-2.0

import FlowStatCore
import NIOCore
import Testing

@Suite("Seed-compatible output and label folding")
struct SeedCompatTests {
    private func encode(_ snapshot: FlowSnapshot, _ options: MetricsEncoder.Options) -> String {
        var encoder = MetricsEncoder(options: options)
        var buffer = ByteBuffer()
        encoder.encode(snapshot, context: Fixtures.context, into: &buffer)
        return String(buffer: buffer)
    }

    /// The text from the first line of `first` up to (not including) `end`.
    private func section(_ text: String, from first: String, to end: String) -> Substring {
        let start = text.range(of: first)!.lowerBound
        let stop = text.range(of: end, range: start..<text.endIndex)!.lowerBound
        return text[start..<stop]
    }

    static let histogram = Histogram(bounds: [0.0000025, 0.001], counts: [2, 3, 1], sum: 0.0123)

    @Test("--compat ss-exporter: the seed's names, milliseconds, raw_endpoint flow labels; exact text")
    func rawEndpoint() {
        var snapshot = Fixtures.snapshot
        snapshot.rttHistogram = Self.histogram
        let output = encode(snapshot, MetricsEncoder.Options(output: .ssExporter))
        #expect(
            section(output, from: "# HELP tcp_rtt ", to: "# HELP tcp_cwnd") == """
                # HELP tcp_rtt Smoothed round-trip time of the TCP flow, milliseconds.
                # TYPE tcp_rtt gauge
                tcp_rtt{flow="(SRC#10.0.0.1|80)(DST#10.0.0.3|1000)",netns="4026531840"} 1
                tcp_rtt{flow="(SRC#10.0.0.1|80)(DST#10.0.0.3|1000)",netns="4026532000"} 2
                tcp_rtt{flow="(SRC#10.0.0.1|443)(DST#10.0.0.2|51234)"} 0.123
                tcp_rtt{flow="(SRC#192.168.1.5|22)(DST#192.168.1.9|50000)"} 0.031
                tcp_rtt{flow="(SRC#2001:db8::1|8080)(DST#2001:db8::2|40000)"} 12.5

                """)
        #expect(
            section(output, from: "# HELP tcp_data_segs_in", to: "# HELP tcp_data_segs_out") == """
                # HELP tcp_data_segs_in Segments carrying data received on the TCP flow (a counter).
                # TYPE tcp_data_segs_in untyped
                tcp_data_segs_in{flow="(SRC#10.0.0.1|80)(DST#10.0.0.3|1000)",netns="4026531840"} 1
                tcp_data_segs_in{flow="(SRC#10.0.0.1|80)(DST#10.0.0.3|1000)",netns="4026532000"} 3
                tcp_data_segs_in{flow="(SRC#10.0.0.1|443)(DST#10.0.0.2|51234)"} 5
                tcp_data_segs_in{flow="(SRC#192.168.1.5|22)(DST#192.168.1.9|50000)"} 1
                tcp_data_segs_in{flow="(SRC#2001:db8::1|8080)(DST#2001:db8::2|40000)"} 0

                """)
        #expect(
            section(output, from: "# HELP tcp_rtt_hist_ms", to: "# HELP flowstat_build_info") == """
                # HELP tcp_rtt_hist_ms Every round-trip time sample the kernel took, on every TCP flow, milliseconds.
                # TYPE tcp_rtt_hist_ms histogram
                tcp_rtt_hist_ms_bucket{le="0.0025"} 2
                tcp_rtt_hist_ms_bucket{le="1"} 5
                tcp_rtt_hist_ms_bucket{le="+Inf"} 6
                tcp_rtt_hist_ms_sum 12.3
                tcp_rtt_hist_ms_count 6
                # HELP tcp_flows_total TCP flows the agent sees now (a gauge).
                # TYPE tcp_flows_total untyped
                tcp_flows_total 5

                """)
        // flowstat's own per-flow names are not written in compat mode.
        #expect(!output.contains("tcp_flow_rtt_seconds"))
        #expect(!output.contains("tcp_rtt_seconds"))
        #expect(!output.contains("\ntcp_flows "))
    }

    @Test("pid_condensed: one series per process and remote endpoint, counters summed, RTT averaged")
    func pidCondensed() {
        func flow(pid: UInt32, localPort: UInt16, remotePort: UInt16, rtt: Double, segments: UInt64) -> FlowSample {
            FlowSample(
                key: Fixtures.key(.ipv4, "10.0.0.1", localPort, "10.0.0.9", remotePort), rtt: rtt, minRTT: rtt / 2,
                cwnd: 10, dataSegmentsIn: segments, dataSegmentsOut: segments, pid: pid, comm: "app")
        }
        let snapshot = FlowSnapshot(
            flows: [
                flow(pid: 7, localPort: 40_001, remotePort: 5432, rtt: 0.001, segments: 1),
                flow(pid: 7, localPort: 40_002, remotePort: 5432, rtt: 0.003, segments: 10),
                flow(pid: 8, localPort: 40_003, remotePort: 5432, rtt: 0.005, segments: 100),
                flow(pid: 7, localPort: 40_004, remotePort: 6379, rtt: 0.002, segments: 1000),
            ],
            mapEntries: 4, mapCapacity: 8)
        let seed = encode(snapshot, MetricsEncoder.Options(output: .ssExporter, labelFolding: .pidCondensed))
        #expect(
            section(seed, from: "# HELP tcp_rtt ", to: "# HELP tcp_cwnd") == """
                # HELP tcp_rtt Smoothed round-trip time of the TCP flow, milliseconds.
                # TYPE tcp_rtt gauge
                tcp_rtt{flow="(7)(DST#10.0.0.9|5432)"} 2
                tcp_rtt{flow="(7)(DST#10.0.0.9|6379)"} 2
                tcp_rtt{flow="(8)(DST#10.0.0.9|5432)"} 5

                """)
        #expect(
            seed.contains(
                """
                tcp_cwnd{flow="(7)(DST#10.0.0.9|5432)"} 20
                """))
        #expect(
            seed.contains(
                """
                tcp_data_segs_in{flow="(7)(DST#10.0.0.9|5432)"} 11
                """))
        #expect(seed.contains("tcp_flows_total 4\n"))

        let own = encode(snapshot, MetricsEncoder.Options(labelFolding: .pidCondensed))
        #expect(
            section(own, from: "# HELP tcp_flow_data_segments_in_total", to: "# HELP tcp_flow_data_segments_out_total")
                == """
                # HELP tcp_flow_data_segments_in_total Segments carrying data received on the TCP flow.
                # TYPE tcp_flow_data_segments_in_total counter
                tcp_flow_data_segments_in_total{pid="7",dst="10.0.0.9",dport="5432"} 11
                tcp_flow_data_segments_in_total{pid="7",dst="10.0.0.9",dport="6379"} 1000
                tcp_flow_data_segments_in_total{pid="8",dst="10.0.0.9",dport="5432"} 100

                """)
        #expect(own.contains(#"tcp_flow_min_rtt_seconds{pid="7",dst="10.0.0.9",dport="5432"} 0.0005"#))
    }

    @Test("pid and comm labels: after the endpoints, comm escaped, empty when unknown")
    func ownerLabels() {
        let snapshot = FlowSnapshot(
            flows: [
                FlowSample(
                    key: Fixtures.key(.ipv4, "10.0.0.1", 443, "10.0.0.2", 50_000), rtt: 0.001, pid: 42,
                    comm: #"ng"in\x"#),
                FlowSample(key: Fixtures.key(.ipv4, "10.0.0.1", 443, "10.0.0.3", 50_000), rtt: 0.002),
            ],
            mapEntries: 2, mapCapacity: 8)
        let output = encode(snapshot, MetricsEncoder.Options(pidLabel: true, commLabel: true))
        #expect(
            output.contains(
                #"tcp_flow_rtt_seconds{src="10.0.0.1",sport="443",dst="10.0.0.2",dport="50000",pid="42",comm="ng\"in\\x"} 0.001"#
            ))
        #expect(
            output.contains(
                #"tcp_flow_rtt_seconds{src="10.0.0.1",sport="443",dst="10.0.0.3",dport="50000",pid="",comm=""} 0.002"#))
    }
}
