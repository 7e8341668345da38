// SPDX-License-Identifier: Apache-2.0

/// What `dump`, `top` and the landing page sort flows by: the worst or busiest first.
public enum FlowSortKey: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    /// Smoothed RTT, highest first.
    case rtt
    /// Retransmitted segments, most first.
    case retrans
    /// Bytes acknowledged plus bytes received, most first.
    case bytes
    /// Congestion window, largest first.
    case cwnd
    /// Delivery rate, highest first.
    case delivery
    /// Minimum RTT, highest first.
    case minrtt
    /// What limited the flow over its life: receiver, send buffer, network, then application
    /// (`LimitShare.rank`), each by share; flows without the times last.
    case limited

    public var description: String { rawValue }

    /// The value a flow is ranked by; higher ranks first.
    @inline(__always)
    public func value(of flow: borrowing FlowSample) -> Double {
        switch self {
        case .rtt: flow.rtt
        case .retrans: Double(flow.retransmits)
        case .bytes: Double(flow.bytesAcked &+ flow.bytesReceived)
        case .cwnd: Double(flow.cwnd)
        case .delivery: flow.deliveryRate
        case .minrtt: flow.minRTT
        case .limited: flow.limitShare?.rank ?? -1
        }
    }

    /// The accepted spellings, for error messages and help: `rtt, retrans, bytes, …`.
    public static var spellings: String { allCases.map(\.rawValue).joined(separator: ", ") }
}

/// Picks the highest-ranked flows without sorting (or copying) the whole snapshot.
public enum FlowRanking {
    /// Indices into `flows` of the `limit` flows with the highest `key` value, highest first;
    /// ties keep snapshot order. `limit` nil or larger than the snapshot: every flow, sorted.
    ///
    /// A bounded min-heap of (value, index) pairs: O(n log k) time and k pairs of memory, so
    /// asking for the top 50 of 40,000 flows neither sorts nor copies 40,000 samples.
    public static func top(_ flows: [FlowSample], by key: FlowSortKey, limit: Int? = nil) -> [Int] {
        top(count: flows.count, limit: limit) { key.value(of: flows[$0]) }
    }

    /// The same ranking over any indexed values (`top` ranks by rates between snapshots).
    public static func top(count: Int, limit: Int?, value: (Int) -> Double) -> [Int] {
        let k = min(max(limit ?? count, 0), count)
        guard k > 0 else { return [] }
        // Entry a ranks below b when its value is smaller, or equal and it came later.
        func below(_ a: (Double, Int), _ b: (Double, Int)) -> Bool {
            a.0 < b.0 || (a.0 == b.0 && a.1 > b.1)
        }
        var heap: [(Double, Int)] = []
        heap.reserveCapacity(k)
        func siftDown(_ start: Int) {
            var parent = start
            while true {
                let left = 2 * parent + 1
                let right = left + 1
                var lowest = parent
                if left < heap.count, below(heap[left], heap[lowest]) { lowest = left }
                if right < heap.count, below(heap[right], heap[lowest]) { lowest = right }
                if lowest == parent { return }
                heap.swapAt(parent, lowest)
                parent = lowest
            }
        }
        for index in 0..<count {
            var candidate = (value(index), index)
            if candidate.0.isNaN { candidate.0 = -.infinity }
            if heap.count < k {
                heap.append(candidate)
                var child = heap.count - 1
                while child > 0 {
                    let parent = (child - 1) / 2
                    guard below(heap[child], heap[parent]) else { break }
                    heap.swapAt(child, parent)
                    child = parent
                }
            } else if below(heap[0], candidate) {
                heap[0] = candidate
                siftDown(0)
            }
        }
        heap.sort { below($1, $0) }
        return heap.map(\.1)
    }
}

/// The kernel's TCP state names as `ss` prints them.
public enum TCPStateName {
    /// `ESTAB`, `SYN-SENT`, … for kernel state numbers 1 to 12; `UNKNOWN` otherwise.
    public static func name(_ state: UInt8) -> String {
        switch state {
        case 1: "ESTAB"
        case 2: "SYN-SENT"
        case 3: "SYN-RECV"
        case 4: "FIN-WAIT-1"
        case 5: "FIN-WAIT-2"
        case 6: "TIME-WAIT"
        case 7: "UNCONN"
        case 8: "CLOSE-WAIT"
        case 9: "LAST-ACK"
        case 10: "LISTEN"
        case 11: "CLOSING"
        case 12: "NEW-SYN-RECV"
        default: "UNKNOWN"
        }
    }
}
