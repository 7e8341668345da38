// SPDX-License-Identifier: Apache-2.0

import Foundation
import Testing

/// The cardinality cap on real flows: thousands of live flows, a small `maxFlows`, and the
/// exposition checked against the kernel's own counters (`ss -tin`).
@Suite(.serialized, .enabled(if: isRoot, "needs root: loads BPF programs and creates network namespaces"))
struct CardinalityTests {
    static let port: UInt16 = 5077

    @Test(
        "5,000 live flows, maxFlows 100: exactly the top 100 by bytes get series; per-flow plus aggregate sums equal the kernel's"
    )
    func capKeepsTopFlowsAndPreservesSums() throws {
        let network = try TestNetwork(tag: "cap")
        defer { network.remove() }
        let agent = try Agent(["--cardinality.max-flows", "100", "--cardinality.rank-by", "bytes"])
        defer { agent.stop() }
        let server = try network.peer(in: network.server, ["serve", network.serverIPv4, String(Self.port)])
        defer { server.stop() }
        #expect(server.readLine() == "ready")

        // 50 heavy connections (100 socket ends with 500 kB each) and 2,450 light ones
        // (4,900 ends with 100 bytes): 5,000 flows whose top 100 by bytes are the heavy ones.
        let heavy = try network.peer(
            in: network.client, ["connect", network.serverIPv4, String(Self.port), "50", "500000"])
        defer { heavy.stop() }
        let heavyFlows = try EndToEndTests.readFlows(heavy)  // once all 500 kB are acknowledged on each
        let light = try network.peer(
            in: network.client, ["connect", network.serverIPv4, String(Self.port), "2450", "100"])
        defer { light.stop() }
        let lightFlows = try EndToEndTests.readFlows(light)
        // The peers report the flows they opened: to the server's address and port, each its own.
        for (flows, count) in [(heavyFlows, 50), (lightFlows, 2_450)] {
            #expect(flows.count == count)
            #expect(
                flows.allSatisfy {
                    $0.local == network.clientIPv4 && $0.remote == network.serverIPv4
                        && $0.remotePort == Self.port
                })
        }
        #expect(Set(heavyFlows.map(\.localPort)).isDisjoint(with: lightFlows.map(\.localPort)))
        #expect(Set((heavyFlows + lightFlows).map(\.localPort)).count == 2_500)
        // Both ends of each heavy connection, as flowstat labels them (src is the local end).
        let heavyEnds = Set(
            heavyFlows.flatMap { flow in
                [
                    FourTuple(src: flow.local, sport: flow.localPort, dst: flow.remote, dport: flow.remotePort),
                    FourTuple(src: flow.remote, sport: flow.remotePort, dst: flow.local, dport: flow.localPort),
                ]
            })

        // Wait until the server has read everything (its ends have received all bytes).
        func kernelFlows() throws -> [SocketStats] {
            let client = try network.socketStats(in: network.client).filter { $0.peerPort == Self.port }
            let server = try network.socketStats(in: network.server).filter { $0.localPort == Self.port }
            return client + server
        }
        var kernel = try kernelFlows()
        for _ in 0..<100 where kernel.count != 5_000 || kernel.contains(where: { $0.bytesReceived == nil }) {
            usleep(100_000)
            kernel = try kernelFlows()
        }
        let metrics = try agent.scrape()
        kernel = try kernelFlows()
        try #require(kernel.count == 5_000, "ss shows \(kernel.count) test flows")

        let perFlow = metrics.samples("tcp_flow_bytes_acked_total")
        #expect(perFlow.count == 100, "per-flow series: \(perFlow.count)")
        #expect(metrics.samples("tcp_flow_rtt_seconds").count == 100)
        #expect((metrics.samples("tcp_flows").first?.value ?? 0) >= 5_000)

        // The kept flows are the heavy ones: every kept test flow carried more than every
        // folded one (light flows carry 100 bytes; heavy ones 500,000).
        func isTest(_ sample: Exposition.Sample) -> Bool {
            sample.labels["sport"] == String(Self.port) || sample.labels["dport"] == String(Self.port)
        }
        let keptTest = perFlow.filter(isTest)
        let keptReceived = metrics.samples("tcp_flow_bytes_received_total").filter(isTest)
        #expect(keptTest.count == 100, "foreign flows outranked test flows: \(100 - keptTest.count)")
        #expect(keptReceived.count == keptTest.count)

        // Matched by 4-tuple, not by position: the kept series are exactly both ends of the 50
        // heavy connections the peer opened, which are also the kernel's top 100 by bytes, and
        // each one's counters are the kernel's for that socket.
        let kernelByTuple = Dictionary(
            kernel.map { (FourTuple(src: $0.local, sport: $0.localPort, dst: $0.peer, dport: $0.peerPort), $0) },
            uniquingKeysWith: { first, _ in first })
        #expect(kernelByTuple.count == 5_000, "ss shows a 4-tuple twice")
        func bytes(_ socket: SocketStats) -> UInt64 { (socket.bytesAcked ?? 0) + (socket.bytesReceived ?? 0) }
        let kernelTop = Set(
            kernel.sorted { bytes($0) > bytes($1) }.prefix(100)
                .map { FourTuple(src: $0.local, sport: $0.localPort, dst: $0.peer, dport: $0.peerPort) })
        #expect(kernelTop == heavyEnds, "the kernel's top 100 by bytes are not the heavy connections' ends")
        let receivedByTuple = Dictionary(
            keptReceived.compactMap { sample in FourTuple(sample).map { ($0, sample.value) } },
            uniquingKeysWith: { first, _ in first })
        var keptTuples: Set<FourTuple> = []
        for acked in keptTest {
            let tuple = try #require(FourTuple(acked), "a per-flow series without a 4-tuple: \(acked.labels)")
            keptTuples.insert(tuple)
            #expect(heavyEnds.contains(tuple), "kept, but not an end of a heavy connection: \(tuple)")
            let socket = try #require(kernelByTuple[tuple], "kept, but ss does not show it: \(tuple)")
            #expect(acked.value == Double(socket.bytesAcked ?? 0), "bytes acked of \(tuple) vs ss")
            let received = try #require(receivedByTuple[tuple], "no tcp_flow_bytes_received_total for \(tuple)")
            #expect(received == Double(socket.bytesReceived ?? 0), "bytes received of \(tuple) vs ss")
            #expect(bytes(socket) >= 500_000, "ss says \(tuple) is a light flow: \(bytes(socket)) bytes")
        }
        #expect(
            keptTuples == heavyEnds,
            "kept \(keptTuples.count) test flows; heavy ends missing: \(heavyEnds.subtracting(keptTuples).count)")

        // Sums: per-flow series plus the aggregates of the test's peers equal the kernel's.
        func aggregate(_ name: String) -> Double {
            metrics.samples(name).filter { $0.labels["port"] == String(Self.port) }.reduce(0) { $0 + $1.value }
        }
        let ackedInKernel = kernel.reduce(0.0) { $0 + Double($1.bytesAcked ?? 0) }
        let receivedInKernel = kernel.reduce(0.0) { $0 + Double($1.bytesReceived ?? 0) }
        let ackedExported = keptTest.reduce(0.0) { $0 + $1.value } + aggregate("tcp_peer_bytes_acked_total")
        let receivedExported = keptReceived.reduce(0.0) { $0 + $1.value } + aggregate("tcp_peer_bytes_received_total")
        #expect(ackedExported == ackedInKernel)
        #expect(receivedExported == receivedInKernel)
        #expect(Double(keptTest.count) + aggregate("tcp_peer_flows") == 5_000)
        #expect(aggregate("tcp_peer_flows_closed_total") == 0)

        let dropped = try #require(metrics.samples("flowstat_series_dropped_total").first?.value)
        #expect(dropped >= 4_900 * 11, "series dropped: \(dropped)")
        let lint = try run(["promtool", "check", "metrics"], check: false, input: metrics.text)
        #expect(lint.status == 0, "promtool: \(lint.stdout)\(lint.stderr)")
        #expect(agent.stop() == 0)
    }
}

/// One socket end as flowstat labels it: `src`/`sport` local, `dst`/`dport` the peer.
struct FourTuple: Hashable, CustomStringConvertible {
    var src: String, sport: UInt16, dst: String, dport: UInt16

    init(src: String, sport: UInt16, dst: String, dport: UInt16) {
        (self.src, self.sport, self.dst, self.dport) = (src, sport, dst, dport)
    }

    /// The 4-tuple of a per-flow sample, from its labels.
    init?(_ sample: Exposition.Sample) {
        guard let src = sample.labels["src"], let sport = sample.labels["sport"].flatMap(UInt16.init),
            let dst = sample.labels["dst"], let dport = sample.labels["dport"].flatMap(UInt16.init)
        else { return nil }
        self.init(src: src, sport: sport, dst: dst, dport: dport)
    }

    var description: String { "\(src):\(sport)->\(dst):\(dport)" }
}
