// SPDX-License-Identifier: Apache-2.0

import NIOConcurrencyHelpers
import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// Turns a flow source into exposition bytes: takes a snapshot, encodes it, and remembers
/// what the next scrape and `/health` need (the duration, the last error).
///
/// Scrapes run one at a time under a lock, so one encoder and one output buffer serve every
/// scrape and keep their capacity (tens of megabytes at 400,000 series) instead of being
/// reallocated. `scrape()` blocks for as long as the snapshot and encoding take: call it from
/// a thread pool, never from an event loop.
public final class Scraper: Sendable {
    /// The source every scrape reads.
    public let source: any FlowSource
    /// The build information shown in `flowstat_build_info`.
    public let build: BuildInfo

    private struct Work: Sendable {
        var encoder: MetricsEncoder
        var buffer: ByteBuffer
        var limiter: CardinalityLimiter
        /// The config's flow selection; nil exports every flow.
        var filter: FlowFilter?
        /// Fills in the owning process of exported flows that lack one; nil when nothing needs it.
        var attributor: ProcessAttributor?
        /// The last snapshot taken for the landing page's API, and when (monotonic ns).
        var view: (snapshot: FlowSnapshot, taken: UInt64)?
    }

    private struct Status: Sendable {
        var previousDuration: Double?
        var previousSnapshotDuration: Double?
        var lastError: String?
        var stopping = false
        /// nil until `recordReload` is first called: then the reload metrics are exported.
        var reload: ConfigReloadStatus?
    }

    // Two locks: `/health` must not wait for a scrape in progress.
    private let work: NIOLockedValueBox<Work>
    private let status = NIOLockedValueBox(Status())

    /// - Parameters:
    ///   - limits: the cardinality cap applied after selection.
    ///   - filter: drops the flows the selection does not select before encoding, so
    ///     `tcp_flows` and the per-flow families count only selected flows (the map and kernel
    ///     counters stay host-wide).
    ///   - attributor: looks up the owning process (pid, comm) of the exported flows the
    ///     source has none for; needed by selection by process and by process labels.
    public init(
        source: any FlowSource, options: MetricsEncoder.Options = .init(), limits: CardinalityLimits = .init(),
        servicePorts: ServicePorts = .system(), build: BuildInfo = .current,
        filter: FlowFilter? = nil, attributor: ProcessAttributor? = nil
    ) {
        self.source = source
        self.build = build
        self.work = NIOLockedValueBox(
            Work(
                encoder: MetricsEncoder(options: options), buffer: ByteBufferAllocator().buffer(capacity: 64 * 1024),
                limiter: CardinalityLimiter(limits: limits, servicePorts: servicePorts), filter: filter,
                attributor: attributor))
    }

    /// Takes a snapshot and returns its exposition in `format`.
    ///
    /// The returned buffer shares storage with the scraper's; the next scrape reuses that
    /// storage if the response has been sent by then and allocates fresh storage otherwise.
    public func scrape(format: MetricsEncoder.Format = .prometheusText) throws -> ByteBuffer {
        try work.withLockedValue { work in
            let started = Scraper.monotonicNanoseconds()
            var snapshot: FlowSnapshot
            do {
                snapshot = try source.snapshot()
            } catch {
                status.withLockedValue { $0.lastError = String(describing: error) }
                throw error
            }
            let snapshotDuration = Double(Scraper.monotonicNanoseconds() &- started) / 1e9
            if let filter = work.filter, !filter.selectsEverything {
                snapshot.flows = filter.apply(to: snapshot.flows, attributor: work.attributor)
            } else {
                work.attributor?.fill(&snapshot.flows)
            }
            let (previousDuration, previousSnapshotDuration, reload) = status.withLockedValue {
                ($0.previousDuration, $0.previousSnapshotDuration, $0.reload)
            }
            var context = ExpositionContext(
                build: build, source: source.info, previousScrapeDuration: previousDuration)
            context.configReload = reload
            context.previousSnapshotDuration = previousSnapshotDuration
            // Aggregates exist where they carry something: a cap, or closed flows to keep.
            if work.limiter.limits.maxFlows > 0 || snapshot.closedSinceLastSnapshot != nil {
                let limited = work.limiter.apply(
                    to: snapshot.flows, closed: snapshot.closedSinceLastSnapshot,
                    perFlowFamilies: work.encoder.options.enabledFlowMetrics.count,
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
            work.encoder.encode(snapshot, context: context, format: format, into: &work.buffer)
            let elapsed = Double(Scraper.monotonicNanoseconds() &- started) / 1e9
            status.withLockedValue {
                $0.previousDuration = elapsed
                $0.previousSnapshotDuration = snapshotDuration
                $0.lastError = nil
            }
            return work.buffer
        }
    }

    /// Applies a reloaded config's export settings from the next scrape on (a scrape in
    /// progress finishes with the old ones). The cap's aggregates are kept.
    public func reconfigure(
        options: MetricsEncoder.Options, limits: CardinalityLimits, filter: FlowFilter?, attributor: ProcessAttributor?
    ) {
        work.withLockedValue { work in
            work.encoder.options = options
            work.limiter.limits = limits
            work.filter = filter
            work.attributor = attributor
        }
    }

    /// Records the outcome of a config (re)load for `flowstat_config_last_reload_*`; call it
    /// for the load at start-up too, which turns those metrics on.
    public func recordReload(successful: Bool) {
        status.withLockedValue { status in
            let lastSuccess = status.reload?.timestamp ?? 0
            status.reload = ConfigReloadStatus(
                successful: successful, timestamp: successful ? Scraper.wallClockSeconds() : lastSuccess)
        }
    }

    private static func wallClockSeconds() -> Double {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
    }

    /// A snapshot for the landing page and its JSON API: the previous one if it is younger
    /// than `maxAge` seconds, else a new one.
    ///
    /// Taken under the same lock as scrapes, because a source must never take two snapshots
    /// at once; and reused for `maxAge`, so however many browsers poll, the page costs at
    /// most one snapshot per `maxAge` and a scrape waits for at most one of them.
    public func viewSnapshot(maxAge: Double = 1) throws -> FlowSnapshot {
        try work.withLockedValue { work in
            let now = Scraper.monotonicNanoseconds()
            if let view = work.view, Double(now &- view.taken) / 1e9 < maxAge {
                return view.snapshot
            }
            var snapshot = try source.snapshot()
            // The flows that closed since the last snapshot belong to the aggregates, which
            // only scrapes export: hand them over now, or they would be lost.
            if let closed = snapshot.closedSinceLastSnapshot {
                work.limiter.addClosed(closed, now: Double(now) / 1e9)
                snapshot.closedSinceLastSnapshot = nil
            }
            work.view = (snapshot, now)
            return snapshot
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

    private static func monotonicNanoseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) &* 1_000_000_000 &+ UInt64(now.tv_nsec)
    }
}
