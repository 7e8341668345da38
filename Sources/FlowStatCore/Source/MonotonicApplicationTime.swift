// SPDX-License-Identifier: Apache-2.0

/// Keeps each flow's `applicationTime` from going backwards between two snapshots of one
/// source.
///
/// The application share is the flow's age (nanosecond clock) less its busy time (whole
/// jiffies, the running one counted up to the current jiffy), so on a flow busy all along it
/// can fall by up to one tick between two reads. It is exported as a counter, and Prometheus
/// reads any fall as a reset and adds the whole value to `rate()`. Only flows the source
/// knows the times of are kept, with their `firstSeen`, so a new flow on the same 4-tuple
/// starts afresh.
struct MonotonicApplicationTime {
    private var last: [FlowKey: (firstSeen: UInt64, seconds: Double)] = [:]

    mutating func apply(to flows: inout [FlowSample]) {
        var next: [FlowKey: (firstSeen: UInt64, seconds: Double)] = [:]
        next.reserveCapacity(last.count)
        for index in flows.indices where flows[index].fields.contains(.timeLimits) {
            let key = flows[index].key
            if let previous = last[key], previous.firstSeen == flows[index].firstSeen,
                previous.seconds > flows[index].applicationTime
            {
                flows[index].applicationTime = previous.seconds
            }
            next[key] = (flows[index].firstSeen, flows[index].applicationTime)
        }
        last = next
    }
}
