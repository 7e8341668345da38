// SPDX-License-Identifier: Apache-2.0

import FlowStatCore
import NIOCore
import Testing

@Suite("Exposition encoder")
struct MetricsEncoderTests {
    private func encode(
        _ snapshot: FlowSnapshot,
        context: ExpositionContext = Fixtures.context,
        options: MetricsEncoder.Options = .init()
    ) -> String {
        var encoder = MetricsEncoder(options: options)
        var buffer = ByteBuffer()
        encoder.encode(snapshot, context: context, into: &buffer)
        return String(buffer: buffer)
    }

    @Test("full exposition of a fixed snapshot, as exact text")
    func fullExposition() {
        let expected = Fixtures.exposition
        let actual = encode(Fixtures.snapshot)
        #expect(actual == expected)
        if actual != expected {
            // Point at the first differing line; a 10 KB string diff is unreadable.
            let pairs = zip(actual.split(separator: "\n"), expected.split(separator: "\n"))
            let firstDifference = pairs.first { $0 != $1 }
            Issue.record("first difference: \(String(describing: firstDifference))")
        }
    }

    @Test("the same flows in another order encode to the same bytes")
    func outputIsStable() {
        var shuffled = Fixtures.snapshot
        shuffled.flows.reverse()
        #expect(encode(shuffled) == encode(Fixtures.snapshot))
        let seed = TestSeed.make(for: "MetricsEncoderTests.outputIsStable")
        var generator = SeededGenerator(seed: seed)
        shuffled.flows.shuffle(using: &generator)
        #expect(encode(shuffled) == encode(Fixtures.snapshot), "seed \(seed)")
    }

    @Test("netnsLabel adds the namespace to every flow")
    func netnsLabelOption() {
        let output = encode(Fixtures.snapshot, options: .init(netnsLabel: true))
        let rttLines = output.split(separator: "\n").filter { $0.hasPrefix("tcp_flow_rtt_seconds{") }
        #expect(
            rttLines == [
                #"tcp_flow_rtt_seconds{src="10.0.0.1",sport="80",dst="10.0.0.3",dport="1000",netns="4026531840"} 0.001"#,
                #"tcp_flow_rtt_seconds{src="10.0.0.1",sport="80",dst="10.0.0.3",dport="1000",netns="4026532000"} 0.002"#,
                #"tcp_flow_rtt_seconds{src="10.0.0.1",sport="443",dst="10.0.0.2",dport="51234",netns="4026531840"} 0.000123"#,
                #"tcp_flow_rtt_seconds{src="192.168.1.5",sport="22",dst="192.168.1.9",dport="50000",netns="4026531840"} 0.000031"#,
                #"tcp_flow_rtt_seconds{src="2001:db8::1",sport="8080",dst="2001:db8::2",dport="40000",netns="4026531840"} 0.0125"#,
            ])
    }

    @Test("flows with identical label sets, netns included, are written once: the newest")
    func exactDuplicatesAreDropped() {
        // An IPv4 socket and an IPv6 socket with mapped addresses on the same 4-tuple in the
        // same namespace: only a stale map entry can produce this.
        let stale = FlowSample(key: Fixtures.key(.ipv4, "10.9.9.9", 1, "10.8.8.8", 2), rtt: 0.5, lastUpdate: 10)
        let fresh = FlowSample(
            key: Fixtures.key(.ipv6, "::ffff:10.9.9.9", 1, "::ffff:10.8.8.8", 2), rtt: 0.25, lastUpdate: 20)
        var encoder = MetricsEncoder()
        var buffer = ByteBuffer()
        let summary = encoder.encode(
            FlowSnapshot(flows: [stale, fresh], mapEntries: 2, mapCapacity: 8), context: Fixtures.context,
            into: &buffer)
        #expect(summary.flowSeries == 1)
        #expect(summary.duplicatesDropped == 1)
        let rttLines = String(buffer: buffer).split(separator: "\n").filter { $0.hasPrefix("tcp_flow_rtt_seconds{") }
        // The survivor has no rival in another namespace, so no netns label.
        #expect(rttLines == [#"tcp_flow_rtt_seconds{src="10.9.9.9",sport="1",dst="10.8.8.8",dport="2"} 0.25"#])
    }

    @Test("a duplicate beside a real namespace collision: both namespaces labelled, the duplicate dropped")
    func duplicateWithinCollision() {
        let flows = [
            FlowSample(key: Fixtures.key(.ipv4, "10.9.9.9", 1, "10.8.8.8", 2), rtt: 0.5, lastUpdate: 10),
            FlowSample(key: Fixtures.key(.ipv6, "::ffff:10.9.9.9", 1, "::ffff:10.8.8.8", 2), rtt: 0.25, lastUpdate: 20),
            FlowSample(
                key: Fixtures.key(.ipv4, "10.9.9.9", 1, "10.8.8.8", 2, netns: Fixtures.containerNetns), rtt: 0.125,
                lastUpdate: 1),
        ]
        let rttLines = encode(FlowSnapshot(flows: flows, mapEntries: 3, mapCapacity: 8))
            .split(separator: "\n").filter { $0.hasPrefix("tcp_flow_rtt_seconds{") }
        #expect(
            rttLines == [
                #"tcp_flow_rtt_seconds{src="10.9.9.9",sport="1",dst="10.8.8.8",dport="2",netns="4026531840"} 0.25"#,
                #"tcp_flow_rtt_seconds{src="10.9.9.9",sport="1",dst="10.8.8.8",dport="2",netns="4026532000"} 0.125"#,
            ])
    }

    @Test("IPv4 and IPv6 flows, duplicates and namespace collisions: the order and survivors of a plain sort")
    func orderMatchesComparisonSort() {
        // IPv4 flows take the encoder's packed fast path, the others a field-by-field
        // comparison; addresses on both sides of `::ffff:0:0/96` check that the two merge.
        let addresses = ["::", "::1", "0.0.0.9", "10.0.0.1", "10.0.0.2", "255.255.255.255", "::1:0:0:0", "2001:db8::1"]
        var random = SeededGenerator(seed: 7)
        let flows = (0..<3_000).map { index in
            FlowSample(
                key: Fixtures.key(
                    .ipv6, addresses[Int(random.next() % 8)], [1, 80, 65_535][Int(random.next() % 3)],
                    addresses[Int(random.next() % 8)], [2, 443][Int(random.next() % 2)],
                    netns: random.next() % 4 == 0 ? Fixtures.containerNetns : Fixtures.hostNetns),
                rtt: Double(index), lastUpdate: random.next() % 3)
        }

        // The reference: sort by label tuple, newest first among exact duplicates, keep the first.
        func tuple(_ flow: FlowSample) -> (IPAddress, UInt16, IPAddress, UInt16) {
            (flow.key.local, flow.key.localPort, flow.key.remote, flow.key.remotePort)
        }
        let sorted = flows.indices.sorted { a, b in
            let (x, y) = (flows[a], flows[b])
            if tuple(x) != tuple(y) { return tuple(x) < tuple(y) }
            return (x.key.netns, y.lastUpdate, a) < (y.key.netns, x.lastUpdate, b)
        }
        let survivors = sorted.indices.filter { position in
            position == 0 || tuple(flows[sorted[position]]) != tuple(flows[sorted[position - 1]])
                || flows[sorted[position]].key.netns != flows[sorted[position - 1]].key.netns
        }.map { flows[sorted[$0]] }
        let expected = survivors.map { flow in
            let collides = survivors.contains { tuple($0) == tuple(flow) && $0.key.netns != flow.key.netns }
            let netns = collides ? #",netns="\#(flow.key.netns)""# : ""
            return
                #"tcp_flow_rtt_seconds{src="\#(flow.key.local)",sport="\#(flow.key.localPort)",dst="\#(flow.key.remote)",dport="\#(flow.key.remotePort)"\#(netns)} \#(Int(flow.rtt))"#
        }

        let output = encode(FlowSnapshot(flows: flows, mapEntries: flows.count, mapCapacity: flows.count))
        let rttLines = output.split(separator: "\n").filter { $0.hasPrefix("tcp_flow_rtt_seconds{") }.map(String.init)
        #expect(rttLines == expected)
    }

    @Test("an empty snapshot still describes every family; no scrape duration before the first scrape")
    func emptySnapshot() {
        let context = ExpositionContext(build: Fixtures.build, source: SourceInfo(kind: .inetDiag))
        let output = encode(FlowSnapshot(flows: [], mapEntries: 0, mapCapacity: 0), context: context)
        let samples = output.split(separator: "\n").filter { !$0.hasPrefix("#") }
        #expect(
            samples == [
                "tcp_flows 0",
                #"flowstat_build_info{version="1.2.3",revision="1a2b3c4d",swift="6.3"} 1"#,
                #"flowstat_source_info{source="inet_diag",hook="",variant=""} 1"#,
                "flowstat_map_entries 0",
                "flowstat_map_capacity 0",
            ])
        #expect(output.split(separator: "\n").filter { $0.hasPrefix("# TYPE") }.count == 19)
    }

    @Test("a fallback source says why it runs in a reason label of flowstat_source_info")
    func fallbackReason() {
        let source = SourceInfo(kind: .inetDiag, reason: #"bpf: load failed: "EPERM""#)
        let output = encode(
            FlowSnapshot(flows: [], mapEntries: 0, mapCapacity: 0),
            context: ExpositionContext(build: Fixtures.build, source: source))
        #expect(
            output.split(separator: "\n").filter { $0.hasPrefix("flowstat_source_info") } == [
                #"flowstat_source_info{source="inet_diag",hook="",variant="",reason="bpf: load failed: \"EPERM\""} 1"#
            ])
    }

    @Test("the BPF programs' event counters, when the source has them, are counters of their own")
    func kernelEventCounters() {
        let context = ExpositionContext(build: Fixtures.build, source: SourceInfo(kind: .bpf))
        let events = KernelEventCounts(
            updates: 1_000_000, updatesSkipped: 7, insertFailures: 0, evictions: 42,
            openedActive: 5, openedPassive: 6, closed: 9, eventsLost: 3)
        let output = encode(
            FlowSnapshot(flows: [], mapEntries: 3, mapCapacity: 4, kernelEvents: events),
            context: context)
        let start = output.range(of: "# HELP flowstat_map_evictions_total")!.lowerBound
        let end = output.range(of: "# HELP flowstat_scrape_duration_seconds")!.lowerBound
        #expect(
            output[start..<end] == """
                # HELP flowstat_map_evictions_total Flows dropped for want of room: by the LRU flow map, or (live mode) left out of a snapshot; raise flowstat.bpf.mapEntries.
                # TYPE flowstat_map_evictions_total counter
                flowstat_map_evictions_total 42
                # HELP flowstat_map_insert_failures_total New flows the flow map refused to store.
                # TYPE flowstat_map_insert_failures_total counter
                flowstat_map_insert_failures_total 0
                # HELP flowstat_bpf_updates_total Flow entries written by the BPF programs.
                # TYPE flowstat_bpf_updates_total counter
                flowstat_bpf_updates_total 1000000
                # HELP flowstat_bpf_updates_skipped_total Flow updates skipped by the per-flow minimum update interval.
                # TYPE flowstat_bpf_updates_skipped_total counter
                flowstat_bpf_updates_skipped_total 7
                # HELP flowstat_events_lost_total Closed-flow records the ring buffer had no room for (counts and histograms stay exact).
                # TYPE flowstat_events_lost_total counter
                flowstat_events_lost_total 3

                """)
        #expect(
            output.contains(
                """
                # TYPE tcp_flows gauge
                tcp_flows 0
                # HELP tcp_flows_opened_total TCP flows established on this host, by who opened them.
                # TYPE tcp_flows_opened_total counter
                tcp_flows_opened_total{direction="active"} 5
                tcp_flows_opened_total{direction="passive"} 6
                # HELP tcp_flows_closed_total Established TCP flows that closed on this host.
                # TYPE tcp_flows_closed_total counter
                tcp_flows_closed_total 9

                """))
    }

    @Test("the RTT histogram: cumulative buckets, +Inf equal to _count, _sum in seconds")
    func rttHistogram() {
        let context = ExpositionContext(build: Fixtures.build, source: SourceInfo(kind: .bpf))
        let histogram = Histogram(bounds: [0.0001, 0.001, 0.01], counts: [3, 0, 5, 2], sum: 0.0425)
        let output = encode(
            FlowSnapshot(flows: [], mapEntries: 0, mapCapacity: 0, rttHistogram: histogram),
            context: context)
        #expect(
            output.contains(
                """
                # HELP tcp_rtt_seconds Every round-trip time sample the kernel took, on every TCP flow.
                # TYPE tcp_rtt_seconds histogram
                tcp_rtt_seconds_bucket{le="0.0001"} 3
                tcp_rtt_seconds_bucket{le="0.001"} 3
                tcp_rtt_seconds_bucket{le="0.01"} 8
                tcp_rtt_seconds_bucket{le="+Inf"} 10
                tcp_rtt_seconds_sum 0.0425
                tcp_rtt_seconds_count 10

                """))
    }

    @Test("label values of self metrics are escaped")
    func selfMetricLabelsAreEscaped() {
        let context = ExpositionContext(
            build: BuildInfo(version: "1.0 \"beta\"\nC:\\x", swiftVersion: "6.3"), source: SourceInfo(kind: .fake))
        let output = encode(FlowSnapshot(flows: [], mapEntries: 0, mapCapacity: 0), context: context)
        #expect(
            output.contains(#"flowstat_build_info{version="1.0 \"beta\"\nC:\\x",revision="unknown",swift="6.3"} 1"#))
    }

    @Test("an encoder reused across snapshots gives the same output as a fresh one")
    func encoderReuse() {
        var encoder = MetricsEncoder()
        var buffer = ByteBuffer()
        encoder.encode(Fixtures.snapshot, context: Fixtures.context, into: &buffer)
        buffer.clear()
        let small = FlowSnapshot(flows: [Fixtures.snapshot.flows[3]], mapEntries: 1, mapCapacity: 2)
        encoder.encode(small, context: Fixtures.context, into: &buffer)
        #expect(String(buffer: buffer) == encode(small))
    }

    @Test("many flows: one series per flow and family, no duplicate series")
    func manyFlows() {
        let flowCount = 20_000
        var flows: [FlowSample] = []
        flows.reserveCapacity(flowCount)
        for index in 0..<flowCount {
            // Every fourth flow repeats the previous 4-tuple in another namespace.
            let base = index % 4 == 3 ? index - 1 : index
            let local = IPAddress(ipv4: 0x0A00_0000 | UInt32(base / 60_000))
            let remote =
                base % 2 == 0
                ? IPAddress(ipv4: 0xC0A8_0000 | UInt32(base)) : IPAddress("2001:db8::\(String(base, radix: 16))")!
            flows.append(
                FlowSample(
                    key: FlowKey(
                        family: .ipv4, local: local, localPort: UInt16(1_024 + base % 60_000), remote: remote,
                        remotePort: 443, netns: Fixtures.hostNetns + UInt32(index % 4 == 3 ? 1 : 0)),
                    rtt: Double(index) * 1e-6, cwnd: 10, bytesAcked: UInt64(index) * 1_448))
        }
        var encoder = MetricsEncoder()
        var buffer = ByteBuffer()
        let clock = ContinuousClock()
        var summary: EncodeSummary?
        let elapsed = clock.measure {
            summary = encoder.encode(
                FlowSnapshot(flows: flows, mapEntries: flowCount, mapCapacity: flowCount), context: Fixtures.context,
                into: &buffer)
        }
        let series = flowCount * 11
        print("encoded \(series) series in \(elapsed) (\(elapsed / series) per series, unoptimized build)")

        #expect(summary?.flowSeries == flowCount)
        #expect(summary?.duplicatesDropped == 0)
        let lines = String(buffer: buffer).split(separator: "\n").filter { !$0.hasPrefix("#") }
        let seriesNames = lines.map { $0[..<$0.lastIndex(of: " ")!] }
        #expect(Set(seriesNames).count == seriesNames.count)
        #expect(lines.count(where: { $0.hasPrefix("tcp_flow_bytes_acked_total{") }) == flowCount)

        // Every value is its own flow's: flow i has RTT i µs and i × 1,448 bytes acked, so the two
        // series of one label set name the same i, and every i appears once.
        func values(_ name: String) -> [Substring: Substring] {
            Dictionary(
                uniqueKeysWithValues: lines.filter { $0.hasPrefix(name + "{") }.map {
                    (
                        $0[$0.firstIndex(of: "{")!..<$0.lastIndex(of: " ")!],
                        $0[$0.index(after: $0.lastIndex(of: " ")!)...]
                    )
                })
        }
        let rtts = values("tcp_flow_rtt_seconds")
        let bytes = values("tcp_flow_bytes_acked_total")
        #expect(rtts.count == flowCount)
        let indices = rtts.map { labels, rtt in
            let index = Int((Double(rtt)! * 1e6).rounded())
            #expect(bytes[labels].flatMap { UInt64($0) } == UInt64(index) * 1_448, "\(labels)")
            return index
        }
        #expect(Set(indices) == Set(0..<flowCount))
    }

    @Test("closed-flow histograms, aggregates and the dropped-series counter, as exact text")
    func aggregatesAndClosedFlows() {
        let key = AggregateKey(peer: .address(IPAddress("::ffff:10.0.0.2")!), port: .port(443))
        let live = FlowTotals(
            flows: 2, bytesAcked: 10, bytesReceived: 20, dataSegmentsIn: 3, dataSegmentsOut: 4, retransmits: 1)
        let closed = FlowTotals(
            flows: 5, bytesAcked: 100, bytesReceived: 200, dataSegmentsIn: 30, dataSegmentsOut: 40, retransmits: 0)
        var context = Fixtures.context
        context.totalFlows = 7
        context.aggregates = [
            Aggregate(key: key, live: live, closed: closed),
            Aggregate(key: .other, live: FlowTotals(), closed: FlowTotals()),
        ]
        context.seriesDropped = 22
        let snapshot = FlowSnapshot(
            flows: [], mapEntries: 0, mapCapacity: 0,
            flowDurationHistogram: Histogram(bounds: [0.001, 1], counts: [1, 2, 3], sum: 12.5),
            flowBytesHistogram: Histogram(bounds: [64, 1024], counts: [4, 0, 1], sum: 5000))
        let output = encode(snapshot, context: context)
        let start = output.range(of: "# HELP tcp_flows ")!.lowerBound
        let end = output.range(of: "# HELP flowstat_build_info")!.lowerBound
        #expect(
            output[start..<end] == """
                # HELP tcp_flows TCP flows the agent sees now (selected ones, before the cardinality cap).
                # TYPE tcp_flows gauge
                tcp_flows 7
                # HELP tcp_flow_duration_seconds Lifetime of the TCP flows that closed, from established to closed.
                # TYPE tcp_flow_duration_seconds histogram
                tcp_flow_duration_seconds_bucket{le="0.001"} 1
                tcp_flow_duration_seconds_bucket{le="1"} 3
                tcp_flow_duration_seconds_bucket{le="+Inf"} 6
                tcp_flow_duration_seconds_sum 12.5
                tcp_flow_duration_seconds_count 6
                # HELP tcp_flow_bytes Bytes a closed TCP flow carried: bytes acked plus bytes received.
                # TYPE tcp_flow_bytes histogram
                tcp_flow_bytes_bucket{le="64"} 4
                tcp_flow_bytes_bucket{le="1024"} 4
                tcp_flow_bytes_bucket{le="+Inf"} 5
                tcp_flow_bytes_sum 5000
                tcp_flow_bytes_count 5
                # HELP tcp_peer_flows Live TCP flows to this peer and service port without their own series (cardinality cap).
                # TYPE tcp_peer_flows gauge
                tcp_peer_flows{peer="10.0.0.2",port="443"} 2
                tcp_peer_flows{peer="other",port="other"} 0
                # HELP tcp_peer_flows_closed_total TCP flows to this peer and service port that closed.
                # TYPE tcp_peer_flows_closed_total counter
                tcp_peer_flows_closed_total{peer="10.0.0.2",port="443"} 5
                tcp_peer_flows_closed_total{peer="other",port="other"} 0
                # HELP tcp_peer_bytes_acked_total Bytes acked on closed flows and on live flows without their own series.
                # TYPE tcp_peer_bytes_acked_total counter
                tcp_peer_bytes_acked_total{peer="10.0.0.2",port="443"} 110
                tcp_peer_bytes_acked_total{peer="other",port="other"} 0
                # HELP tcp_peer_bytes_received_total Bytes received on closed flows and on live flows without their own series.
                # TYPE tcp_peer_bytes_received_total counter
                tcp_peer_bytes_received_total{peer="10.0.0.2",port="443"} 220
                tcp_peer_bytes_received_total{peer="other",port="other"} 0
                # HELP tcp_peer_data_segments_in_total Data segments received on closed flows and on live flows without their own series.
                # TYPE tcp_peer_data_segments_in_total counter
                tcp_peer_data_segments_in_total{peer="10.0.0.2",port="443"} 33
                tcp_peer_data_segments_in_total{peer="other",port="other"} 0
                # HELP tcp_peer_data_segments_out_total Data segments sent on closed flows and on live flows without their own series.
                # TYPE tcp_peer_data_segments_out_total counter
                tcp_peer_data_segments_out_total{peer="10.0.0.2",port="443"} 44
                tcp_peer_data_segments_out_total{peer="other",port="other"} 0
                # HELP tcp_peer_retransmits_total Segments retransmitted on closed flows and on live flows without their own series.
                # TYPE tcp_peer_retransmits_total counter
                tcp_peer_retransmits_total{peer="10.0.0.2",port="443"} 1
                tcp_peer_retransmits_total{peer="other",port="other"} 0
                # HELP tcp_peer_limited_seconds_total Seconds of closed flows and of live flows without their own series, by what limited them, as for single flows.
                # TYPE tcp_peer_limited_seconds_total counter

                """)
        #expect(
            output.contains(
                """
                # HELP flowstat_series_dropped_total Per-flow series folded into aggregates by the cardinality cap.
                # TYPE flowstat_series_dropped_total counter
                flowstat_series_dropped_total 22

                """))
    }
}

@Suite("Limited seconds per aggregate")
struct LimitedSecondsAggregateTests {
    static func flow(busy: Double, receiver: Double, senderBuffer: Double, age: Double, timed: Bool = true)
        -> FlowSample
    {
        var flow = FlowSample(
            key: FlowKey(
                family: .ipv4, local: IPAddress("10.1.0.1")!, localPort: 40_000, remote: IPAddress("10.1.0.2")!,
                remotePort: 443, netns: 1),
            direction: .active, lastUpdate: 1_000_000_000 + UInt64(age * 1e9))
        flow.firstSeen = 1_000_000_000
        flow.fields = timed ? [.timeLimits, .detail] : .detail
        flow.busyTime = busy
        flow.receiverLimitedTime = receiver
        flow.senderBufferLimitedTime = senderBuffer
        flow.deriveApplicationTime()
        return flow
    }

    @Test("an aggregate adds each reason's seconds of its live and closed flows; untimed flows add none")
    func sums() {
        var live = FlowTotals()
        live.add(Self.flow(busy: 4, receiver: 1, senderBuffer: 0.5, age: 10))  // 2.5 / 1 / 0.5 / 6
        var closed = FlowTotals()
        closed.add(Self.flow(busy: 2, receiver: 0, senderBuffer: 0, age: 3))  // 2 / 0 / 0 / 1
        closed.add(Self.flow(busy: 9, receiver: 9, senderBuffer: 0, age: 1, timed: false))
        let timed = Aggregate(
            key: AggregateKey(peer: .address(IPAddress("10.1.0.2")!), port: .port(443)), live: live, closed: closed)
        var untimedTotals = FlowTotals()
        untimedTotals.add(Self.flow(busy: 1, receiver: 0, senderBuffer: 0, age: 1, timed: false))
        let untimed = Aggregate(
            key: AggregateKey(peer: .other, port: .other), live: untimedTotals, closed: FlowTotals())
        var encoder = MetricsEncoder()
        var buffer = ByteBuffer()
        encoder.encode(
            FlowSnapshot(flows: [], mapEntries: 0, mapCapacity: 0),
            context: ExpositionContext(source: Fixtures.sourceInfo, aggregates: [timed, untimed]), into: &buffer)
        let lines = String(buffer: buffer).split(separator: "\n").filter {
            $0.hasPrefix("tcp_peer_limited_seconds_total{")
        }
        #expect(
            lines == [
                #"tcp_peer_limited_seconds_total{peer="10.1.0.2",port="443",reason="network"} 4.5"#,
                #"tcp_peer_limited_seconds_total{peer="10.1.0.2",port="443",reason="receiver"} 1"#,
                #"tcp_peer_limited_seconds_total{peer="10.1.0.2",port="443",reason="sender_buffer"} 0.5"#,
                #"tcp_peer_limited_seconds_total{peer="10.1.0.2",port="443",reason="application"} 7"#,
            ])
    }
}
