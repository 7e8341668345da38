// SPDX-License-Identifier: Apache-2.0

import Foundation
import NIOCore
import Testing

@testable import FlowStatCore

/// Debian's python3-prometheus-client, whose OpenMetrics parser is the reference check.
private let referenceParser = "/usr/bin/python3"
private let hasReferenceParser: Bool = {
    guard FileManager.default.isExecutableFile(atPath: referenceParser) else { return false }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: referenceParser)
    process.arguments = ["-c", "import prometheus_client.openmetrics.parser"]
    process.standardError = FileHandle.nullDevice
    guard (try? process.run()) != nil else { return false }
    process.waitUntilExit()
    return process.terminationStatus == 0
}()

@Suite("OpenMetrics exposition and content negotiation")
struct OpenMetricsTests {
    private static let events = KernelEventCounts(
        updates: 10, updatesSkipped: 1, insertFailures: 0, evictions: 2, openedActive: 5, openedPassive: 6, closed: 9)
    private static let histogram = Histogram(bounds: [0.0001, 0.001], counts: [3, 1, 2], sum: 0.0425)

    private func encode(_ snapshot: FlowSnapshot, format: MetricsEncoder.Format) -> String {
        var encoder = MetricsEncoder()
        var buffer = ByteBuffer()
        encoder.encode(snapshot, context: Fixtures.context, format: format, into: &buffer)
        return String(buffer: buffer)
    }

    private var fullSnapshot: FlowSnapshot {
        var snapshot = Fixtures.snapshot
        snapshot.rttHistogram = Self.histogram
        snapshot.kernelEvents = Self.events
        return snapshot
    }

    @Test("each kind of family, as exact OpenMetrics text")
    func exactText() {
        let snapshot = FlowSnapshot(
            flows: [Fixtures.snapshot.flows[3]], mapEntries: 1, mapCapacity: 8, kernelEvents: Self.events,
            rttHistogram: Self.histogram)
        let output = encode(snapshot, format: .openMetrics)
        let flow = #"{src="10.0.0.1",sport="443",dst="10.0.0.2",dport="51234"}"#
        #expect(
            output.hasPrefix(
                """
                # TYPE tcp_flow_rtt_seconds gauge
                # UNIT tcp_flow_rtt_seconds seconds
                # HELP tcp_flow_rtt_seconds Smoothed round-trip time of the TCP flow.
                tcp_flow_rtt_seconds\(flow) 0.000123

                """))
        #expect(
            output.contains(
                """
                # TYPE tcp_flow_cwnd_segments gauge
                # HELP tcp_flow_cwnd_segments Congestion window of the TCP flow.
                tcp_flow_cwnd_segments\(flow) 10

                """))
        #expect(
            output.contains(
                """
                # TYPE tcp_flow_bytes_acked counter
                # HELP tcp_flow_bytes_acked Bytes sent on the TCP flow and acknowledged by the peer.
                tcp_flow_bytes_acked_total\(flow) 1000

                """))
        #expect(
            output.contains(
                """
                # TYPE tcp_rtt_seconds histogram
                # UNIT tcp_rtt_seconds seconds
                # HELP tcp_rtt_seconds Every round-trip time sample the kernel took, on every TCP flow.
                tcp_rtt_seconds_bucket{le="0.0001"} 3
                tcp_rtt_seconds_bucket{le="0.001"} 4 # \(flow) 0.000123
                tcp_rtt_seconds_bucket{le="+Inf"} 6
                tcp_rtt_seconds_sum 0.0425
                tcp_rtt_seconds_count 6
                # TYPE tcp_flows_opened counter
                # HELP tcp_flows_opened TCP flows established on this host, by who opened them.
                tcp_flows_opened_total{direction="active"} 5
                tcp_flows_opened_total{direction="passive"} 6
                # TYPE tcp_flows_closed counter
                # HELP tcp_flows_closed Established TCP flows that closed on this host.
                tcp_flows_closed_total 9
                # TYPE flowstat_build info
                # HELP flowstat_build flowstat version, commit and the Swift version it was built with.
                flowstat_build_info{version="1.2.3",revision="1a2b3c4d",swift="6.3"} 1
                # TYPE flowstat_source info
                # HELP flowstat_source Flow source in use, one series per attached kernel hook.
                flowstat_source_info{source="bpf",hook="inet_sock_set_state",variant="tracepoint"} 1

                """))
        #expect(
            output.hasSuffix(
                """
                # TYPE flowstat_scrape_duration_seconds gauge
                # UNIT flowstat_scrape_duration_seconds seconds
                # HELP flowstat_scrape_duration_seconds Duration of the previous scrape: snapshot plus encoding.
                flowstat_scrape_duration_seconds 0.0042
                # TYPE flowstat_snapshot_duration_seconds gauge
                # UNIT flowstat_snapshot_duration_seconds seconds
                # HELP flowstat_snapshot_duration_seconds Part of the previous scrape spent reading the flows from the source (kernel refresh and map read).
                # EOF

                """))
        #expect(output.components(separatedBy: "# EOF").count == 2)
    }

    @Test("both formats carry the same samples in the same order; only metadata differs")
    func sameSamples() {
        // Exemplars (OpenMetrics only) left aside.
        func samples(_ text: String) -> [Substring] {
            text.split(separator: "\n").filter { !$0.hasPrefix("#") }.map { $0.split(separator: " # {").first! }
        }
        let text = encode(fullSnapshot, format: .prometheusText)
        let openMetrics = encode(fullSnapshot, format: .openMetrics)
        #expect(samples(text) == samples(openMetrics))
        #expect(!text.contains("# EOF"))
        #expect(!text.contains("# UNIT"))
        #expect(text.contains("# TYPE flowstat_build_info gauge\n"))
        #expect(text.contains("# TYPE tcp_flow_bytes_acked_total counter\n"))
    }

    @Test(
        "the OpenMetrics output passes the reference parser (prometheus_client)",
        .enabled(if: hasReferenceParser, "needs Debian's python3-prometheus-client: scripts/install-deps.sh test"))
    func referenceParserAccepts() throws {
        let output = encode(fullSnapshot, format: .openMetrics)
        let script = """
            import sys
            from prometheus_client.openmetrics.parser import text_string_to_metric_families
            for family in text_string_to_metric_families(sys.stdin.read()):
                print(family.name, family.type, family.unit, len(family.samples))
                for sample in family.samples:
                    if sample.exemplar:
                        labels = ",".join(f"{k}={v}" for k, v in sorted(sample.exemplar.labels.items()))
                        print("exemplar", sample.name, sample.labels.get("le"), labels, sample.exemplar.value)
            """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: referenceParser)
        process.arguments = ["-c", script]
        let input = Pipe()
        let out = Pipe()
        let err = Pipe()
        process.standardInput = input
        process.standardOutput = out
        process.standardError = err
        try process.run()
        input.fileHandleForWriting.write(Data(output.utf8))
        try input.fileHandleForWriting.close()
        let parsed = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        let errors = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 0, "parser rejected the output: \(errors)")
        let families = parsed.split(separator: "\n")
        #expect(families.contains("tcp_flow_rtt_seconds gauge seconds 5"))
        #expect(families.contains("tcp_flow_retransmits counter  5"))
        #expect(families.contains("tcp_rtt_seconds histogram seconds 5"))
        #expect(families.contains("tcp_flows_opened counter  2"))
        #expect(families.contains("flowstat_build info  1"))
        #expect(families.contains("flowstat_source info  3"))
        // The parser read each exemplar: the worst flow of its bucket, by its endpoints.
        let exemplars = families.filter { $0.hasPrefix("exemplar ") }
        #expect(!exemplars.isEmpty, "no exemplar parsed: \(parsed)")
        for line in exemplars {
            #expect(line.hasPrefix("exemplar tcp_rtt_seconds_bucket "), "\(line)")
            #expect(
                line.contains("dport=") && line.contains("dst=") && line.contains("sport=") && line.contains("src="))
        }
    }

    @Test("exemplars: each RTT bucket names the flow with the worst smoothed RTT in it, per service too")
    func exemplars() {
        let bounds = [0.001, 0.01]
        func flow(_ port: UInt16, rtt: Double, direction: FlowDirection, service: UInt16) -> FlowSample {
            FlowSample(
                key: FlowKey(
                    family: .ipv4, local: IPAddress("10.0.0.1")!, localPort: direction == .passive ? service : port,
                    remote: IPAddress("10.0.0.2")!, remotePort: direction == .passive ? port : service, netns: 1),
                rtt: rtt, direction: direction)
        }
        let flows = [
            flow(40001, rtt: 0.0005, direction: .active, service: 5432),
            flow(40002, rtt: 0.0009, direction: .active, service: 5432),  // worst of bucket 0
            flow(40003, rtt: 0.004, direction: .passive, service: 443),  // bucket 1, service 443
            flow(40004, rtt: 0.2, direction: .active, service: 8080),  // +Inf, a port without a series
            flow(40005, rtt: 0, direction: .active, service: 5432),  // no sample yet: never an exemplar
        ]
        let worst = MetricsEncoder.worstFlows(flows, bounds: bounds)
        #expect(worst.keys.sorted() == [0, 1, 2])
        #expect(worst[0]?.value == 0.0009 && worst[0]?.labels.last?.value == "5432")
        #expect(worst[0]?.labels.map(\.value) == ["10.0.0.1", "40002", "10.0.0.2", "5432"])
        #expect(worst[2]?.value == 0.2)
        let histogram = Histogram(bounds: bounds, counts: [1, 1, 1], sum: 0.1)
        let byService = MetricsEncoder.worstFlowsByService(flows, [5432: histogram, 443: histogram, 0: histogram])
        #expect(byService["5432"]?[0]?.value == 0.0009)
        #expect(byService["443"]?[1]?.value == 0.004)
        #expect(byService["other"]?[2]?.value == 0.2)
        // The longest label set, IPv6 at both ends, fits OpenMetrics' 128 characters.
        let longest = FlowSample(
            key: FlowKey(
                family: .ipv6, local: IPAddress("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe")!, localPort: 65535,
                remote: IPAddress("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")!, remotePort: 65535, netns: 1),
            rtt: 1)
        let labels = MetricsEncoder.worstFlows([longest], bounds: bounds)[2]!.labels
        #expect(labels.reduce(0) { $0 + "\($1.name)".count + $1.value.count } <= 128)

        var snapshot = FlowSnapshot(flows: flows, mapEntries: 5, mapCapacity: 8, rttHistogram: histogram)
        snapshot.serviceRTTHistograms = [5432: histogram, 0: histogram]
        let text = encode(snapshot, format: .prometheusText)
        #expect(!text.contains(" # {"), "no exemplars in the Prometheus text format")
        let openMetrics = encode(snapshot, format: .openMetrics)
        #expect(
            openMetrics.contains(
                #"tcp_rtt_seconds_bucket{le="0.001"} 1 # {src="10.0.0.1",sport="40002",dst="10.0.0.2",dport="5432"} 0.0009"#
                    + "\n"))
        #expect(
            openMetrics.contains(
                #"tcp_service_rtt_seconds_bucket{port="other",le="+Inf"} 3 # {src="10.0.0.1",sport="40004",dst="10.0.0.2",dport="8080"} 0.2"#
                    + "\n"))
    }

    @Test("Accept: OpenMetrics when asked for at least as strongly as text, else text 0.0.4")
    func formatNegotiation() {
        func format(_ accept: String?) -> MetricsEncoder.Format {
            ContentNegotiation.format(accept: accept.map { [$0] } ?? [])
        }
        #expect(format(nil) == .prometheusText)
        #expect(format("*/*") == .prometheusText)
        #expect(format("text/plain") == .prometheusText)
        #expect(format("application/openmetrics-text; version=1.0.0") == .openMetrics)
        #expect(format("application/openmetrics-text;version=0.0.1") == .openMetrics)
        #expect(format("application/openmetrics-text") == .openMetrics)
        #expect(format("Application/OpenMetrics-Text; Version=1.0.0") == .openMetrics)
        #expect(format("application/openmetrics-text; version=2.0.0") == .prometheusText)
        #expect(format("application/openmetrics-text; version=1.0.0; q=0") == .prometheusText)
        #expect(format("text/plain;version=0.0.4;q=0.9, application/openmetrics-text;q=0.5") == .prometheusText)
        // What Prometheus sends by default (OpenMetrics preferred).
        #expect(
            format(
                "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,"
                    + "text/plain;version=0.0.4;q=0.3,*/*;q=0.2") == .openMetrics)
        // And with scrape_protocols putting text first.
        #expect(
            format("text/plain;version=0.0.4;q=0.5,application/openmetrics-text;version=1.0.0;q=0.4,*/*;q=0.1")
                == .prometheusText)
        #expect(format("application/openmetrics-text; q=banana") == .prometheusText)
    }

    @Test("Accept-Encoding: gzip only when acceptable, q-values honoured")
    func encodingNegotiation() {
        func gzip(_ header: String?) -> Bool {
            ContentNegotiation.gzip(acceptEncoding: header.map { [$0] } ?? [])
        }
        #expect(!gzip(nil))
        #expect(!gzip("identity"))
        #expect(!gzip("br, deflate"))
        #expect(gzip("gzip"))
        #expect(gzip("GZIP"))
        #expect(gzip("deflate, gzip;q=0.5"))
        #expect(gzip("x-gzip"))
        #expect(!gzip("gzip;q=0"))
        #expect(!gzip("gzip; q=0.000"))
        #expect(gzip("*"))
        #expect(!gzip("*;q=0"))
        #expect(!gzip("gzip;q=0, *"))
        #expect(gzip("gzip;q=1.0, identity;q=0.5"))
    }

    @Test("gzip round-trips bodies of every size through a real gunzip")
    func gzipRoundTrip() throws {
        var generator = SeededGenerator(seed: 7)
        for size in [0, 1, 100, 70_000, 3_000_000] {
            // Mostly text with some noise, so the quarter-size first guess sometimes fails.
            var bytes = [UInt8]()
            bytes.reserveCapacity(size)
            for index in 0..<size {
                bytes.append(
                    index % 7 == 0
                        ? UInt8.random(in: 0...255, using: &generator) : UInt8(ascii: "a") + UInt8(index % 26))
            }
            let compressed = Gzip.compress(ByteBuffer(bytes: bytes))
            #expect(compressed.getBytes(at: compressed.readerIndex, length: 2) == [0x1f, 0x8b])
            #expect(try gunzip(Array(compressed.readableBytesView)) == bytes, "size \(size)")
        }
        // Random bytes do not compress: the first guess fails and the retry has room.
        let noise = (0..<2_000_000).map { _ in UInt8.random(in: 0...255, using: &generator) }
        #expect(try gunzip(Array(Gzip.compress(ByteBuffer(bytes: noise)).readableBytesView)) == noise)
    }
}

/// Decompresses with the system's gzip, an independent implementation.
func gunzip(_ bytes: [UInt8]) throws -> [UInt8] {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/bin/gzip")
    process.arguments = ["-dc"]
    let input = Pipe()
    let output = Pipe()
    process.standardInput = input
    process.standardOutput = output
    try process.run()
    let writer = Thread {
        input.fileHandleForWriting.write(Data(bytes))
        try? input.fileHandleForWriting.close()
    }
    writer.start()
    let data = output.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else { throw CocoaError(.fileReadCorruptFile) }
    return Array(data)
}

/// A small deterministic generator (SplitMix64), so randomized tests repeat exactly.
struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
