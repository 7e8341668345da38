// SPDX-License-Identifier: Apache-2.0

extension LabelFolding {
    /// Sums flows that share process, remote endpoint and network namespace into one sample
    /// each: counters, cwnd and delivery rate add up; RTT and its variance are averaged; the
    /// minimum RTT is the least; ssthresh the least.
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
            let group = Group(pid: flow.pid, remote: flow.key.remote, remotePort: flow.key.remotePort, netns: flow.key.netns)
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
    /// Adds `other` to this sum of `count - 1` flows.
    fileprivate mutating func merge(_ other: FlowSample, into count: Int) {
        let weight = 1 / Double(count)
        rtt += (other.rtt - rtt) * weight
        rttVariance += (other.rttVariance - rttVariance) * weight
        minRTT = minRTT == 0 ? other.minRTT : (other.minRTT == 0 ? minRTT : Swift.min(minRTT, other.minRTT))
        cwnd &+= other.cwnd
        ssthresh = Swift.min(ssthresh, other.ssthresh)
        deliveryRate += other.deliveryRate
        dataSegmentsIn &+= other.dataSegmentsIn
        dataSegmentsOut &+= other.dataSegmentsOut
        bytesAcked &+= other.bytesAcked
        bytesReceived &+= other.bytesReceived
        retransmits &+= other.retransmits
        lastUpdate = Swift.max(lastUpdate, other.lastUpdate)
    }
}
