import Foundation
import Testing

/// The cardinality cap on real flows: thousands of live flows, a small `maxFlows`, and the
/// exposition checked against the kernel's own counters (`ss -tin`).
@Suite(.serialized, .enabled(if: isRoot, "needs root: loads BPF programs and creates network namespaces"))
struct CardinalityTests {
    static let port: UInt16 = 5077

    @Test("5,000 live flows, maxFlows 100: exactly the top 100 by bytes get series; per-flow plus aggregate sums equal the kernel's")
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
        let heavy = try network.peer(in: network.client, ["connect", network.serverIPv4, String(Self.port), "50", "500000"])
        defer { heavy.stop() }
        #expect(heavy.readLine() != nil)
        let light = try network.peer(in: network.client, ["connect", network.serverIPv4, String(Self.port), "2450", "100"])
        defer { light.stop() }
        #expect(light.readLine() != nil)

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
        for (acked, received) in zip(keptTest, keptReceived) {
            #expect(acked.value + received.value >= 500_000, "a light flow kept: \(acked.labels)")
        }

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
