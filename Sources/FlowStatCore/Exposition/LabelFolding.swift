// SPDX-License-Identifier: Apache-2.0

extension LabelFolding {
    /// Combines flows that share process, remote endpoint and network namespace into one
    /// sample each, every metric by its catalogue folding rule (counters, cwnd and delivery
    /// rate add up; RTTs are averaged; the minimum RTT and ssthresh are the least).
    ///
    /// The result's local address carries the pid (and its local port is 0) so that the
    /// encoder's sort and duplicate check, which compare endpoints, keep processes apart;
    /// nothing prints that address.
    static func condenseByProcess(_ flows: [FlowSample]) -> [FlowSample] {
        struct Group: Hashable {
            var pid: UInt32
            var remote: IPAddress
            var remotePort: UInt16
            var netns: UInt32
        }
        var positions: [Group: Int] = [:]
        var counts: [Int] = []
        var folded: [FlowSample] = []
        for flow in flows {
            let group = Group(
                pid: flow.pid, remote: flow.key.remote, remotePort: flow.key.remotePort, netns: flow.key.netns)
            guard let position = positions[group] else {
                var first = flow
                first.key.local = IPAddress(high: 0, low: UInt64(flow.pid))
                first.key.localPort = 0
                positions[group] = folded.count
                folded.append(first)
                counts.append(1)
                continue
            }
            counts[position] += 1
            folded[position].merge(flow, into: counts[position])
        }
        return folded
    }
}

extension FlowSample {
    /// Adds `other` to this sum of `count - 1` flows, each metric by its catalogue folding rule.
    fileprivate mutating func merge(_ other: FlowSample, into count: Int) {
        let weight = 1 / Double(count)
        withUnsafeMutablePointer(to: &self) { sum in
            withUnsafePointer(to: other) { other in
                for metric in FlowMetricCatalogue.all {
                    for series in metric.series {
                        switch series.value {
                        case .real(let get, let set):
                            let (a, b) = (get(sum), get(other))
                            switch metric.folding {
                            case .sum: set(sum, a + b)
                            case .mean: set(sum, a + (b - a) * weight)
                            case .least: set(sum, Swift.min(a, b))
                            case .leastNonZero: set(sum, a == 0 ? b : (b == 0 ? a : Swift.min(a, b)))
                            }
                        case .integer(let get, let set):
                            let (a, b) = (get(sum), get(other))
                            switch metric.folding {
                            case .sum: set(sum, a &+ b)
                            case .mean: set(sum, a + UInt64((Double(b) - Double(a)) * weight))
                            case .least: set(sum, Swift.min(a, b))
                            case .leastNonZero: set(sum, a == 0 ? b : (b == 0 ? a : Swift.min(a, b)))
                            }
                        }
                    }
                }
            }
        }
        // A field the group has is one every member has.
        fields.formIntersection(other.fields)
        lastUpdate = Swift.max(lastUpdate, other.lastUpdate)
    }
}
