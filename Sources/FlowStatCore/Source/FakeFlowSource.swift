// SPDX-License-Identifier: Apache-2.0

import NIOConcurrencyHelpers

/// A flow source that returns a snapshot given to it, for tests and `--source fake` demos.
///
/// It never touches the kernel. Tests can swap the snapshot or make `snapshot()` fail to
/// exercise error paths; it records whether `shutdown()` was called. Not for production.
public final class FakeFlowSource: FlowSource {
    private struct State {
        var snapshot: FlowSnapshot
        var failure: (any Error)?
        var isShutDown = false
    }

    private let state: NIOLockedValueBox<State>
    public let info: SourceInfo

    /// Creates a source that returns `snapshot` until told otherwise.
    public init(
        snapshot: FlowSnapshot = FakeFlowSource.demoSnapshot,
        info: SourceInfo = SourceInfo(kind: .fake)
    ) {
        self.state = NIOLockedValueBox(State(snapshot: snapshot))
        self.info = info
    }

    public func snapshot() throws -> FlowSnapshot {
        try state.withLockedValue { state in
            if let failure = state.failure { throw failure }
            return state.snapshot
        }
    }

    public var isServing: Bool {
        state.withLockedValue { !$0.isShutDown && $0.failure == nil }
    }

    public func shutdown() {
        state.withLockedValue { $0.isShutDown = true }
    }

    /// Whether `shutdown()` has been called.
    public var isShutDown: Bool {
        state.withLockedValue { $0.isShutDown }
    }

    /// Replaces the snapshot returned from now on.
    public func setSnapshot(_ snapshot: FlowSnapshot) {
        state.withLockedValue { $0.snapshot = snapshot }
    }

    /// Makes `snapshot()` throw `error` (and `isServing` report `false`); `nil` restores it.
    public func setFailure(_ error: (any Error)?) {
        state.withLockedValue { $0.failure = error }
    }
}

extension FakeFlowSource {
    /// A few plausible flows covering IPv4, IPv6 and IPv4-mapped addresses, served by
    /// `flowstat serve --source fake`.
    public static let demoSnapshot: FlowSnapshot = {
        let hostNetns: UInt32 = 4_026_531_840
        let flows = [
            FlowSample(
                key: FlowKey(
                    family: .ipv4, local: IPAddress(ipv4: 0xC0A8_0A02), localPort: 443,
                    remote: IPAddress(ipv4: 0xC0A8_0A63), remotePort: 51_234, netns: hostNetns),
                rtt: 0.000_812, rttVariance: 0.000_204, minRTT: 0.000_395,
                cwnd: 10, ssthresh: 2_147_483_647, deliveryRate: 125_000_000,
                dataSegmentsIn: 12, dataSegmentsOut: 840, bytesAcked: 1_203_442, bytesReceived: 3_411,
                retransmits: 0, pid: 1_234, comm: "nginx", lastUpdate: 1_000_000_000),
            FlowSample(
                key: FlowKey(
                    family: .ipv6, local: IPAddress("2001:db8::10")!, localPort: 5_432,
                    remote: IPAddress("2001:db8:0:1::2a")!, remotePort: 40_112, netns: hostNetns),
                rtt: 0.012_5, rttVariance: 0.003_1, minRTT: 0.010_2,
                cwnd: 42, ssthresh: 30, deliveryRate: 8_400_000.5,
                dataSegmentsIn: 10_345, dataSegmentsOut: 9_876, bytesAcked: 88_123_456, bytesReceived: 4_500_000,
                retransmits: 17, pid: 987, comm: "postgres", lastUpdate: 2_000_000_000),
            FlowSample(
                key: FlowKey(
                    family: .ipv6, local: IPAddress("::ffff:127.0.0.1")!, localPort: 8_020,
                    remote: IPAddress("::ffff:127.0.0.1")!, remotePort: 60_001, netns: hostNetns),
                rtt: 0.000_031, rttVariance: 0.000_015, minRTT: 0.000_009,
                cwnd: 10, ssthresh: 2_147_483_647, deliveryRate: 0,
                dataSegmentsIn: 1, dataSegmentsOut: 1, bytesAcked: 1_845, bytesReceived: 146,
                retransmits: 0, lastUpdate: 3_000_000_000),
        ]
        // The default RTT buckets (1 µs … 1 s), with samples around the three flows' RTTs,
        // so that the histogram and the churn counters appear as they do with BPF.
        let bounds: [Double] = [
            0.000001, 0.0000025, 0.000005, 0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005,
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
        ]
        var counts = [UInt64](repeating: 0, count: bounds.count + 1)
        counts[4] = 120  // (10 µs, 25 µs]: the loopback flow
        counts[5] = 30
        counts[9] = 2_400  // (0.5 ms, 1 ms]: the LAN flow
        counts[10] = 310
        counts[13] = 900  // (10 ms, 25 ms]: the remote database
        counts[14] = 45
        let histogram = Histogram(bounds: bounds, counts: counts, sum: 16.4)
        let events = KernelEventCounts(
            updates: 5_210, updatesSkipped: 0, insertFailures: 0, evictions: 0,
            openedActive: 41, openedPassive: 118, closed: 156)
        return FlowSnapshot(
            flows: flows, mapEntries: flows.count, mapCapacity: 65_536, kernelEvents: events, rttHistogram: histogram)
    }()
}
