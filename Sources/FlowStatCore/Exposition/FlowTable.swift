// SPDX-License-Identifier: Apache-2.0

import CFlowStat

/// One snapshot's flows in output order, laid out for writing: every flow's label set
/// rendered once into one arena, and every exported value in its own column.
///
/// Rendering addresses is the most expensive part of a label set; doing it once instead of
/// once per family, into one contiguous arena instead of a `String` per flow, keeps the
/// per-series cost to two copies and a number. The columns exist because flows arrive in map
/// order, not output order: reading values from the samples would be a cache miss per
/// series, while each column is read front to back. The table also decides which flows need
/// the `netns` label and drops exact duplicates, so the output never repeats a series.
/// Its arrays keep their capacity between scrapes.
struct FlowTable {
    /// The shape of a flow's label set.
    enum LabelStyle {
        /// `{src="…",sport="…",dst="…",dport="…"}`
        case endpoints
        /// `{pid="…",dst="…",dport="…"}` (flows condensed per process first)
        case process
        /// The seed's raw_endpoint: `{flow="(SRC#<ip>|<port>)(DST#<ip>|<port>)"}`
        case seedEndpoints
        /// The seed's pid_condensed: `{flow="(<pid>)(DST#<ip>|<port>)"}`
        case seedProcess
    }

    /// Which owner labels to add.
    struct OwnerLabels: OptionSet {
        let rawValue: UInt8
        static let pid = OwnerLabels(rawValue: 1)
        static let comm = OwnerLabels(rawValue: 2)
        static let container = OwnerLabels(rawValue: 4)
        static let pod = OwnerLabels(rawValue: 8)
        static let namespace = OwnerLabels(rawValue: 16)
    }

    /// Label set bytes (`{src="…",…}`) of all flows, back to back, and a chunk of padding.
    private(set) var arena: [UInt8] = []
    /// For each output position: index into the snapshot's flows, and the label set's
    /// range in `arena`.
    private(set) var rows: [Row] = []
    /// Flows left out because another flow had the same key except the family (a stale
    /// map entry next to a new one); the most recently updated one is kept.
    private(set) var duplicatesDropped = 0

    /// Where one flow's label set is in `arena`.
    struct Row {
        var labelsStart: Int
        var labelsCount: Int
    }

    /// The exported values: one column per series of each catalogue entry
    /// (`FlowMetricCatalogue.slots`), indexed like `rows`; empty for metrics not exported.
    /// Integers as they are, reals as their bit pattern; `absent` where the flow's source
    /// could not fill what the entry needs.
    ///
    /// Filled once the output order is known, column by column over a batch of rows: each
    /// column's getter is taken out of the catalogue once per batch, not once per value (which
    /// retained and released its closures every time), and each value is stored without an
    /// append's checks.
    struct Columns {
        var values: [[UInt64]] = Array(repeating: [], count: FlowMetricCatalogue.slots.count)
        /// Slot positions of the metrics being filled.
        var filled: [Int] = []
        /// For each filled slot, in the same order: how to read it and the fields it needs
        /// (looked up once per rebuild, not once per flow).
        private var readers: [(value: FlowValue, requires: FlowFields)] = []

        mutating func removeAll(reservingCapacity capacity: Int, for metrics: Set<FlowMetric>) {
            filled = FlowMetricCatalogue.slots.indices.filter {
                metrics.contains(FlowMetricCatalogue.all[FlowMetricCatalogue.slots[$0].entry].metric)
            }
            readers = filled.map { index in
                let slot = FlowMetricCatalogue.slots[index]
                let entry = FlowMetricCatalogue.all[slot.entry]
                return (entry.series[slot.series].value, entry.requires)
            }
            for index in values.indices {
                values[index].removeAll(keepingCapacity: true)
                if filled.contains(index) { values[index].reserveCapacity(capacity) }
            }
        }

        /// Fills the filled columns with the values of `flows[order[0]]`, `flows[order[1]]`, ….
        ///
        /// A batch of rows at a time, every column over the batch: the batch's flows, read in
        /// output order from all over the snapshot, are loaded from memory for the first
        /// column and still in the cache for the others.
        mutating func fill(from flows: UnsafeBufferPointer<FlowSample>, order: [Int]) {
            for slot in filled {
                values[slot].removeAll(keepingCapacity: true)
                values[slot].append(contentsOf: repeatElement(FlowTable.absent, count: order.count))
            }
            order.withUnsafeBufferPointer { order in
                var start = 0
                while start < order.count {
                    let rows = UnsafeBufferPointer(rebasing: order[start..<min(start + Self.rowsPerBatch, order.count)])
                    for position in filled.indices {
                        let (value, requires) = readers[position]
                        values[filled[position]].withUnsafeMutableBufferPointer { column in
                            let column = UnsafeMutableBufferPointer(rebasing: column[start..<(start + rows.count)])
                            switch value {
                            case .real(let get, _):
                                Self.fill(column, rows, flows, requires) { get($0).bitPattern }
                            case .integer(let get, _):
                                Self.fill(column, rows, flows, requires, get)
                            }
                        }
                    }
                    start += rows.count
                }
            }
        }

        /// Rows per batch of `fill`: their flows, 304 bytes each, fit in a core's L2 cache.
        private static let rowsPerBatch = 512

        /// One column's loop over a batch; flows without the fields `requires` keep `absent`.
        @inline(__always)
        private static func fill(
            _ column: UnsafeMutableBufferPointer<UInt64>, _ order: UnsafeBufferPointer<Int>,
            _ flows: UnsafeBufferPointer<FlowSample>, _ requires: FlowFields,
            _ get: (UnsafePointer<FlowSample>) -> UInt64
        ) {
            let base = flows.baseAddress!
            for row in 0..<order.count {
                let flow = base + order[row]
                if requires.isEmpty || flow.pointee.fields.isSuperset(of: requires) { column[row] = get(flow) }
            }
        }
    }

    /// A column value for "no series for this flow": all ones, which no integer field
    /// reaches and which is a NaN no conversion produces.
    static let absent = UInt64.max

    /// Values of the flows in `rows`, in the same order.
    private(set) var columns = Columns()

    private var sorter = LabelTupleSorter()
    /// For each output position, the index of its flow in the snapshot.
    private var flowIndices: [Int] = []

    /// Total bytes of all label sets.
    var labelBytes: Int { arena.count }

    /// Rebuilds the table for `flows`, ordered by label tuple: source address and port, then
    /// destination address and port, numerically (IPv6 `::1` sorts before all IPv4
    /// addresses, which are `::ffff:a.b.c.d`), then network namespace.
    ///
    /// - Parameter alwaysNetns: Add the `netns` label to every flow, not only to flows
    ///   whose 4-tuple appears in more than one namespace.
    /// - Parameter owner: Add `pid` and/or `comm` labels (the owning process; empty when
    ///   unknown) after the endpoint labels.
    /// - Parameter metrics: The metrics whose columns are filled.
    mutating func rebuild(
        from flows: [FlowSample], alwaysNetns: Bool, style: LabelStyle = .endpoints, owner: OwnerLabels = [],
        metrics: Set<FlowMetric> = Set(FlowMetric.allCases)
    ) {
        rows.removeAll(keepingCapacity: true)
        flowIndices.removeAll(keepingCapacity: true)
        arena.removeAll(keepingCapacity: true)
        columns.removeAll(reservingCapacity: flows.count, for: metrics)
        duplicatesDropped = 0
        rows.reserveCapacity(flows.count)
        flowIndices.reserveCapacity(flows.count)
        arena.reserveCapacity(flows.count * 96 + ByteWriter.chunkBytes)

        // Flows are read through pointers, field by field: handed over as borrowed values,
        // each sample was copied whole (176 bytes and a retain) on every use.
        flows.withUnsafeBufferPointer { flows in
            sorter.sort(flows)
            let order = sorter.order
            // The flows are read in label-tuple order, not the map order they lie in: without
            // loading each one's key some flows ahead, the grouping stalled on a cache miss per flow.
            var prefetched = 0
            withUnsafeTemporaryAllocation(of: UInt8.self, capacity: FlowTable.maxLabelSetLength) { scratch in
                var groupStart = 0
                while groupStart < order.count {
                    while prefetched < min(groupStart + FlowTable.prefetchDistance, order.count) {
                        let key = UnsafeRawPointer(flows.baseAddress! + order[prefetched]) + FlowTable.keyOffset
                        fs_prefetch(key)
                        fs_prefetch(key + MemoryLayout<FlowKey>.size - 1)
                        prefetched += 1
                    }
                    // A group is a run of flows with the same 4-tuple, i.e. the same label set
                    // without netns; within it, flows are ordered by namespace.
                    let groupKey = flows[order[groupStart]].key
                    var groupEnd = groupStart + 1
                    while groupEnd < order.count, flows[order[groupEnd]].key.hasSameEndpoints(as: groupKey) {
                        groupEnd += 1
                    }
                    // Only namespaces tell the group's label sets apart; exact duplicates (dropped
                    // below) do not count, so a stale entry does not change the survivor's labels.
                    var namespaces = 1
                    for position in (groupStart + 1)..<groupEnd
                    where flows[order[position]].key.netns != flows[order[position - 1]].key.netns {
                        namespaces += 1
                    }
                    let withNetns = alwaysNetns || namespaces > 1
                    var runStart = groupStart
                    while runStart < groupEnd {
                        // Flows in one namespace are exact duplicates: keep the most recently
                        // updated, the first of them on a tie.
                        let netns = flows[order[runStart]].key.netns
                        var keptPosition = runStart
                        var runEnd = runStart + 1
                        while runEnd < groupEnd, flows[order[runEnd]].key.netns == netns {
                            if flows[order[runEnd]].lastUpdate > flows[order[keptPosition]].lastUpdate {
                                keptPosition = runEnd
                            }
                            runEnd += 1
                        }
                        duplicatesDropped += runEnd - runStart - 1
                        let kept = order[keptPosition]
                        let length = FlowTable.render(
                            flows.baseAddress! + kept, style: style, netns: withNetns, owner: owner,
                            into: scratch.baseAddress!)
                        rows.append(Row(labelsStart: arena.count, labelsCount: length))
                        arena.append(contentsOf: UnsafeBufferPointer(start: scratch.baseAddress!, count: length))
                        flowIndices.append(kept)
                        runStart = runEnd
                    }
                    groupStart = groupEnd
                }
            }
            columns.fill(from: flows, order: flowIndices)
        }
        // `ByteWriter.writeChunked` reads a chunk past the last label set.
        arena.append(contentsOf: repeatElement(0, count: ByteWriter.chunkBytes))
    }

    /// How many flows ahead of the grouping their keys are loaded.
    private static let prefetchDistance = 16
    /// Where a `FlowSample`'s key lies in it.
    private static let keyOffset = MemoryLayout<FlowSample>.offset(of: \.key)!

    /// Upper bound of one rendered label set: two IPv6 texts, two ports, one namespace
    /// number, comm and the fixed text around them fit in 256 bytes; each workload label
    /// adds its name and a value cut to `maxWorkloadValueLength` bytes, escaped (at most two
    /// bytes per byte).
    static let maxLabelSetLength = 256 + 3 * (16 + 2 * maxWorkloadValueLength)

    /// Longest container, pod or namespace value written: Kubernetes names are at most 253
    /// bytes (a pod's DNS subdomain name), container ids 64.
    static let maxWorkloadValueLength = 253

    /// Writes the flow's label set in `style`, with `,netns="…"` last when asked. Addresses
    /// and numbers never contain characters that need escaping.
    private static func render(
        _ flow: UnsafePointer<FlowSample>, style: LabelStyle, netns: Bool, owner: OwnerLabels,
        into destination: UnsafeMutablePointer<UInt8>
    ) -> Int {
        let key = flow.pointee.key
        var writer = ByteWriter(destination)
        switch style {
        case .endpoints:
            writer.write("{src=\"")
            writer.writeAddress(key.local)
            writer.write("\",sport=\"")
            writer.write(UInt64(key.localPort))
            writer.write("\",dst=\"")
            writer.writeAddress(key.remote)
            writer.write("\",dport=\"")
            writer.write(UInt64(key.remotePort))
        case .process:
            writer.write("{pid=\"")
            writer.write(UInt64(flow.pointee.pid))
            writer.write("\",dst=\"")
            writer.writeAddress(key.remote)
            writer.write("\",dport=\"")
            writer.write(UInt64(key.remotePort))
        case .seedEndpoints:
            writer.write("{flow=\"(SRC#")
            writer.writeAddress(key.local)
            writer.write(byte: UInt8(ascii: "|"))
            writer.write(UInt64(key.localPort))
            writer.write(")(DST#")
            writer.writeAddress(key.remote)
            writer.write(byte: UInt8(ascii: "|"))
            writer.write(UInt64(key.remotePort))
            writer.write(byte: UInt8(ascii: ")"))
        case .seedProcess:
            writer.write("{flow=\"(")
            writer.write(UInt64(flow.pointee.pid))
            writer.write(")(DST#")
            writer.writeAddress(key.remote)
            writer.write(byte: UInt8(ascii: "|"))
            writer.write(UInt64(key.remotePort))
            writer.write(byte: UInt8(ascii: ")"))
        }
        if netns {
            writer.write("\",netns=\"")
            writer.write(UInt64(key.netns))
        }
        if owner.contains(.pid), style == .endpoints || style == .seedEndpoints {
            writer.write("\",pid=\"")
            if flow.pointee.pid != 0 { writer.write(UInt64(flow.pointee.pid)) }
        }
        if owner.contains(.comm) {
            writer.write("\",comm=\"")
            // The kernel's comm is at most 15 bytes; anything longer is not from it.
            writer.writeEscapedLabelValue(String(flow.pointee.comm.utf8.prefix(15)) ?? "")
        }
        if !owner.isDisjoint(with: [.container, .pod, .namespace]) {
            let workload = flow.pointee.workload
            if owner.contains(.container) {
                writer.write("\",container=\"")
                writer.writeWorkloadValue(workload?.containerLabel)
            }
            if owner.contains(.pod) {
                writer.write("\",pod=\"")
                writer.writeWorkloadValue(workload?.podLabel)
            }
            if owner.contains(.namespace) {
                writer.write("\",namespace=\"")
                writer.writeWorkloadValue(workload?.namespaceLabel)
            }
        }
        writer.write("\"}")
        return writer.count
    }
}

extension FlowKey {
    /// Whether both keys have the same 4-tuple, whatever their family and namespace.
    fileprivate func hasSameEndpoints(as other: FlowKey) -> Bool {
        local == other.local && localPort == other.localPort && remote == other.remote && remotePort == other.remotePort
    }
}

extension ByteWriter {
    /// Writes a container, pod or namespace label value, cut to `maxWorkloadValueLength`
    /// bytes (on a character boundary); nothing when unknown.
    fileprivate mutating func writeWorkloadValue(_ value: String?) {
        guard let value, !value.isEmpty else { return }
        var text = Substring(value)
        while text.utf8.count > FlowTable.maxWorkloadValueLength { text = text.dropLast() }
        writeEscapedLabelValue(String(text))
    }

    /// Writes an address's text (at most `IPAddress.maxTextLength` bytes).
    fileprivate mutating func writeAddress(_ address: IPAddress) {
        writeInPlace { address.render(into: $0) }
    }
}
