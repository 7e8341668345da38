// SPDX-License-Identifier: Apache-2.0

import NIOCore

/// Renders a flow snapshot and the agent's self metrics as Prometheus text exposition
/// format 0.0.4 or OpenMetrics 1.0 text (`Format`).
///
/// Written by hand rather than with a metrics library because the per-flow families are
/// rebuilt from scratch on every scrape at up to hundreds of thousands of series: label
/// sets are rendered once per flow (`FlowTable`), each family is written with a single
/// capacity reservation, and numbers are formatted without allocating. The encoder keeps its
/// scratch arrays between calls, so reuse one instance; it is not safe to share one instance
/// between threads without a lock.
public struct MetricsEncoder: Sendable {
    /// How the per-flow label sets are built.
    public struct Options: Sendable, Hashable {
        /// Add `netns="<inode>"` to every flow, not only to flows whose 4-tuple appears in
        /// more than one network namespace.
        public var netnsLabel: Bool
        /// flowstat's names, or the seed exporter's.
        public var output: OutputMode
        /// One series per flow, or per process and remote endpoint.
        public var labelFolding: LabelFolding
        /// Per-flow families to write (the config's `logic.metrics`); the others are left out,
        /// HELP and TYPE included.
        public var enabledFlowMetrics: Set<FlowMetric>
        /// Add the owning process's `pid` to every flow (empty when unknown; already a label
        /// with `pid_condensed`).
        public var pidLabel: Bool
        /// Add the owning process's command name as `comm` to every flow (empty when unknown).
        public var commLabel: Bool
        /// Add `container`, `pod` and `namespace` (the flow's workload; empty outside
        /// containers, pods, or when unknown).
        public var containerLabel: Bool
        public var podLabel: Bool
        public var namespaceLabel: Bool
        /// Workload labels written on the `tcp_peer_*` aggregates (their keys carry them).
        public var aggregateLabels: Set<AggregateLabel> = []

        public init(
            netnsLabel: Bool = false, output: OutputMode = .flowstat, labelFolding: LabelFolding = .none,
            enabledFlowMetrics: Set<FlowMetric> = FlowMetricCatalogue.defaultMetrics, pidLabel: Bool = false,
            commLabel: Bool = false, containerLabel: Bool = false, podLabel: Bool = false,
            namespaceLabel: Bool = false
        ) {
            self.containerLabel = containerLabel
            self.podLabel = podLabel
            self.namespaceLabel = namespaceLabel
            self.netnsLabel = netnsLabel
            self.output = output
            self.labelFolding = labelFolding
            self.enabledFlowMetrics = enabledFlowMetrics
            self.pidLabel = pidLabel
            self.commLabel = commLabel
        }

        var ownerLabels: FlowTable.OwnerLabels {
            var labels: FlowTable.OwnerLabels = []
            if pidLabel { labels.insert(.pid) }
            if commLabel { labels.insert(.comm) }
            if containerLabel { labels.insert(.container) }
            if podLabel { labels.insert(.pod) }
            if namespaceLabel { labels.insert(.namespace) }
            return labels
        }

        var labelStyle: FlowTable.LabelStyle {
            switch (output, labelFolding) {
            case (.flowstat, .none), (.flowstat, .rawEndpoint): .endpoints
            case (.flowstat, .pidCondensed): .process
            case (.ssExporter, .none), (.ssExporter, .rawEndpoint): .seedEndpoints
            case (.ssExporter, .pidCondensed): .seedProcess
            }
        }
    }

    /// The exposition format of one `encode` call, chosen per request from `Accept`.
    public enum Format: Sendable, Hashable {
        /// Prometheus text format 0.0.4: what Prometheus and most tools read.
        case prometheusText
        /// OpenMetrics 1.0 text: counter families named without `_total`, `# UNIT` lines,
        /// `*_info` gauges as info families, and `# EOF` at the end.
        case openMetrics

        /// The `Content-Type` of output in this format.
        public var contentType: String {
            switch self {
            case .prometheusText: MetricsEncoder.contentType
            case .openMetrics: "application/openmetrics-text; version=1.0.0; charset=utf-8"
            }
        }
    }

    /// The `Content-Type` of Prometheus text output.
    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    /// Takes the bytes of a streamed encoding (see `encode`); it must consume the buffer's
    /// readable bytes.
    public typealias Flush = (inout ByteBuffer) -> Void

    public var options: Options
    private var table = FlowTable()
    /// The `encode` call's streaming threshold; `.max` when the output is held whole.
    private var flushThreshold = Int.max
    /// The format of the `encode` call in progress; read by the line writers.
    private var format = Format.prometheusText

    public init(options: Options = Options()) {
        self.options = options
    }

    /// Appends the exposition of `snapshot` and `context` to `buffer`.
    ///
    /// Streamed: with `flush`, the per-flow families are written in batches, and whenever
    /// `buffer` holds at least `flushThreshold` bytes it is handed to `flush`, which must
    /// consume them (send them, then clear the buffer); what is left at the end stays in
    /// `buffer`. The output is the same bytes either way, and is never held whole.
    ///
    /// Flows are sorted by label tuple, so equal inputs give byte-identical output. Both
    /// formats carry the same samples; only headers and the end marker differ.
    @discardableResult
    public mutating func encode(
        _ snapshot: FlowSnapshot,
        context: ExpositionContext,
        format: Format = .prometheusText,
        into buffer: inout ByteBuffer,
        flushThreshold: Int = .max,
        flush: Flush = { _ in }
    ) -> EncodeSummary {
        var written = 0
        let startIndex = buffer.writerIndex
        self.format = format
        self.flushThreshold = flushThreshold
        // Counts what went to `flush` too, for the summary.
        let counting: Flush = { buffer in
            written += buffer.readableBytes
            flush(&buffer)
        }
        let flows =
            options.labelFolding == .pidCondensed
            ? LabelFolding.condenseByProcess(snapshot.flows) : snapshot.flows
        table.rebuild(
            from: flows, alwaysNetns: options.netnsLabel, style: options.labelStyle, owner: options.ownerLabels,
            metrics: options.enabledFlowMetrics)
        let flowCount = Double(context.totalFlows ?? snapshot.flows.count)
        switch options.output {
        case .flowstat:
            writePerFlowFamilies(into: &buffer, flush: counting)
            writeFamily(
                "tcp_flows", "TCP flows the agent sees now (selected ones, before the cardinality cap).", .gauge,
                flowCount, into: &buffer)
            // Exemplars exist in OpenMetrics only: each bucket names the flow with the worst RTT now.
            let exemplify = format == .openMetrics
            if let histogram = snapshot.rttHistogram {
                writeHistogram(
                    "tcp_rtt_seconds", "Every round-trip time sample the kernel took, on every TCP flow.", histogram,
                    exemplars: exemplify ? Self.worstFlows(snapshot.flows, bounds: histogram.bounds) : [:],
                    into: &buffer)
            }
            if let services = snapshot.serviceRTTHistograms {
                // Numeric port order, "other" (0) last.
                let ports: [UInt16] = services.keys.filter { $0 != 0 }.sorted() + (services[0] == nil ? [] : [0])
                let series: [(String, Histogram)] = ports.map { port in
                    (port == 0 ? "other" : String(port), services[port]!)
                }
                let exemplars = exemplify ? Self.worstFlowsByService(snapshot.flows, services) : [:]
                writeHistograms(
                    "tcp_service_rtt_seconds",
                    "Every round-trip time sample the kernel took, by service port (local port of accepted flows, remote port of opened ones).",
                    label: "port", series, exemplars: exemplars, into: &buffer)
            }
            if let groups = snapshot.peerGroupRTTHistograms {
                writeHistograms(
                    "tcp_peer_group_rtt_seconds",
                    "Every round-trip time sample the kernel took on flows to a configured peer group's networks.",
                    label: "peer_group", groups.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }, into: &buffer)
            }
        case .ssExporter:
            writeSeedFamilies(
                flowCount: flowCount, rttHistogram: snapshot.rttHistogram, into: &buffer, flush: counting)
        }
        if let histogram = snapshot.flowDurationHistogram {
            writeHistogram(
                "tcp_flow_duration_seconds", "Lifetime of the TCP flows that closed, from established to closed.",
                histogram, into: &buffer)
        }
        if let histogram = snapshot.flowBytesHistogram {
            writeHistogram(
                "tcp_flow_bytes", "Bytes a closed TCP flow carried: bytes acked plus bytes received.", histogram,
                into: &buffer)
        }
        if let aggregates = context.aggregates {
            writeAggregates(aggregates, into: &buffer)
        }

        if let events = snapshot.kernelEvents {
            // Counted by the kernel at each state change: exact however short the flows.
            writeHeader(
                "tcp_flows_opened_total", "TCP flows established on this host, by who opened them.", .counter,
                into: &buffer)
            writeSample(
                "tcp_flows_opened_total", labels: [("direction", "active")], value: Double(events.openedActive),
                into: &buffer)
            writeSample(
                "tcp_flows_opened_total", labels: [("direction", "passive")], value: Double(events.openedPassive),
                into: &buffer)
            writeFamily(
                "tcp_flows_closed_total", "Established TCP flows that closed on this host.", .counter,
                Double(events.closed), into: &buffer)
            if let retransmits = events.retransmits {
                writeRetransmits(retransmits, into: &buffer)
            }
        }

        writeSelfMetrics(snapshot, context: context, into: &buffer)
        // Families written outside the encoder (CollectorMetrics.swift, ProcessMetrics.swift).
        if options.output == .ssExporter, let runs = context.collectionRuns {
            CollectorMetrics.write(runs: runs, status: .success(flows: flowCount), format: format, into: &buffer)
        }
        context.process?.write(format: format, into: &buffer)

        if format == .openMetrics {
            buffer.writeStaticString("# EOF\n")
        }
        return EncodeSummary(
            flowSeries: table.rows.count,
            duplicatesDropped: table.duplicatesDropped,
            bytes: written + buffer.writerIndex - startIndex)
    }

    // MARK: - Per-flow families

    /// The catalogue's families with flowstat's names, in catalogue order.
    private func writePerFlowFamilies(into buffer: inout ByteBuffer, flush: Flush) {
        for (index, metric) in FlowMetricCatalogue.all.enumerated()
        where options.enabledFlowMetrics.contains(metric.metric) {
            writeHeader(metric.name, metric.help, MetricType(metric.type), into: &buffer)
            let first = FlowMetricCatalogue.firstSlot[index]
            for (offset, series) in metric.series.enumerated() {
                writeFlowSeries(
                    metric.name, label: series.label, table.columns.values[first + offset],
                    as: series.value.isReal ? .real : .integer, skippingAbsent: !metric.requires.isEmpty,
                    into: &buffer, flush: flush)
            }
        }
    }

    /// The seed exporter's names and units (`--compat ss-exporter`). Its counters lack the
    /// `_total` suffix and its flow count has one, against Prometheus' naming rules; they
    /// are typed `untyped` so that the names dashboards use stay and linters still pass.
    private func writeSeedFamilies(
        flowCount: Double, rttHistogram: Histogram?, into buffer: inout ByteBuffer, flush: Flush
    ) {
        for (index, metric) in FlowMetricCatalogue.all.enumerated()
        where options.enabledFlowMetrics.contains(metric.metric) {
            guard let seed = metric.seed else { continue }
            let encoding: ColumnEncoding = seed.milliseconds ? .milliseconds : (metric.value.isReal ? .real : .integer)
            writeHeader(seed.name, seed.help, MetricType(seed.type), into: &buffer)
            writeFlowSeries(
                seed.name, label: "", table.columns.values[FlowMetricCatalogue.firstSlot[index]], as: encoding,
                skippingAbsent: !metric.requires.isEmpty, into: &buffer, flush: flush)
        }
        if let histogram = rttHistogram {
            let milliseconds = Histogram(
                bounds: histogram.bounds.map(Self.milliseconds), counts: histogram.counts,
                sum: Self.milliseconds(histogram.sum))
            writeHistogram(
                "tcp_rtt_hist_ms", "Every round-trip time sample the kernel took, on every TCP flow, milliseconds.",
                milliseconds, into: &buffer)
        }
        writeFamily("tcp_flows_total", "TCP flows the agent sees now (a gauge).", .untyped, flowCount, into: &buffer)
    }

    /// Seconds to milliseconds, rounded to the nanosecond so that 123 µs prints as 0.123,
    /// not 0.12300000000000001.
    private static func milliseconds(_ seconds: Double) -> Double {
        (seconds * 1e12).rounded() / 1e9
    }

    /// How a column's values are written.
    private enum ColumnEncoding {
        case integer
        case real
        /// Seconds written as milliseconds (the seed's unit).
        case milliseconds
    }

    /// Writes one series of a family (its header written): one sample per row of the
    /// table, with the value from `column` at the same index and `label` (`,reason="…"`)
    /// after the flow's labels. `skippingAbsent`: rows whose value is `FlowTable.absent`
    /// have no sample.
    private func writeFlowSeries(
        _ name: StaticString, label: StaticString, _ column: [UInt64], as encoding: ColumnEncoding,
        skippingAbsent: Bool, into buffer: inout ByteBuffer, flush: Flush
    ) {
        switch (encoding, skippingAbsent) {
        case (.integer, false): writeFlowSeries(name, label, column, into: &buffer, flush: flush) { $0.write($1) }
        case (.integer, true):
            writeFlowSeries(name, label, column, skippingAbsent: true, into: &buffer, flush: flush) { $0.write($1) }
        case (.real, false):
            writeFlowSeries(name, label, column, into: &buffer, flush: flush) { $0.write(Double(bitPattern: $1)) }
        case (.real, true):
            writeFlowSeries(name, label, column, skippingAbsent: true, into: &buffer, flush: flush) {
                $0.write(Double(bitPattern: $1))
            }
        case (.milliseconds, _):
            writeFlowSeries(name, label, column, skippingAbsent: skippingAbsent, into: &buffer, flush: flush) {
                $0.write(Self.milliseconds(Double(bitPattern: $1)))
            }
        }
    }

    /// The loop of `writeFlowSeries`, always inlined so that each encoding gets a loop of its
    /// own with the writer's cursor in a register: a call per series costs measurably at
    /// hundreds of thousands of series.
    @inline(__always)
    private func writeFlowSeries(
        _ name: StaticString, _ label: StaticString, _ column: [UInt64], skippingAbsent: Bool = false,
        into buffer: inout ByteBuffer, flush: Flush, value write: (inout ByteWriter, UInt64) -> Void
    ) {
        let rows = table.rows
        guard !rows.isEmpty else { return }

        // A label goes inside the flow's braces: its label set without the closing brace, then
        // the tail: the label, the brace and the space before the value.
        let tailCount = label.utf8CodeUnitCount + 2
        let perSeries = name.utf8CodeUnitCount + tailCount + ByteWriter.maxDoubleLength + 1  // and the newline
        // Held whole, one reservation for the family; streamed, one per batch of rows, so
        // the buffer never grows past a batch over the threshold. The chunk: how far the last
        // copy may write past its series.
        let streamed = flushThreshold < .max
        let batch = streamed ? Self.rowsPerBatch : rows.count

        // The name and the tail, each with a chunk of room after it for `writeChunked`.
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: perSeries + 2 * ByteWriter.chunkBytes) { scratch in
            scratch.initialize(repeating: 0)  // what a chunk reads past the name or tail is defined
            let namePart = scratch.baseAddress!
            namePart.update(from: name.utf8Start, count: name.utf8CodeUnitCount)
            let tail = namePart + name.utf8CodeUnitCount + ByteWriter.chunkBytes
            tail.update(from: label.utf8Start, count: label.utf8CodeUnitCount)
            tail[tailCount - 2] = UInt8(ascii: "}")
            tail[tailCount - 1] = UInt8(ascii: " ")
            table.arena.withUnsafeBufferPointer { arena in
                column.withUnsafeBufferPointer { values in
                    let arenaBase = UnsafeRawPointer(arena.baseAddress!)
                    var start = 0
                    while start < rows.count {
                        let end = min(start + batch, rows.count)
                        let bound =
                            (streamed
                                ? (end - start) * (perSeries + FlowTable.maxLabelSetLength)
                                : table.labelBytes + rows.count * perSeries) + ByteWriter.chunkBytes
                        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: bound) { destination in
                            var writer = ByteWriter(destination)
                            for index in start..<end {
                                let value = values[index]
                                if skippingAbsent, value == FlowTable.absent { continue }
                                let row = rows[index]
                                writer.writeChunked(namePart, count: name.utf8CodeUnitCount)
                                writer.writeChunked(arenaBase + row.labelsStart, count: row.labelsCount - 1)
                                writer.writeChunked(tail, count: tailCount)
                                write(&writer, value)
                                writer.write(byte: UInt8(ascii: "\n"))
                            }
                            return writer.count
                        }
                        if buffer.readableBytes >= flushThreshold { flush(&buffer) }
                        start = end
                    }
                }
            }
        }
    }

    /// Rows written per reservation when streaming: about 300 KiB of output.
    private static let rowsPerBatch = 2048

    // MARK: - Aggregates and histograms

    /// Writes a histogram family from per-bucket counts: Prometheus buckets are cumulative,
    /// and `+Inf` equals `_count`.
    private func writeHistogram(
        _ name: StaticString, _ help: StaticString, _ histogram: Histogram, exemplars: [Int: Exemplar] = [:],
        into buffer: inout ByteBuffer
    ) {
        writeHeader(name, help, .histogram, into: &buffer)
        var cumulative: UInt64 = 0
        for (index, (bound, count)) in zip(histogram.bounds, histogram.counts).enumerated() {
            cumulative += count
            writeSample(
                name, suffix: "_bucket", labels: [("le", PrometheusText.format(bound))], value: Double(cumulative),
                exemplar: exemplars[index], into: &buffer)
        }
        cumulative += histogram.counts.last ?? 0
        writeSample(
            name, suffix: "_bucket", labels: [("le", "+Inf")], value: Double(cumulative),
            exemplar: exemplars[histogram.bounds.count], into: &buffer)
        writeSample(name, suffix: "_sum", value: histogram.sum, into: &buffer)
        writeSample(name, suffix: "_count", value: Double(cumulative), into: &buffer)
    }

    /// Writes one histogram family with a series per labelled histogram; `exemplars` by label
    /// value, then bucket index.
    private func writeHistograms(
        _ name: StaticString, _ help: StaticString, label: StaticString, _ series: [(String, Histogram)],
        exemplars: [String: [Int: Exemplar]] = [:], into buffer: inout ByteBuffer
    ) {
        writeHeader(name, help, .histogram, into: &buffer)
        for (value, histogram) in series {
            var cumulative: UInt64 = 0
            let examples = exemplars[value] ?? [:]
            for (index, (bound, count)) in zip(histogram.bounds, histogram.counts).enumerated() {
                cumulative += count
                writeSample(
                    name, suffix: "_bucket", labels: [(label, value), ("le", PrometheusText.format(bound))],
                    value: Double(cumulative), exemplar: examples[index], into: &buffer)
            }
            cumulative += histogram.counts.last ?? 0
            writeSample(
                name, suffix: "_bucket", labels: [(label, value), ("le", "+Inf")], value: Double(cumulative),
                exemplar: examples[histogram.bounds.count], into: &buffer)
            writeSample(name, suffix: "_sum", labels: [(label, value)], value: histogram.sum, into: &buffer)
            writeSample(name, suffix: "_count", labels: [(label, value)], value: Double(cumulative), into: &buffer)
        }
    }

    // MARK: - Exemplars

    typealias Exemplar = FamilyWriter.Exemplar

    /// The exemplar of a flow: its endpoints under the per-flow series' label names (so a
    /// query for the flow's own series joins on them), at most 104 characters with IPv6
    /// addresses, inside OpenMetrics' 128; its smoothed RTT as the value.
    private static func exemplar(of flow: FlowSample) -> Exemplar {
        Exemplar(
            labels: [
                ("src", flow.key.local.description), ("sport", String(flow.key.localPort)),
                ("dst", flow.key.remote.description), ("dport", String(flow.key.remotePort)),
            ], value: flow.rtt)
    }

    /// Per bucket index, the flow whose smoothed RTT, now, falls in that bucket and is the
    /// highest there: where a latency spike on a dashboard leads. Flows without an RTT
    /// sample yet (0) have none.
    static func worstFlows(_ flows: some Sequence<FlowSample>, bounds: [Double]) -> [Int: Exemplar] {
        var worst: [Int: FlowSample] = [:]
        for flow in flows where flow.rtt > 0 {
            let bucket = bounds.firstIndex { flow.rtt <= $0 } ?? bounds.count
            if flow.rtt > worst[bucket]?.rtt ?? 0 { worst[bucket] = flow }
        }
        return worst.mapValues(exemplar(of:))
    }

    /// `worstFlows` per service series of `tcp_service_rtt_seconds`, by its `port` label: a
    /// flow's service port as the kernel counts it (its direction says which end), `other`
    /// for ports without a series of their own. One pass, no copies of the flows.
    static func worstFlowsByService(
        _ flows: [FlowSample], _ services: [UInt16: Histogram]
    ) -> [String: [Int: Exemplar]] {
        guard let bounds = services.values.first?.bounds else { return [:] }
        // Port 0 is the "other" series, as in `services`.
        struct Slot: Hashable {
            var port: UInt16
            var bucket: Int
        }
        var worst: [Slot: Int] = [:]
        for index in flows.indices where flows[index].rtt > 0 && flows[index].direction != .unknown {
            let rtt = flows[index].rtt
            let key = flows[index].key
            var port = flows[index].direction == .passive ? key.localPort : key.remotePort
            if services[port] == nil {
                guard services[0] != nil else { continue }
                port = 0
            }
            let slot = Slot(port: port, bucket: bounds.firstIndex { rtt <= $0 } ?? bounds.count)
            if rtt > worst[slot].map({ flows[$0].rtt }) ?? 0 { worst[slot] = index }
        }
        var exemplars: [String: [Int: Exemplar]] = [:]
        for (slot, index) in worst {
            exemplars[slot.port == 0 ? "other" : String(slot.port), default: [:]][slot.bucket] = exemplar(
                of: flows[index])
        }
        return exemplars
    }

    /// The per-(peer, port) families: live flows folded by the cap, plus every closed flow.
    private func writeAggregates(_ aggregates: [Aggregate], into buffer: inout ByteBuffer) {
        let labels = aggregates.map { aggregate -> [(name: StaticString, value: String)] in
            let peer: StaticString = "peer"
            let port: StaticString = "port"
            var labels: [(name: StaticString, value: String)] = [
                (peer, aggregate.key.peerLabel), (port, aggregate.key.portLabel),
            ]
            let workload = aggregate.key.workload
            if options.aggregateLabels.contains(.namespace) { labels.append(("namespace", workload.namespace)) }
            if options.aggregateLabels.contains(.pod) { labels.append(("pod", workload.pod)) }
            if options.aggregateLabels.contains(.container) { labels.append(("container", workload.container)) }
            return labels
        }
        func family(
            _ name: StaticString, _ help: StaticString, _ type: MetricType, _ value: (Aggregate) -> UInt64
        ) {
            writeHeader(name, help, type, into: &buffer)
            for (aggregate, labels) in zip(aggregates, labels) {
                writeSample(name, labels: labels, value: Double(value(aggregate)), into: &buffer)
            }
        }
        family(
            "tcp_peer_flows",
            "Live TCP flows to this peer and service port without their own series (cardinality cap).",
            .gauge
        ) { $0.live.flows }
        family(
            "tcp_peer_flows_closed_total", "TCP flows to this peer and service port that closed.", .counter
        ) { $0.closed.flows }
        family(
            "tcp_peer_bytes_acked_total", "Bytes acked on closed flows and on live flows without their own series.",
            .counter
        ) { $0.total.bytesAcked }
        family(
            "tcp_peer_bytes_received_total",
            "Bytes received on closed flows and on live flows without their own series.",
            .counter
        ) { $0.total.bytesReceived }
        family(
            "tcp_peer_data_segments_in_total",
            "Data segments received on closed flows and on live flows without their own series.", .counter
        ) { $0.total.dataSegmentsIn }
        family(
            "tcp_peer_data_segments_out_total",
            "Data segments sent on closed flows and on live flows without their own series.", .counter
        ) { $0.total.dataSegmentsOut }
        family(
            "tcp_peer_retransmits_total",
            "Segments retransmitted on closed flows and on live flows without their own series.", .counter
        ) { $0.total.retransmits }
        guard options.enabledFlowMetrics.contains(.limitedSeconds) else { return }
        // Like the flows' family, one series per reason; aggregates of flows whose source did
        // not know the times have none.
        let name: StaticString = "tcp_peer_limited_seconds_total"
        writeHeader(
            name,
            "Seconds of closed flows and of live flows without their own series, by what limited them, as for single flows.",
            .counter, into: &buffer)
        let reasonLabel: StaticString = "reason"
        for (aggregate, labels) in zip(aggregates, labels) {
            let total = aggregate.total
            guard total.timedFlows > 0 else { continue }
            for reason in LimitReason.allCases {
                writeSample(
                    name, labels: labels + [(reasonLabel, reason.rawValue)], value: total.limitedSeconds(reason),
                    into: &buffer)
            }
        }
    }

    /// Host-wide retransmissions by kind, counted by the kernel at each one (every network
    /// namespace, tracked flows or not).
    private func writeRetransmits(_ retransmits: RetransmitCounts, into buffer: inout ByteBuffer) {
        writeHeader(
            "tcp_retransmits_total",
            "TCP segments retransmitted on this host, by kind: fast (recovery), rto (after a timeout), loss_probe (tail-loss probe).",
            .counter, into: &buffer)
        for (kind, value) in [
            ("fast", retransmits.fast), ("loss_probe", retransmits.lossProbe), ("rto", retransmits.rto),
        ] {
            writeSample("tcp_retransmits_total", labels: [("kind", kind)], value: Double(value), into: &buffer)
        }
        writeFamily(
            "tcp_rto_timeouts_total", "TCP retransmission timeouts on this host: expiries of the RTO timer.", .counter,
            Double(retransmits.rtoTimeouts), into: &buffer)
    }

    // MARK: - Self metrics

    private func writeSelfMetrics(_ snapshot: FlowSnapshot, context: ExpositionContext, into buffer: inout ByteBuffer) {
        writeHeader(
            "flowstat_build_info", "flowstat version, commit and the Swift version it was built with.", .info,
            into: &buffer)
        writeSample(
            "flowstat_build_info",
            labels: [
                ("version", context.build.version), ("revision", context.build.revision),
                ("swift", context.build.swiftVersion),
            ],
            value: 1, into: &buffer)

        writeHeader(
            "flowstat_source_info", "Flow source in use, one series per attached kernel hook.", .info, into: &buffer)
        let attached = context.source.attachedHooks
        if attached.isEmpty {
            // Sources without hooks (inet_diag, fake) still say what they are, and why they run.
            var labels: [(name: StaticString, value: String)] = [
                ("source", context.source.kind.rawValue), ("hook", ""), ("variant", ""),
            ]
            if let reason = context.source.reason { labels.append(("reason", reason)) }
            writeSample("flowstat_source_info", labels: labels, value: 1, into: &buffer)
        }
        for hook in attached {
            // BPF: the snapshot mode, and why not a better one (the kernel refused it).
            var labels: [(name: StaticString, value: String)] = [
                ("source", context.source.kind.rawValue), ("hook", hook.name), ("variant", hook.variant),
            ]
            if let mode = context.source.mode { labels.append(("mode", mode.rawValue)) }
            if let reason = context.source.reason { labels.append(("reason", reason)) }
            writeSample("flowstat_source_info", labels: labels, value: 1, into: &buffer)
        }
        if let mode = context.source.mode {
            writeHeader(
                "flowstat_source_hook_missing",
                "1 when a hook the snapshot mode needs attached in no variant: the flows it follows are not kept up to date.",
                .gauge, into: &buffer)
            // Event mode is the one that needs the receive hook; every mode needs the retransmit hook.
            for hook in ["tcp_rcv_established", "tcp_retransmit_skb"] {
                writeSample(
                    "flowstat_source_hook_missing", labels: [("hook", hook), ("mode", mode.rawValue)],
                    value: context.source.missingHooks.contains(hook) ? 1 : 0, into: &buffer)
            }
        }

        writeFamily(
            "flowstat_map_entries", "Entries in the flow map when it was read.", .gauge,
            Double(snapshot.mapEntries), into: &buffer)
        writeFamily(
            "flowstat_map_capacity", "Capacity of the flow map.", .gauge, Double(snapshot.mapCapacity), into: &buffer)

        if let events = snapshot.kernelEvents {
            writeFamily(
                "flowstat_map_evictions_total",
                "Flows dropped for want of room: by the LRU flow map, or (live mode) left out of a snapshot; raise flowstat.bpf.mapEntries.",
                .counter, Double(events.evictions), into: &buffer)
            writeFamily(
                "flowstat_map_insert_failures_total", "New flows the flow map refused to store.", .counter,
                Double(events.insertFailures), into: &buffer)
            writeFamily(
                "flowstat_bpf_updates_total", "Flow entries written by the BPF programs.", .counter,
                Double(events.updates), into: &buffer)
            writeFamily(
                "flowstat_bpf_updates_skipped_total", "Flow updates skipped by the per-flow minimum update interval.",
                .counter, Double(events.updatesSkipped), into: &buffer)
            writeFamily(
                "flowstat_events_lost_total",
                "Closed-flow records the ring buffer had no room for (counts and histograms stay exact).", .counter,
                Double(events.eventsLost), into: &buffer)
        }
        if let reload = context.configReload {
            writeFamily(
                "flowstat_config_last_reload_successful",
                "Whether the last config reload was applied (0: it was rejected; the previous config is in force).",
                .gauge, reload.successful ? 1 : 0, into: &buffer)
            writeFamily(
                "flowstat_config_last_reload_success_timestamp_seconds",
                "When a config was last loaded successfully, start-up included.", .gauge, reload.timestamp,
                into: &buffer)
        }
        if let kubelet = context.kubelet {
            writeFamily(
                "flowstat_kubelet_last_success_timestamp_seconds",
                "When the kubelet's pod list was last read, Unix seconds; 0 before the first success.", .gauge,
                kubelet.lastSuccess ?? 0, into: &buffer)
            writeFamily(
                "flowstat_kubelet_refresh_failures_total",
                "Pod list refreshes that failed (the last good list stays in use); the log says why and the fix.",
                .counter, Double(kubelet.failures), into: &buffer)
            writeFamily(
                "flowstat_kubelet_pods", "Pods in the kubelet's pod list in use (the last good one).", .gauge,
                Double(kubelet.pods), into: &buffer)
        }
        if let dropped = context.seriesDropped {
            writeFamily(
                "flowstat_series_dropped_total", "Per-flow series folded into aggregates by the cardinality cap.",
                .counter, Double(dropped), into: &buffer)
        }

        writeHeader(
            "flowstat_scrape_duration_seconds", "Duration of the previous scrape: snapshot plus encoding.", .gauge,
            into: &buffer)
        if let duration = context.previousScrapeDuration {
            writeSample("flowstat_scrape_duration_seconds", value: duration, into: &buffer)
        }
        writeHeader(
            "flowstat_snapshot_duration_seconds",
            "Part of the previous scrape spent reading the flows from the source (kernel refresh and map read).",
            .gauge, into: &buffer)
        if let duration = context.previousSnapshotDuration {
            writeSample("flowstat_snapshot_duration_seconds", value: duration, into: &buffer)
        }
    }

    // MARK: - Lines

    private typealias MetricType = FamilyWriter.MetricType

    /// Writes families in the format being encoded.
    private var lines: FamilyWriter { FamilyWriter(format: format) }

    private func writeFamily(
        _ name: StaticString, _ help: StaticString, _ type: MetricType, _ value: Double, into buffer: inout ByteBuffer
    ) {
        lines.family(name, help, type, value, into: &buffer)
    }

    private func writeHeader(
        _ name: StaticString, _ help: StaticString, _ type: MetricType, into buffer: inout ByteBuffer
    ) {
        lines.header(name, help, type, into: &buffer)
    }

    private func writeSample(
        _ name: StaticString, suffix: StaticString = "", labels: [(name: StaticString, value: String)] = [],
        value: Double, exemplar: Exemplar? = nil, into buffer: inout ByteBuffer
    ) {
        lines.sample(name, suffix: suffix, labels: labels, value: value, exemplar: exemplar, into: &buffer)
    }
}
