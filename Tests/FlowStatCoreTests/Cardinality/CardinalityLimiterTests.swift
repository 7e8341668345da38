// SPDX-License-Identifier: Apache-2.0

import Testing

@testable import FlowStatCore

@Suite("Cardinality limiter and folding rules")
struct CardinalityLimiterTests {
    /// A flow from 10.0.0.1:`local` to `peer`:`remote` carrying `bytes` each way.
    static func flow(
        peer: String = "10.0.0.2", local: UInt16 = 443, remote: UInt16 = 50_000, bytes: UInt64 = 0,
        retransmits: UInt64 = 0, rtt: Double = 0.001, direction: FlowDirection = .passive
    ) -> FlowSample {
        FlowSample(
            key: Fixtures.key(.ipv4, "10.0.0.1", local, peer, remote), rtt: rtt, dataSegmentsIn: 1, dataSegmentsOut: 2,
            bytesAcked: bytes, bytesReceived: bytes, retransmits: retransmits, direction: direction)
    }

    static func totals(_ flows: [FlowSample]) -> FlowTotals {
        var totals = FlowTotals()
        for flow in flows { totals.add(flow) }
        return totals
    }

    static func sum(_ aggregates: [Aggregate]) -> FlowTotals {
        var totals = FlowTotals()
        for aggregate in aggregates { totals.add(aggregate.total) }
        return totals
    }

    @Test("the service port: local for accepted flows, remote for opened ones, else the non-ephemeral end")
    func servicePorts() {
        let ports = ServicePorts(ephemeral: 32_768...60_999)
        let peer = IPAddress("10.0.0.2")!
        #expect(ports.key(local: 8080, remote: 40_000, peer: peer, direction: .passive).port == .port(8080))
        #expect(ports.key(local: 40_000, remote: 5432, peer: peer, direction: .active).port == .port(5432))
        #expect(ports.key(local: 22, remote: 50_000, peer: peer, direction: .unknown).port == .port(22))
        #expect(ports.key(local: 50_000, remote: 443, peer: peer, direction: .unknown).port == .port(443))
        #expect(ports.key(local: 50_000, remote: 40_000, peer: peer, direction: .unknown).port == .ephemeral)
        #expect(ports.key(local: 22, remote: 50_000, peer: peer, direction: .unknown).peerLabel == "10.0.0.2")
        // IPv4 on an IPv6 socket shows as IPv4, like ss prints it.
        let mapped = ports.key(local: 1, remote: 2, peer: IPAddress("::ffff:10.0.0.9")!, direction: .passive)
        #expect(mapped.peerLabel == "10.0.0.9")
    }

    @Test("under the cap every flow keeps its series and nothing is folded")
    func underTheCap() {
        var limiter = CardinalityLimiter(limits: CardinalityLimits(maxFlows: 3))
        let flows = (0..<3).map { Self.flow(remote: 50_000 + UInt16($0), bytes: UInt64($0)) }
        let result = limiter.apply(to: flows, closed: nil, perFlowFamilies: 11, now: 0)
        #expect(result.kept.count == 3)
        #expect(result.folded == 0)
        #expect(result.aggregates.isEmpty)
        #expect(limiter.seriesDropped == 0)
    }

    @Test("over the cap the top flows by each rank keep their series; sums are preserved", arguments: FlowRank.allCases)
    func topFlowsByRank(rank: FlowRank) {
        var limiter = CardinalityLimiter(limits: CardinalityLimits(maxFlows: 10, rankBy: rank))
        // Rank values 0…49, in scrambled order, on three peers.
        let flows = (0..<50).map { index -> FlowSample in
            let value = (index * 37) % 50
            return Self.flow(
                peer: "10.0.0.\(2 + index % 3)", remote: 40_000 + UInt16(index), bytes: UInt64(value) * 1000,
                retransmits: UInt64(value), rtt: Double(value) / 1000)
        }
        let result = limiter.apply(to: flows, closed: nil, perFlowFamilies: 11, now: 0)
        #expect(result.kept.count == 10)
        #expect(result.folded == 40)
        let keptValues = Set(result.kept.map { $0.retransmits })
        #expect(keptValues == Set((40..<50).map(UInt64.init)))
        var output = Self.totals(result.kept)
        output.add(Self.sum(result.aggregates))
        #expect(output == Self.totals(flows))
        #expect(result.aggregates.map(\.key.peerLabel) == ["10.0.0.2", "10.0.0.3", "10.0.0.4"])
        #expect(result.aggregates.allSatisfy { $0.key.port == .port(443) })
        #expect(limiter.seriesDropped == 40 * 11)
    }

    @Test("equal ranks are broken by the 4-tuple, so the choice is stable")
    func stableTies() {
        var first = CardinalityLimiter(limits: CardinalityLimits(maxFlows: 5))
        var second = CardinalityLimiter(limits: CardinalityLimits(maxFlows: 5))
        let flows = (0..<20).map { Self.flow(remote: 40_000 + UInt16($0)) }
        let kept = first.apply(to: flows, closed: nil, perFlowFamilies: 1, now: 0).kept.map(\.key.remotePort)
        let reversed = second.apply(to: flows.reversed(), closed: nil, perFlowFamilies: 1, now: 0).kept.map(
            \.key.remotePort)
        #expect(Set(kept) == Set(reversed))
        #expect(Set(kept) == [40_000, 40_001, 40_002, 40_003, 40_004])
    }

    @Test("too many peers fold into per-port aggregates, then into other; sums are preserved")
    func aggregateFolding() {
        // Room for 4 aggregates: 3 for (peer, port) keys, the last quarter for per-port keys.
        var limiter = CardinalityLimiter(limits: CardinalityLimits(maxFlows: 1, maxAggregates: 4))
        var flows = (0..<6).map { Self.flow(peer: "10.0.1.\($0)", local: 443, bytes: 1) }
        flows += (0..<3).map { Self.flow(peer: "10.0.2.\($0)", local: 80, bytes: 1) }
        flows.append(Self.flow(peer: "10.0.3.1", local: 22, bytes: 100))  // the one kept
        let result = limiter.apply(to: flows, closed: nil, perFlowFamilies: 11, now: 0)
        #expect(result.kept.map(\.key.localPort) == [22])
        let labels = result.aggregates.map { "\($0.key.peerLabel):\($0.key.portLabel)=\($0.live.flows)" }
        // Three peers admitted first come, first served; the other 443 peers by port; the
        // port-80 flows find no room left even for their port: "other".
        #expect(labels == ["10.0.1.0:443=1", "10.0.1.1:443=1", "10.0.1.2:443=1", "other:443=3", "other:other=3"])
        var output = Self.totals(result.kept)
        output.add(Self.sum(result.aggregates))
        #expect(output == Self.totals(flows))
        #expect(result.aggregates.contains { $0.key == .other })
    }

    @Test("closed flows add to their aggregate and persist; aggregate counters never go down")
    func closedFlowsPersist() {
        var limiter = CardinalityLimiter(limits: CardinalityLimits(maxFlows: 0))
        let key = AggregateKey(peer: .address(IPAddress("10.0.0.2")!), port: .port(443))
        let closed = FlowTotals(
            flows: 2, bytesAcked: 10, bytesReceived: 20, dataSegmentsIn: 3, dataSegmentsOut: 4, retransmits: 1)
        let first = limiter.apply(to: [Self.flow()], closed: [key: closed], perFlowFamilies: 11, now: 0)
        #expect(first.kept.count == 1)  // cap off: every live flow keeps its series
        #expect(first.aggregates.map(\.key) == [key])
        #expect(first.aggregates[0].closed == closed)
        #expect(first.aggregates[0].live.flows == 0)

        let second = limiter.apply(to: [], closed: [key: closed], perFlowFamilies: 11, now: 10)
        #expect(second.aggregates[0].closed.flows == 4)
        #expect(second.aggregates[0].closed.bytesReceived == 40)
        let third = limiter.apply(to: [], closed: nil, perFlowFamilies: 11, now: 20)
        #expect(third.aggregates[0].closed.flows == 4)
    }

    @Test("selection finds the k-th largest value, also among many equal ones")
    func selection() {
        let seed = TestSeed.make(for: "CardinalityLimiterTests.selection")
        var generator = SeededGenerator(seed: seed)
        for iteration in 0..<50 {
            let count = Int.random(in: 1...300, using: &generator)
            var values = (0..<count).map { _ in Double(Int.random(in: 0...5, using: &generator)) }
            let input = values
            let sorted = values.sorted(by: >)
            let k = Int.random(in: 1...count, using: &generator)
            #expect(
                CardinalityLimiter.select(&values, largest: k) == sorted[k - 1],
                "seed \(seed) #\(iteration): k \(k) of \(input)")
        }
        var zeros = [Double](repeating: 0, count: 40_000)
        #expect(CardinalityLimiter.select(&zeros, largest: 2_000) == 0)
    }

    @Test("an aggregate idle past the timeout is dropped, freeing its slot")
    func idleAggregatesExpire() {
        var limiter = CardinalityLimiter(limits: CardinalityLimits(maxFlows: 0, aggregateIdleTimeout: 60))
        let key = AggregateKey(peer: .address(IPAddress("10.0.0.2")!), port: .port(443))
        let one = FlowTotals(
            flows: 1, bytesAcked: 1, bytesReceived: 1, dataSegmentsIn: 1, dataSegmentsOut: 1, retransmits: 0)
        _ = limiter.apply(to: [], closed: [key: one], perFlowFamilies: 11, now: 0)
        #expect(limiter.apply(to: [], closed: nil, perFlowFamilies: 11, now: 59).aggregates.count == 1)
        #expect(limiter.apply(to: [], closed: nil, perFlowFamilies: 11, now: 61).aggregates.isEmpty)
    }
}
