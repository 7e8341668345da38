// SPDX-License-Identifier: Apache-2.0

import Logging
import NIOConcurrencyHelpers
import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// The export path, source to bytes: snapshot → selection → owners → cardinality cap →
/// encoder. Built from a config value in one place (`apply`), and used by every command:
/// `serve` scrapes it, the landing page and `dump`/`top` read its selected flows, and a config
/// reload swaps its settings in one step.
///
/// Scrapes run one at a time under a lock, so one encoder and one output buffer serve every
/// scrape and keep their capacity (tens of megabytes at 400,000 series) instead of being
/// reallocated. `scrape()` blocks for as long as the snapshot and encoding take: call it from
/// a thread pool, never from an event loop.
public final class ExportPipeline: Sendable {
    /// The source every scrape reads.
    public let source: any FlowSource
    /// The build information shown in `flowstat_build_info`.
    public let build: BuildInfo
    /// Reads the `process_*` metrics at each scrape.
    private let processMetrics: @Sendable () -> ProcessMetrics?

    private struct Work: Sendable {
        var encoder: MetricsEncoder
        var buffer: ByteBuffer
        /// A streamed scrape's second buffer: pieces alternate between the two, so the one
        /// just handed on is not cleared while the event loop may still hold it (clearing a
        /// shared buffer copies it into new, unfaulted memory).
        var spareBuffer = ByteBuffer()
        var limiter: CardinalityLimiter
        /// The config's flow selection; nil exports every flow.
        var filter: FlowFilter?
        /// Fills in the owning process of exported flows that lack one; nil when nothing needs it.
        var attributor: ProcessAttributor?
        /// The last snapshot taken for the landing page's API, and when (monotonic ns).
        var view: (snapshot: FlowSnapshot, taken: UInt64)?
        /// Turns flows' cgroup ids into cgroup paths, containers and pods.
        var workloads: WorkloadResolver
        /// Whether scrapes need workloads (labels or selection by them); `dump`, `top` and
        /// the landing page always show them.
        var workloadsOnScrape = false
    }

    private struct Status: Sendable {
        var previousDuration: Double?
        var previousSnapshotDuration: Double?
        var lastError: String?
        var stopping = false
        /// nil until `recordReload` is first called: then the reload metrics are exported.
        var reload: ConfigReloadStatus?
        /// Scrapes that read the source, failed ones included (`collector_collection_runs_total`).
        var collectionRuns: UInt64 = 0
    }

    // Two locks: `/health` must not wait for a scrape in progress.
    private let work: NIOLockedValueBox<Work>
    private let status = NIOLockedValueBox(Status())
    /// Pod names from the kubelet, shared by the workload resolver and the kubelet client.
    private let pods = PodDirectory()
    /// Refreshes `pods` in the background while the config needs pod names on Kubernetes.
    private let kubelet = NIOLockedValueBox<KubeletClient?>(nil)
    private let kubeletLogger: Logger
    private let environment: @Sendable (String) -> String?

    /// - Parameters:
    ///   - config: the export settings: selection, metric switches, output names, labels
    ///     and the cardinality cap. Its kernel settings are the source's business.
    ///   - servicePorts: how aggregates find a flow's service port.
    ///   - processMetrics: the agent's `process_*` metrics, read at each scrape; tests that
    ///     compare exact text give fixed ones.
    ///   - environment: where the kubelet's default address comes from (`NODE_IP`, `NODE_NAME`).
    public init(
        source: any FlowSource, config: FlowStatConfig = FlowStatConfig(), servicePorts: ServicePorts = .system(),
        build: BuildInfo = .current, processMetrics: @escaping @Sendable () -> ProcessMetrics? = ProcessMetrics.read,
        logger: Logger = Logger(label: "flowstat.kubelet"),
        environment: @escaping @Sendable (String) -> String? = KubeletURL.environment
    ) {
        self.source = source
        self.build = build
        self.processMetrics = processMetrics
        self.kubeletLogger = logger
        self.environment = environment
        self.work = NIOLockedValueBox(
            Work(
                encoder: MetricsEncoder(), buffer: ByteBufferAllocator().buffer(capacity: 64 * 1024),
                limiter: CardinalityLimiter(servicePorts: servicePorts), workloads: WorkloadResolver(pods: pods)))
        apply(config)
    }

    /// Applies a config's export settings from the next scrape on (a scrape in progress
    /// finishes with the old ones): selection (live and closed flows alike), metric
    /// switches, output names, labels, the cap. The cap's aggregates are kept. Host names in
    /// the selection are resolved in the background from now on, the previous selection's
    /// no longer.
    public func apply(_ config: FlowStatConfig) {
        let filter = config.selection.selectsEverything ? nil : FlowFilter(selection: config.selection)
        filter?.resolver?.start()
        let (previousFilter, closedFlowWorkloads) = work.withLockedValue { work in
            work.encoder.options = MetricsEncoder.Options(
                netnsLabel: config.labels.netns, output: config.output, labelFolding: config.labelFolding,
                enabledFlowMetrics: config.metrics, pidLabel: config.labels.pid, commLabel: config.labels.comm,
                containerLabel: config.labels.container, podLabel: config.labels.pod,
                namespaceLabel: config.labels.namespace)
            work.limiter.limits = CardinalityLimits(
                maxFlows: config.cardinality.maxFlows, rankBy: config.cardinality.rankBy,
                maxAggregates: config.cardinality.maxAggregates, aggregateLabels: config.cardinality.aggregateBy)
            work.encoder.options.aggregateLabels = config.cardinality.aggregateBy
            work.attributor = config.needsProcessAttribution ? (work.attributor ?? ProcessAttributor()) : nil
            work.workloadsOnScrape = config.needsWorkloads
            work.view = nil
            defer { work.filter = filter }
            // Closed flows need their workload where live ones do: selection, labels, keys.
            return (work.filter, config.needsWorkloads ? work.workloads : nil)
        }
        source.closedFlows?.configure(
            selection: filter, labels: config.cardinality.aggregateBy, workloads: closedFlowWorkloads)
        previousFilter?.resolver?.stop()
        applyKubelet(config)
    }

    /// Runs the kubelet client while the config needs pod names and a kubelet is known;
    /// a reload that changes its settings starts a new one.
    private func applyKubelet(_ config: FlowStatConfig) {
        let settings =
            config.needsKubelet ? KubeletClient.Settings(config: config.kubelet, environment: environment) : nil
        if config.needsKubelet, settings == nil {
            kubeletLogger.info(
                "pod and namespace names need the kubelet, and neither flowstat.kubelet.url nor NODE_IP/NODE_NAME is set: pods are named by UID"
            )
        }
        let (stopped, started): (KubeletClient?, KubeletClient?) = kubelet.withLockedValue { client in
            guard client?.settings != settings else { return (nil, nil) }
            let previous = client
            client = settings.map { KubeletClient(settings: $0, directory: pods, logger: kubeletLogger) }
            return (previous, client)
        }
        stopped?.stop()
        started?.start()
    }

    /// Stops background work (host name resolution, the kubelet client); the source is the
    /// caller's to shut down.
    public func stop() {
        work.withLockedValue { $0.filter?.resolver?.stop() }
        kubelet.withLockedValue { client in
            defer { client = nil }
            return client
        }?.stop()
    }

    /// The kubelet client's refreshes so far; nil when none runs.
    public var kubeletStatus: KubeletStatus? { kubelet.withLockedValue { $0?.status } }

    /// Takes a snapshot and returns its exposition in `format`, held whole.
    ///
    /// The returned buffer shares storage with the pipeline's; the next scrape reuses that
    /// storage if the response has been sent by then and allocates fresh storage otherwise.
    public func scrape(format: MetricsEncoder.Format = .prometheusText) throws -> ByteBuffer {
        try scrape(format: format, flushThreshold: .max, send: { _ in }, waited: { 0 })
    }

    /// Takes a snapshot and hands its exposition to `send` in pieces of about `chunkBytes`
    /// as it is encoded, so the exposition is never held whole and its first bytes leave
    /// before its last are written. `send` is called on this thread and may block (it should
    /// wait until the piece is written: that is the back-pressure); the buffer it gets is
    /// reused once it returns. A snapshot that fails throws before the first piece.
    ///
    /// Scrapes are serialized, so a slow reader holds back the next scrape: the HTTP server's
    /// response timeout bounds it.
    public func scrape(
        format: MetricsEncoder.Format = .prometheusText, chunkBytes: Int = 256 << 10, send: (ByteBuffer) -> Void
    ) throws {
        // Time spent waiting for the client is not the scrape's: flowstat_scrape_duration_seconds
        // stays snapshot plus encoding, as for a response held whole.
        var waited: UInt64 = 0
        let rest = try scrape(
            format: format, flushThreshold: chunkBytes,
            send: { buffer in
                let started = SystemClock.monotonicNanoseconds()
                send(buffer)
                waited &+= SystemClock.monotonicNanoseconds() &- started
            }, waited: { waited })
        if rest.readableBytes > 0 { send(rest) }
    }

    /// - Parameter send: hands on a piece of a streamed exposition; the buffer is not
    ///   written to again until the next piece has been handed on.
    /// - Parameter waited: nanoseconds `send` has spent so far handing bytes on.
    private func scrape(
        format: MetricsEncoder.Format, flushThreshold: Int, send: (ByteBuffer) -> Void, waited: () -> UInt64
    ) throws -> ByteBuffer {
        try work.withLockedValue { work in
            let started = SystemClock.monotonicNanoseconds()
            let runs = status.withLockedValue { status in
                status.collectionRuns += 1
                return status.collectionRuns
            }
            var snapshot: FlowSnapshot
            do {
                // Only the fields the exported metrics read: the page and dump take everything.
                snapshot = try source.snapshot(
                    needing: FlowMetricCatalogue.fieldsNeeded(by: work.encoder.options.enabledFlowMetrics))
            } catch {
                status.withLockedValue { $0.lastError = String(describing: error) }
                // The seed answered a failed collection with its status, not an HTTP error;
                // its dashboards and alerts read that. flowstat's own output keeps the error.
                guard work.encoder.options.output == .ssExporter else { throw error }
                work.buffer.clear()
                CollectorMetrics.write(runs: runs, status: .sourceFailed, format: format, into: &work.buffer)
                processMetrics()?.write(format: format, into: &work.buffer)
                if format == .openMetrics { work.buffer.writeStaticString("# EOF\n") }
                return work.buffer
            }
            let snapshotDuration = Double(SystemClock.monotonicNanoseconds() &- started) / 1e9
            Self.select(&snapshot, work, workloads: work.workloadsOnScrape)
            // Every selected flow, however many the cap keeps: handed back to the source at the end.
            var selected = snapshot.flows
            let (previousDuration, previousSnapshotDuration, reload) = status.withLockedValue {
                ($0.previousDuration, $0.previousSnapshotDuration, $0.reload)
            }
            var context = ExpositionContext(
                build: build, source: source.info, previousScrapeDuration: previousDuration)
            context.configReload = reload
            context.previousSnapshotDuration = previousSnapshotDuration
            context.collectionRuns = runs
            context.process = processMetrics()
            context.kubelet = kubeletStatus
            // Aggregates exist where they carry something: a cap, or closed flows to keep.
            if work.limiter.limits.maxFlows > 0 || snapshot.closedSinceLastSnapshot != nil {
                let limited = work.limiter.apply(
                    to: snapshot.flows, closed: snapshot.closedSinceLastSnapshot,
                    perFlowFamilies: FlowMetricCatalogue.seriesPerFlow(work.encoder.options.enabledFlowMetrics),
                    now: Double(started) / 1e9)
                context.totalFlows = snapshot.flows.count
                context.aggregates = limited.aggregates
                context.seriesDropped = work.limiter.seriesDropped
                snapshot.flows = limited.kept
            }
            if let view = work.view, started &- view.taken > 10_000_000_000 {
                work.view = nil  // Nobody has looked for 10 s: do not hold a stale copy of every flow.
            }
            work.buffer.clear()
            var spare = ByteBuffer()
            if flushThreshold < .max {
                if work.buffer.capacity > 8 * flushThreshold {
                    // A whole exposition held before (HEAD, HTTP/1.0): streaming needs a fraction.
                    work.buffer = ByteBufferAllocator().buffer(capacity: 2 * flushThreshold)
                }
                swap(&spare, &work.spareBuffer)  // held by `spare` alone, so clearing it copies nothing
                if spare.capacity == 0 { spare = ByteBufferAllocator().buffer(capacity: 2 * flushThreshold) }
            }
            work.encoder.encode(
                snapshot, context: context, format: format, into: &work.buffer, flushThreshold: flushThreshold,
                flush: { buffer in
                    send(buffer)
                    swap(&buffer, &spare)
                    buffer.clear()
                })
            if flushThreshold < .max { work.spareBuffer = spare }
            snapshot.flows = []
            source.recycle(&selected)
            let elapsed = Double(SystemClock.monotonicNanoseconds() &- started &- waited()) / 1e9
            status.withLockedValue {
                $0.previousDuration = elapsed
                $0.previousSnapshotDuration = snapshotDuration
                $0.lastError = nil
            }
            return work.buffer
        }
    }

    /// Records the outcome of a config (re)load for `flowstat_config_last_reload_*`; call it
    /// for the load at start-up too, which turns those metrics on.
    public func recordReload(successful: Bool) {
        status.withLockedValue { status in
            let lastSuccess = status.reload?.timestamp ?? 0
            status.reload = ConfigReloadStatus(
                successful: successful, timestamp: successful ? SystemClock.unixSeconds() : lastSuccess)
        }
    }

    /// A snapshot for the landing page and its JSON API, selection applied: the previous one
    /// if it is younger than `maxAge` seconds, else a new one.
    ///
    /// Taken under the same lock as scrapes, because a source must never take two snapshots
    /// at once; and reused for `maxAge`, so however many browsers poll, the page costs at
    /// most one snapshot per `maxAge` and a scrape waits for at most one of them.
    public func viewSnapshot(maxAge: Double = 1) throws -> FlowSnapshot {
        try work.withLockedValue { work in
            let now = SystemClock.monotonicNanoseconds()
            if let view = work.view, Double(now &- view.taken) / 1e9 < maxAge {
                return view.snapshot
            }
            let snapshot = try selectedSnapshot(&work, now: now)
            work.view = (snapshot, now)
            return snapshot
        }
    }

    /// A new snapshot with the selection applied and owners filled in where the config
    /// needs them, as the per-flow series would show it before the cap: for `dump` and `top`.
    public func selectedSnapshot() throws -> FlowSnapshot {
        try work.withLockedValue { work in try selectedSnapshot(&work, now: SystemClock.monotonicNanoseconds()) }
    }

    private func selectedSnapshot(_ work: inout Work, now: UInt64) throws -> FlowSnapshot {
        var snapshot = try source.snapshot()
        // The flows that closed since the last snapshot belong to the aggregates, which
        // only scrapes export: hand them over now, or they would be lost.
        if let closed = snapshot.closedSinceLastSnapshot {
            work.limiter.addClosed(closed, now: Double(now) / 1e9)
            snapshot.closedSinceLastSnapshot = nil
        }
        Self.select(&snapshot, work, workloads: true)
        return snapshot
    }

    /// Keeps the flows the selection selects, owners and workloads filled in where needed.
    private static func select(_ snapshot: inout FlowSnapshot, _ work: Work, workloads: Bool) {
        if workloads { work.workloads.fill(&snapshot.flows) }
        if let filter = work.filter, !filter.selectsEverything {
            snapshot.flows = filter.apply(to: snapshot.flows, attributor: work.attributor)
        } else {
            work.attributor?.fill(&snapshot.flows)
        }
    }

    /// Whether `/health` should report success.
    public var health: Health {
        let status = status.withLockedValue { $0 }
        if status.stopping { return .unavailable("shutting down") }
        if !source.isServing { return .unavailable("the \(source.info.kind) flow source is not serving") }
        if let error = status.lastError { return .unavailable("the last snapshot failed: \(error)") }
        return .serving
    }

    /// Makes `/health` fail from now on, so that load balancers and Prometheus see the stop
    /// before the listener goes away.
    public func markStopping() {
        status.withLockedValue { $0.stopping = true }
    }

    /// The answer of `/health`.
    public enum Health: Sendable, Hashable {
        case serving
        case unavailable(String)
    }
}
