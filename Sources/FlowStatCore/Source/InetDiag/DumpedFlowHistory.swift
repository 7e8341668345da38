// SPDX-License-Identifier: Apache-2.0

/// What the inet_diag source remembers of each flow from one dump to the next, in one table:
/// when it was first dumped (a dump has no age) and its application seconds so far.
///
/// The application share is the flow's age (nanosecond clock) less its busy time (whole
/// jiffies in `tcp_info`), so on a flow busy all along it can fall by up to one tick between
/// two dumps. It is exported as a counter, and Prometheus reads any fall as a reset, so each
/// flow keeps its highest value. (The BPF source needs no table: its kernel program counts
/// the age in jiffies too.) Flows already open at start-up count from the first dump.
struct DumpedFlowHistory {
    private var known: [FlowKey: (firstSeen: UInt64, applicationTime: Double)] = [:]

    /// Fills in each flow's `firstSeen` and `applicationTime`, and forgets flows not in `flows`.
    mutating func fill(_ flows: inout [FlowSample]) {
        var next: [FlowKey: (firstSeen: UInt64, applicationTime: Double)] = [:]
        next.reserveCapacity(flows.count)
        for index in flows.indices {
            let key = flows[index].key
            let previous = known[key]
            flows[index].firstSeen = previous?.firstSeen ?? flows[index].lastUpdate
            flows[index].deriveApplicationTime()
            if let previous, previous.applicationTime > flows[index].applicationTime {
                flows[index].applicationTime = previous.applicationTime
            }
            next[key] = (flows[index].firstSeen, flows[index].applicationTime)
        }
        known = next
    }
}
