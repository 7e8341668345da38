// SPDX-License-Identifier: Apache-2.0

/// How many per-flow series the exposition may hold, and which flows get them.
public struct CardinalityLimits: Sendable, Hashable {
    /// Most flows exported with their own series; 0 exports every flow.
    public var maxFlows: Int
    /// Which flows are kept when there are more than `maxFlows`: the top ones by this.
    public var rankBy: FlowRank
    /// Most aggregate (peer, port) series; past it peers fold into `peer="other"`, then
    /// ports into `port="other"`.
    public var maxAggregates: Int
    /// Aggregates with no live flow and no closed flow for this long are dropped, which
    /// frees their slot for new peers (their series go stale in Prometheus). Seconds.
    public var aggregateIdleTimeout: Double
    /// Workload labels that key aggregates besides peer and port (`aggregateBy`).
    public var aggregateLabels: Set<AggregateLabel>

    public init(
        maxFlows: Int = 2_000, rankBy: FlowRank = .bytes, maxAggregates: Int = 500,
        aggregateIdleTimeout: Double = 900, aggregateLabels: Set<AggregateLabel> = []
    ) {
        self.maxFlows = maxFlows
        self.rankBy = rankBy
        self.maxAggregates = maxAggregates
        self.aggregateIdleTimeout = aggregateIdleTimeout
        self.aggregateLabels = aggregateLabels
    }
}

/// What makes a flow worth its own series.
public enum FlowRank: String, Sendable, Hashable, CaseIterable {
    /// Bytes acked plus bytes received: the heaviest flows.
    case bytes
    /// Segments retransmitted: the lossiest flows.
    case retransmits
    /// Smoothed RTT: the slowest flows.
    case rtt

    func value(of flow: borrowing FlowSample) -> Double {
        switch self {
        case .bytes: Double(flow.bytesAcked &+ flow.bytesReceived)
        case .retransmits: Double(flow.retransmits)
        case .rtt: flow.rtt
        }
    }
}

/// One aggregate series set: the flows folded into a key.
public struct Aggregate: Sendable, Hashable {
    public var key: AggregateKey
    /// Live flows folded into this key now (their per-flow series are not exported).
    public var live: FlowTotals
    /// Every flow that closed under this key since the agent started (or since the key was
    /// last dropped as idle), whether it had its own series while it lived or not.
    public var closed: FlowTotals

    public init(key: AggregateKey, live: FlowTotals, closed: FlowTotals) {
        self.key = key
        self.live = live
        self.closed = closed
    }

    /// Live and closed counters together: what the aggregate's counters export.
    public var total: FlowTotals {
        var sum = live
        sum.add(closed)
        return sum
    }
}

/// The exported share of one snapshot: the flows with their own series, and aggregates for
/// the rest and for closed flows.
public struct LimitedFlows: Sendable {
    /// Flows exported with their own series.
    public var kept: [FlowSample]
    /// Aggregates, sorted by key.
    public var aggregates: [Aggregate]
    /// Live flows folded into aggregates in this snapshot.
    public var folded: Int
}

/// Bounds the number of series: keeps the top `maxFlows` flows by rank, folds the others
/// into per-(peer, service port) aggregates, which are themselves bounded, and adds every
/// closed flow to its aggregate so counters of flows that are gone persist.
///
/// Sums are preserved: over the per-flow series plus the aggregates, each counter equals
/// its sum over every live flow plus every flow that closed while the agent ran (less
/// ring-buffer losses, counted in `flowstat_events_lost_total`).
///
/// Aggregate keys are admitted first come, first served and kept while active, so an
/// aggregate's membership is stable and its counters only grow; only a flow moving between
/// its own series and an aggregate (its rank changed) shifts counts between the two.
/// A value type with state carried from scrape to scrape; not for sharing between threads.
public struct CardinalityLimiter: Sendable {
    public var limits: CardinalityLimits
    public let servicePorts: ServicePorts

    /// Admitted aggregate keys: their closed-flow totals and when they were last active.
    private var admitted: [AggregateKey: (closed: FlowTotals, lastActive: Double)] = [:]
    /// Series not written because their flow or aggregate was folded, summed over scrapes.
    public private(set) var seriesDropped: UInt64 = 0

    public init(limits: CardinalityLimits = CardinalityLimits(), servicePorts: ServicePorts = ServicePorts()) {
        self.limits = limits
        self.servicePorts = servicePorts
    }

    /// Splits `flows` into kept flows and aggregates, after adding `closed` (the flows that
    /// closed since the previous call) to the aggregates.
    ///
    /// - Parameters:
    ///   - perFlowFamilies: series a kept flow gets, for counting what folding saves.
    ///   - now: monotonic seconds, for expiring idle aggregates.
    public mutating func apply(
        to flows: [FlowSample], closed: [AggregateKey: FlowTotals]?, perFlowFamilies: Int, now: Double
    ) -> LimitedFlows {
        expireIdle(now: now)
        addClosed(closed ?? [:], now: now)

        let keep = chooseKept(flows)
        var kept: [FlowSample] = []
        var live: [AggregateKey: FlowTotals] = [:]
        var foldedCount = 0
        if let keep {
            kept.reserveCapacity(limits.maxFlows)
            // Sum per unfolded key first (one hash per flow), then admit each distinct key
            // once, in the order the flows first showed it: tens of thousands of flows
            // usually share a few hundred keys.
            var slotOfKey: [AggregateKey: Int] = [:]
            var keys: [AggregateKey] = []
            var sums: [FlowTotals] = []
            for index in flows.indices {
                if keep[index] {
                    kept.append(flows[index])
                    continue
                }
                let key = servicePorts.key(of: flows[index], labels: limits.aggregateLabels)
                let slot = slotOfKey[key, default: keys.count]
                if slot == keys.count {
                    slotOfKey[key] = slot
                    keys.append(key)
                    sums.append(FlowTotals())
                }
                sums[slot].add(flows[index])
                foldedCount += 1
            }
            for (key, totals) in zip(keys, sums) {
                live[admit(key), default: FlowTotals()].add(totals)
            }
            for key in live.keys { admitted[key]?.lastActive = now }
        } else {
            kept = flows
        }

        var aggregates: [Aggregate] = []
        aggregates.reserveCapacity(admitted.count)
        for (key, state) in admitted {
            aggregates.append(Aggregate(key: key, live: live[key] ?? FlowTotals(), closed: state.closed))
        }
        aggregates.sort { $0.key < $1.key }
        seriesDropped &+= UInt64(foldedCount) &* UInt64(perFlowFamilies)
        return LimitedFlows(kept: kept, aggregates: aggregates, folded: foldedCount)
    }

    /// Adds flows that closed to their aggregates (also between scrapes, when something else
    /// took the snapshot that carried them).
    public mutating func addClosed(_ closed: [AggregateKey: FlowTotals], now: Double) {
        for (key, totals) in closed {
            let admittedKey = admit(key)
            admitted[admittedKey]?.closed.add(totals)
            admitted[admittedKey]?.lastActive = now
        }
    }

    /// Which flows keep their own series: the top `maxFlows` by rank; nil when all do.
    ///
    /// Finds the rank value of the last kept flow by selection (linear time) rather than
    /// sorting every flow: at 40,000 flows and a cap of 2,000 only the flows tied at that
    /// value need ordering. Ties go to the lower 4-tuple, so the choice does not flicker
    /// between equal flows from scrape to scrape.
    private func chooseKept(_ flows: [FlowSample]) -> [Bool]? {
        let cap = limits.maxFlows
        guard cap > 0, flows.count > cap else { return nil }
        let rank = limits.rankBy
        // Read in place: a closure over the array's elements would copy each sample.
        let values = flows.withUnsafeBufferPointer { flows in
            [Double](unsafeUninitializedCapacity: flows.count) { values, count in
                for index in flows.indices { values[index] = rank.value(of: flows[index]) }
                count = flows.count
            }
        }
        var scratch = values
        let threshold = Self.select(&scratch, largest: cap)

        var keep = [Bool](repeating: false, count: flows.count)
        var tied: [Int] = []
        var keptCount = 0
        for index in values.indices {
            if values[index] > threshold {
                keep[index] = true
                keptCount += 1
            } else if values[index] == threshold {
                tied.append(index)
            }
        }
        // Idle flows tie by the thousand: order them by packed integer keys built once,
        // not by comparing flows' keys field by field in every comparison.
        var tieKeys = tied.map { index in
            let key = flows[index].key
            return TieKey(
                remoteHigh: key.remote.high, remoteLow: key.remote.low,
                ports: UInt64(key.remotePort) << 48 | UInt64(key.localPort) << 32 | UInt64(key.netns),
                localHigh: key.local.high, localLow: key.local.low, index: index)
        }
        tieKeys.sort(by: TieKey.precedes)
        for tie in tieKeys.prefix(cap - keptCount) { keep[tie.index] = true }
        return keep
    }

    /// A tied flow's place in the tie-break order: remote address and port, then local
    /// address and port, then namespace (the ports word only decides among equal remotes,
    /// so local addresses come between its two halves in the comparison).
    private struct TieKey {
        var remoteHigh: UInt64
        var remoteLow: UInt64
        var ports: UInt64  // remote port, local port, netns
        var localHigh: UInt64
        var localLow: UInt64
        var index: Int

        static func precedes(_ a: TieKey, _ b: TieKey) -> Bool {
            if a.remoteHigh != b.remoteHigh { return a.remoteHigh < b.remoteHigh }
            if a.remoteLow != b.remoteLow { return a.remoteLow < b.remoteLow }
            let aRemotePort = a.ports >> 48
            let bRemotePort = b.ports >> 48
            if aRemotePort != bRemotePort { return aRemotePort < bRemotePort }
            if a.localHigh != b.localHigh { return a.localHigh < b.localHigh }
            if a.localLow != b.localLow { return a.localLow < b.localLow }
            return a.ports < b.ports  // same remote port: local port, then netns
        }
    }

    /// The `k`-th largest value (1-based), by quickselect with a three-way partition (many
    /// flows share a value, e.g. 0 retransmits); reorders `values`.
    static func select(_ values: inout [Double], largest k: Int) -> Double {
        var low = 0
        var high = values.count - 1
        let target = values.count - k  // its index in ascending order
        var generator = SystemRandomNumberGenerator()
        while low < high {
            let pivot = values[Int.random(in: low...high, using: &generator)]
            // [low, less) < pivot, [less, index) == pivot, (greater, high] > pivot
            var less = low
            var index = low
            var greater = high
            while index <= greater {
                if values[index] < pivot {
                    values.swapAt(index, less)
                    less += 1
                    index += 1
                } else if values[index] > pivot {
                    values.swapAt(index, greater)
                    greater -= 1
                } else {
                    index += 1
                }
            }
            if target < less {
                high = less - 1
            } else if target > greater {
                low = greater + 1
            } else {
                return pivot
            }
        }
        return values[target]
    }

    /// The key an aggregate for `key` is kept under: itself while there is room; then, with
    /// the peer folded, one per service port in the room kept for those (a quarter); then
    /// `other`. Admits the key it returns.
    private mutating func admit(_ key: AggregateKey) -> AggregateKey {
        if admitted[key] != nil || key == .other { return ensure(key) }
        let room = max(limits.maxAggregates, 1)
        let peerRoom = room - room / 4
        if key.peer != .other, admitted.count < peerRoom { return ensure(key) }
        let portKey = AggregateKey(peer: .other, port: key.port)
        if admitted[portKey] != nil || admitted.count < room { return ensure(portKey) }
        return ensure(.other)
    }

    private mutating func ensure(_ key: AggregateKey) -> AggregateKey {
        if admitted[key] == nil { admitted[key] = (FlowTotals(), -.infinity) }
        return key
    }

    private mutating func expireIdle(now: Double) {
        let timeout = limits.aggregateIdleTimeout
        guard timeout > 0 else { return }
        admitted = admitted.filter { key, state in key == .other || now - state.lastActive < timeout }
    }
}
