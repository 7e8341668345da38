// SPDX-License-Identifier: Apache-2.0

import Testing

@testable import FlowStatCore

/// The "limited by" column: the reason with the largest share, over a flow's observed life in
/// `dump` and the page, over the refresh interval in `top`; and sorting by it.
@Suite("Limited-by column")
struct LimitedByViewTests {
    /// A flow seen for `age` seconds, busy `busy` of them, `receiver` and `sender` of those
    /// limited by the peer's window and the send buffer.
    static func flow(port: UInt16, busy: Double, receiver: Double, sender: Double = 0, age: Double) -> FlowSample {
        var flow = FlowSample(
            key: Fixtures.key(.ipv4, "10.0.0.1", port, "10.0.0.2", 80), lastUpdate: 1_000_000_000 + UInt64(age * 1e9))
        flow.firstSeen = 1_000_000_000
        flow.fields = .timeLimits
        flow.busyTime = busy
        flow.receiverLimitedTime = receiver
        flow.senderBufferLimitedTime = sender
        flow.deriveApplicationTime()
        return flow
    }

    @Test("the largest share wins, ties to the first reason; nothing known or nothing spent: none")
    func share() {
        #expect(LimitShare(seconds: [1, 9, 0, 0])?.reason == .receiver)
        #expect(LimitShare(seconds: [1, 9, 0, 0])?.description == "receiver 90%")
        #expect(LimitShare(seconds: [2, 2, 0, 0])?.reason == .network)
        #expect(LimitShare(seconds: [0, 0, 0, 0]) == nil)
        #expect(Self.flow(port: 1, busy: 1, receiver: 0, age: 10).limitShare?.description == "application 90%")
        var untimed = Self.flow(port: 1, busy: 1, receiver: 1, age: 10)
        untimed.fields = []
        #expect(untimed.limitShare == nil)
    }

    @Test("dump shows each flow's share over its life and sorts by it: receiver, send buffer, network, application")
    func dump() {
        let flows = [
            Self.flow(port: 1, busy: 1, receiver: 0, age: 10),  // application 90%
            Self.flow(port: 2, busy: 10, receiver: 8, age: 10),  // receiver 80%
            Self.flow(port: 3, busy: 10, receiver: 0, age: 10),  // network 100%
            Self.flow(port: 4, busy: 10, receiver: 0, sender: 6, age: 10),  // sender_buffer 60%
        ]
        #expect(FlowRanking.top(flows, by: .limited) == [1, 3, 2, 0])
        let lines = FlowDumpTable.render(flows, indices: [1, 0])
        #expect(lines[0].contains("limited by"))
        #expect(lines[1].contains("receiver 80%") && lines[2].contains("application 90%"))
    }

    @Test("top shows what limited each flow since the previous refresh, not over its life")
    func top() {
        var view = TopView(sort: .limited)
        // Both mostly idle so far; then one sends into a full receive window for 2 s, the
        // other stays idle.
        view.update(
            flows: [
                Self.flow(port: 1, busy: 0, receiver: 0, age: 10), Self.flow(port: 2, busy: 0, receiver: 0, age: 10),
            ],
            time: 0)
        view.update(
            flows: [
                Self.flow(port: 1, busy: 2, receiver: 2, age: 12), Self.flow(port: 2, busy: 0, receiver: 0, age: 12),
            ],
            time: 2_000_000_000)
        #expect(view.rates[0]?.limitShare?.description == "receiver 100%")
        #expect(view.rates[1]?.limitShare?.description == "application 100%")
        // Over its life the first is still mostly idle: dump would say application.
        #expect(view.flows[0].limitShare?.reason == .application)
        #expect(view.ranked(limit: nil) == [0, 1])
        let frame = view.frame(width: 200, height: 10, clock: "", interval: 2)
        #expect(frame[3].contains("limited by") && frame[4].contains("receiver 100%"))
        #expect(TopView.SortKey(key: "l") == .limited)
    }
}

@Suite("Limited seconds never fall")
struct LimitedSecondsRoundingTests {
    @Test("network seconds that stayed put read the same while the receiver-limited time grows")
    func networkExact() {
        // Whole microseconds, as every source gives them; subtracted in doubles, the first
        // pair gives 0.011999999999999567 and the second 0.012000000000000455.
        let early = LimitedByViewTests.flow(port: 1, busy: 5.012, receiver: 5, age: 20)
        let later = LimitedByViewTests.flow(port: 1, busy: 10.012, receiver: 10, age: 20)
        #expect(early.limitedTime(.network) == 0.012)
        #expect(later.limitedTime(.network) == early.limitedTime(.network))
    }
}

@Suite("Application seconds stay monotonic")
struct DumpedFlowHistoryTests {
    @Test("a dumped flow's application seconds never fall between dumps; its age counts from its first dump")
    func monotonic() {
        var history = DumpedFlowHistory()
        var first = LimitedByViewTests.flow(port: 1, busy: 5, receiver: 0, age: 10)
        first.firstSeen = 0
        var flows = [first]
        history.fill(&flows)
        // A dump has no age: the first one starts it.
        #expect(flows[0].firstSeen == first.lastUpdate && flows[0].applicationTime == 0)
        let start = flows[0].firstSeen
        // 10 s on, busy 9 s in all: application 1 s.
        var later = LimitedByViewTests.flow(port: 1, busy: 9, receiver: 0, age: 0)
        later.lastUpdate = start + 10_000_000_000
        flows = [later]
        history.fill(&flows)
        #expect(flows[0].firstSeen == start)
        #expect(abs(flows[0].applicationTime - 1) < 1e-9)
        // Busy counted a tick more than the age advanced: held, not fallen.
        var tick = LimitedByViewTests.flow(port: 1, busy: 9.008, receiver: 0, age: 0)
        tick.lastUpdate = start + 10_004_000_000
        flows = [tick]
        history.fill(&flows)
        #expect(abs(flows[0].applicationTime - 1) < 1e-9)
        // Gone from one dump: a flow on the same 4-tuple later starts afresh.
        flows = []
        history.fill(&flows)
        var reopened = LimitedByViewTests.flow(port: 1, busy: 0, receiver: 0, age: 0)
        reopened.lastUpdate = start + 20_000_000_000
        flows = [reopened]
        history.fill(&flows)
        #expect(flows[0].firstSeen == reopened.lastUpdate && flows[0].applicationTime == 0)
    }
}
