// SPDX-License-Identifier: Apache-2.0

/// The state behind `flowstat top`: the last snapshot, rates against the one before it, the
/// sort key, and the frame to draw. No terminal code here, so a frame can be tested as text.
public struct TopView: Sendable {
    /// What `top` sorts by; each has a key to press.
    public enum SortKey: String, Sendable, CaseIterable, CustomStringConvertible {
        /// Smoothed RTT (`r`).
        case rtt
        /// Retransmits per second between refreshes, then total retransmits (`t`).
        case retrans
        /// Bytes per second, sent (acked) plus received (`b`).
        case bytes
        /// Congestion window (`c`).
        case cwnd
        /// Delivery rate (`d`).
        case delivery
        /// What limited the flow since the previous refresh (`l`; see `LimitShare.rank`).
        case limited

        public var description: String { rawValue }

        /// The key that selects it.
        public var key: Character {
            switch self {
            case .rtt: "r"
            case .retrans: "t"
            case .bytes: "b"
            case .cwnd: "c"
            case .delivery: "d"
            case .limited: "l"
            }
        }

        /// The sort key a key press selects, if any.
        public init?(key: Character) {
            guard let match = SortKey.allCases.first(where: { $0.key == key }) else { return nil }
            self = match
        }
    }

    /// A flow's change since the previous refresh.
    public struct Rates: Sendable, Hashable {
        public var bytesSentPerSecond: Double
        public var bytesReceivedPerSecond: Double
        public var retransmitsPerSecond: Double
        /// What limited the flow over the interval; nil without the times or any change.
        public var limitShare: LimitShare?
    }

    private struct Counters {
        var bytesAcked: UInt64
        var bytesReceived: UInt64
        var retransmits: UInt64
        /// Seconds per `LimitReason`; nil when the source does not know them.
        var limitedSeconds: [Double]?
    }

    public var sort: SortKey
    /// The current snapshot's flows.
    public private(set) var flows: [FlowSample] = []
    /// Per flow (same index as `flows`): rates since the previous snapshot; nil for flows
    /// new since then, and for every flow on the first refresh.
    public private(set) var rates: [Rates?] = []
    private var previous: [FlowKey: Counters] = [:]
    private var previousTime: UInt64?

    public init(sort: SortKey = .rtt) {
        self.sort = sort
    }

    /// Takes a new snapshot's flows, read at `time` (monotonic nanoseconds).
    public mutating func update(flows: [FlowSample], time: UInt64) {
        let seconds = previousTime.map { Double(time &- $0) / 1e9 } ?? 0
        var rates: [Rates?] = []
        rates.reserveCapacity(flows.count)
        var counters: [FlowKey: Counters] = [:]
        counters.reserveCapacity(flows.count)
        for flow in flows {
            let now = Counters(
                bytesAcked: flow.bytesAcked, bytesReceived: flow.bytesReceived, retransmits: flow.retransmits,
                limitedSeconds: flow.fields.contains(.timeLimits) ? LimitReason.allCases.map(flow.limitedTime) : nil)
            if seconds > 0, let before = previous[flow.key] {
                // Counters of one flow only grow; a smaller value is a new flow on the same 4-tuple.
                func rate(_ a: UInt64, _ b: UInt64) -> Double { a >= b ? Double(a - b) / seconds : Double(a) / seconds }
                rates.append(
                    Rates(
                        bytesSentPerSecond: rate(now.bytesAcked, before.bytesAcked),
                        bytesReceivedPerSecond: rate(now.bytesReceived, before.bytesReceived),
                        retransmitsPerSecond: rate(now.retransmits, before.retransmits),
                        limitShare: now.limitedSeconds.flatMap { seconds in
                            before.limitedSeconds.flatMap { earlier in
                                LimitShare(seconds: zip(seconds, earlier).map { Swift.max($0 - $1, 0) })
                            }
                        }))
            } else {
                rates.append(nil)
            }
            counters[flow.key] = now
        }
        self.flows = flows
        self.rates = rates
        previous = counters
        previousTime = time
    }

    /// Indices of the `limit` top flows by the current sort key, top first.
    public func ranked(limit: Int?) -> [Int] {
        FlowRanking.top(count: flows.count, limit: limit) { index in
            let flow = flows[index]
            let rate = rates[index]
            switch sort {
            case .rtt: return flow.rtt
            case .cwnd: return Double(flow.cwnd)
            case .delivery: return flow.deliveryRate
            case .limited: return rate?.limitShare?.rank ?? -1
            case .bytes:
                return (rate?.bytesSentPerSecond ?? 0) + (rate?.bytesReceivedPerSecond ?? 0)
            case .retrans:
                // The rate first; among flows with the same rate, the one with more in total.
                return (rate?.retransmitsPerSecond ?? 0) * 1e12 + Double(flow.retransmits)
            }
        }
    }

    /// The frame: a title line, a key help line, a blank line, then the table with as many
    /// flows as fit in `height` lines; each line at most `width` characters.
    public func frame(width: Int, height: Int, clock: String, interval: Double) -> [String] {
        let title =
            "flowstat top  \(clock)  flows: \(flows.count)  sort: \(sort)  every \(FlowFormat.fixed(interval, decimals: 1)) s"
        let help = "keys: " + SortKey.allCases.map { "\($0.key) \($0)" }.joined(separator: "  ") + "  q quit"
        let rows = max(height - 4, 1)
        var table = TextTable(columns: [
            .init("Local", alignRight: false), .init("Peer", alignRight: false), .init("rtt ms"), .init("rttvar"),
            .init("cwnd"), .init("delivery"), .init("tx/s"), .init("rx/s"), .init("retrans"), .init("retr/s"),
            .init("limited by", alignRight: false), .init("process", alignRight: false),
        ])
        for index in ranked(limit: rows) {
            let flow = flows[index]
            let rate = rates[index]
            table.append([
                FlowFormat.endpoint(flow.key.local, flow.key.localPort),
                FlowFormat.endpoint(flow.key.remote, flow.key.remotePort),
                FlowFormat.milliseconds(flow.rtt),
                FlowFormat.milliseconds(flow.rttVariance),
                String(flow.cwnd),
                FlowFormat.scaled(flow.deliveryRate * 8, unit: "bps"),
                rate.map { FlowFormat.scaled($0.bytesSentPerSecond, unit: "B") } ?? "-",
                rate.map { FlowFormat.scaled($0.bytesReceivedPerSecond, unit: "B") } ?? "-",
                String(flow.retransmits),
                rate.map { FlowFormat.fixed($0.retransmitsPerSecond, decimals: 1) } ?? "-",
                rate?.limitShare?.description ?? "-",
                FlowFormat.process(pid: flow.pid, comm: flow.comm),
            ])
        }
        return [String(title.prefix(width)), String(help.prefix(width)), ""] + table.render(maxWidth: width)
    }
}
