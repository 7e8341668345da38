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
        /// The last snapshot taken for the landing page's API, and when (monotonic ns).
        var view: (snapshot: FlowSnapshot, taken: UInt64)?
    }

    private struct Status: Sendable {
        var previousDuration: Double?
        var lastError: String?
        var stopping = false
    }

    // Two locks: `/health` must not wait for a scrape in progress.
    private let work: NIOLockedValueBox<Work>
    private let status = NIOLockedValueBox(Status())

    public init(source: any FlowSource, options: MetricsEncoder.Options = .init(), build: BuildInfo = .current) {
        self.source = source
        self.build = build
        self.work = NIOLockedValueBox(
            Work(encoder: MetricsEncoder(options: options), buffer: ByteBufferAllocator().buffer(capacity: 64 * 1024)))
    }

    /// Takes a snapshot and returns its exposition.
    ///
    /// The returned buffer shares storage with the scraper's; the next scrape reuses that
    /// storage if the response has been sent by then and allocates fresh storage otherwise.
    public func scrape() throws -> ByteBuffer {
        try work.withLockedValue { work in
            let started = Scraper.monotonicNanoseconds()
            let snapshot: FlowSnapshot
            do {
                snapshot = try source.snapshot()
            } catch {
                status.withLockedValue { $0.lastError = String(describing: error) }
                throw error
            }
            let context = ExpositionContext(
                build: build, source: source.info,
                previousScrapeDuration: status.withLockedValue { $0.previousDuration })
            if let view = work.view, started &- view.taken > 10_000_000_000 {
                work.view = nil  // Nobody has looked for 10 s: do not hold a stale copy of every flow.
            }
            work.buffer.clear()
            work.encoder.encode(snapshot, context: context, into: &work.buffer)
            let elapsed = Double(Scraper.monotonicNanoseconds() &- started) / 1e9
            status.withLockedValue {
                $0.previousDuration = elapsed
                $0.lastError = nil
            }
            return work.buffer
        }
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
            let snapshot = try source.snapshot()
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
