// SPDX-License-Identifier: Apache-2.0

/// Orders flows by label tuple: source address and port, destination address and port,
/// numerically, then network namespace; flows with equal tuples stay in input order.
///
/// Sorting is the costliest step of laying out tens of thousands of flows, so nearly every
/// flow takes a fast path: when both addresses are IPv4 (stored IPv4-mapped), the whole
/// tuple packs into 128 bits without changing its order, and those keys are radix sorted,
/// least significant byte first, visiting only the bytes that differ between flows (hosts
/// share addresses, ports and namespaces). Flows with an IPv6 address are sorted by
/// comparison and merged in. The arrays keep their capacity between calls.
struct LabelTupleSorter {
    /// Flow indices in label-tuple order, after `sort(_:)`.
    private(set) var order: [Int] = []

    /// An IPv4 flow's tuple as two words compared in turn: `high` is the source address,
    /// the source port and the destination address's upper half; `low` is the destination
    /// address's lower half, the destination port and the namespace.
    fileprivate struct PackedTuple {
        var high: UInt64
        var low: UInt64
        var index: UInt32

        /// Byte `position` of the 128-bit key, 0 being the least significant.
        func byte(_ position: Int) -> Int {
            let word = position < 8 ? low : high
            return Int(truncatingIfNeeded: word >> UInt64(position % 8 * 8)) & 0xFF
        }
    }

    private var packed: [PackedTuple] = []
    private var radixScratch: [PackedTuple] = []
    /// Indices of flows with an IPv6 address.
    private var unpacked: [Int] = []

    mutating func sort(_ flows: UnsafeBufferPointer<FlowSample>) {
        precondition(flows.count <= Int(UInt32.max), "more flows than a packed index holds")
        packed.removeAll(keepingCapacity: true)
        unpacked.removeAll(keepingCapacity: true)
        order.removeAll(keepingCapacity: true)
        packed.reserveCapacity(flows.count)
        order.reserveCapacity(flows.count)
        for index in flows.indices {
            if let tuple = PackedTuple(flows[index].key, index: index) {
                packed.append(tuple)
            } else {
                unpacked.append(index)
            }
        }
        radixSortPacked()
        unpacked.sort { LabelTupleSorter.precedes($0, $1, in: flows) }

        // Merge; with only IPv4 flows, this is a copy.
        var nextUnpacked = 0
        for tuple in packed {
            let index = Int(tuple.index)
            while nextUnpacked < unpacked.count, LabelTupleSorter.precedes(unpacked[nextUnpacked], index, in: flows) {
                order.append(unpacked[nextUnpacked])
                nextUnpacked += 1
            }
            order.append(index)
        }
        order.append(contentsOf: unpacked[nextUnpacked...])
    }

    /// Whether flow `a` comes before flow `b`: the tuple field by field, then input order.
    private static func precedes(_ a: Int, _ b: Int, in flows: UnsafeBufferPointer<FlowSample>) -> Bool {
        let x = flows[a].key
        let y = flows[b].key
        if x.local != y.local { return x.local < y.local }
        if x.localPort != y.localPort { return x.localPort < y.localPort }
        if x.remote != y.remote { return x.remote < y.remote }
        if x.remotePort != y.remotePort { return x.remotePort < y.remotePort }
        if x.netns != y.netns { return x.netns < y.netns }
        return a < b
    }

    /// Sorts `packed` by (high, low), stably: one counting pass per byte that is not the same
    /// in every key.
    private mutating func radixSortPacked() {
        guard packed.count > 1 else { return }
        // A bit differs between keys exactly where some key has it set and some has it clear.
        var anySet = PackedTuple(high: 0, low: 0, index: 0)
        var allSet = PackedTuple(high: .max, low: .max, index: 0)
        for tuple in packed {
            anySet.high |= tuple.high
            anySet.low |= tuple.low
            allSet.high &= tuple.high
            allSet.low &= tuple.low
        }
        let differing = PackedTuple(high: anySet.high ^ allSet.high, low: anySet.low ^ allSet.low, index: 0)

        // Only sized here: every pass overwrites all of it.
        radixScratch.removeAll(keepingCapacity: true)
        radixScratch.append(contentsOf: packed)
        withUnsafeTemporaryAllocation(of: Int.self, capacity: 256) { offsets in
            for position in 0..<16 where differing.byte(position) != 0 {
                packed.withUnsafeBufferPointer { source in
                    radixScratch.withUnsafeMutableBufferPointer { destination in
                        offsets.initialize(repeating: 0)
                        for tuple in source {
                            offsets[tuple.byte(position)] += 1
                        }
                        var start = 0
                        for digit in 0..<256 {
                            (offsets[digit], start) = (start, start + offsets[digit])
                        }
                        for tuple in source {
                            let digit = tuple.byte(position)
                            destination[offsets[digit]] = tuple
                            offsets[digit] += 1
                        }
                    }
                }
                swap(&packed, &radixScratch)
            }
        }
    }
}

extension LabelTupleSorter.PackedTuple {
    /// Packs `key` if both its addresses are IPv4.
    init?(_ key: FlowKey, index: Int) {
        guard let local = key.local.ipv4, let remote = key.remote.ipv4 else { return nil }
        self.init(
            high: UInt64(local) << 32 | UInt64(key.localPort) << 16 | UInt64(remote >> 16),
            low: UInt64(remote & 0xFFFF) << 48 | UInt64(key.remotePort) << 32 | UInt64(key.netns),
            index: UInt32(index))
    }
}
