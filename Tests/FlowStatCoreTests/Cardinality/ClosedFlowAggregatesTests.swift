// SPDX-License-Identifier: Apache-2.0

import FlowStatCore
import Testing

/// Closed flows on their way to the `tcp_peer_*` aggregates: selected like live flows, keyed
/// by peer and service port, bounded.
@Suite("Closed-flow aggregates")
struct ClosedFlowAggregatesTests {
    static func closed(
        _ remote: String, _ remotePort: UInt16, local: UInt16 = 40_000, pid: UInt32 = 0, comm: String = "",
        bytes: UInt64 = 100
    ) -> FlowSample {
        FlowSample(
            key: FlowKey(
                family: .ipv4, local: IPAddress("10.0.0.1")!, localPort: local, remote: IPAddress(remote)!,
                remotePort: remotePort, netns: 1),
            bytesAcked: bytes, bytesReceived: 1, direction: .active, pid: pid, comm: comm)
    }

    @Test("only the flows the selection selects are counted, by the owner recorded at the close")
    func selection() throws {
        let aggregates = ClosedFlowAggregates(servicePorts: ServicePorts())
        aggregates.select(
            with: FlowFilter(selection: FlowSelection(cmds: ["nginx"], remotePorts: [PortRange(lower: 80, upper: 80)])))
        aggregates.add([
            Self.closed("10.0.0.2", 80, pid: 7, comm: "nginx"),
            Self.closed("10.0.0.2", 80, pid: 8, comm: "curl"),
            Self.closed("10.0.0.2", 443, pid: 7, comm: "nginx"),
            Self.closed("10.0.0.3", 80, pid: 7, comm: "nginx", bytes: 5),
        ])
        let sums = aggregates.drain()
        #expect(sums.count == 2)
        #expect(sums[AggregateKey(peer: .address(IPAddress("10.0.0.2")!), port: .port(80))]?.flows == 1)
        #expect(sums[AggregateKey(peer: .address(IPAddress("10.0.0.3")!), port: .port(80))]?.bytesAcked == 5)
        #expect(aggregates.drain().isEmpty)  // each closed flow is in one batch

        aggregates.select(with: nil)
        aggregates.add([Self.closed("10.0.0.2", 443)])
        #expect(aggregates.drain().count == 1)
    }

    @Test("past the key bound, new keys fold into other; totals are kept")
    func bounded() {
        let aggregates = ClosedFlowAggregates(servicePorts: ServicePorts())
        let peers = ClosedFlowAggregates.maxPendingKeys
        aggregates.add((0..<peers).map { Self.closed("10.\($0 >> 16).\(($0 >> 8) & 255).\($0 & 255)", 80) })
        aggregates.add([Self.closed("11.0.0.1", 80), Self.closed("11.0.0.2", 80), Self.closed("11.0.0.3", 22)])
        let sums = aggregates.drain()
        #expect(sums.count == peers + 1)
        #expect(sums[.other]?.flows == 3)
        #expect(sums.values.reduce(0) { $0 + $1.flows } == UInt64(peers + 3))
    }
}
