// SPDX-License-Identifier: Apache-2.0

/// Everything the exposition shows besides the snapshot: the agent's own state.
public struct ExpositionContext: Sendable {
    /// Version information for `flowstat_build_info`.
    public var build: BuildInfo
    /// The source and its hooks for `flowstat_source_info`.
    public var source: SourceInfo
    /// How long the previous scrape took (snapshot plus encoding), in seconds; `nil` before
    /// the first scrape has finished, in which case the gauge has no sample.
    public var previousScrapeDuration: Double?
    /// Flows in the snapshot before the cardinality cap (for `tcp_flows`); nil: the
    /// snapshot's flows are all of them.
    public var totalFlows: Int?
    /// Per-(peer, port) aggregates of folded and closed flows; nil: none are exported.
    public var aggregates: [Aggregate]?
    /// Series folded away by the cardinality cap so far; nil: no cap is applied.
    public var seriesDropped: UInt64?
    /// How long the previous scrape's snapshot took (reading the kernel, refresh included),
    /// seconds; nil before the first scrape has finished (the gauge then has no sample).
    public var previousSnapshotDuration: Double?
    /// How the last config reload went; nil: not shown.
    public var configReload: ConfigReloadStatus?
    /// Collections (scrapes) run since start, this one included, for the seed's
    /// `collector_*` families in compat output; nil: not shown.
    public var collectionRuns: UInt64?
    /// The agent's own `process_*` metrics; nil: not shown.
    public var process: ProcessMetrics?
    /// The kubelet client's refreshes (`flowstat_kubelet_*`); nil: no client runs.
    public var kubelet: KubeletStatus?

    public init(
        build: BuildInfo = .current, source: SourceInfo, previousScrapeDuration: Double? = nil, totalFlows: Int? = nil,
        aggregates: [Aggregate]? = nil, seriesDropped: UInt64? = nil
    ) {
        self.build = build
        self.source = source
        self.previousScrapeDuration = previousScrapeDuration
        self.totalFlows = totalFlows
        self.aggregates = aggregates
        self.seriesDropped = seriesDropped
    }
}

/// What one `MetricsEncoder.encode` call wrote.
public struct EncodeSummary: Sendable, Hashable {
    /// Flows written, i.e. series in each per-flow family.
    public var flowSeries: Int
    /// Flows left out because their label set, `netns` included, equalled another's.
    public var duplicatesDropped: Int
    /// Bytes appended to the buffer.
    public var bytes: Int
}

/// The outcome of the last config (re)load, as Prometheus itself reports it.
public struct ConfigReloadStatus: Sendable, Hashable {
    /// Whether the last reload was applied (a failed one leaves the previous config in force).
    public var successful: Bool
    /// When a config was last loaded successfully (start-up counts), Unix seconds.
    public var timestamp: Double

    public init(successful: Bool, timestamp: Double) {
        self.successful = successful
        self.timestamp = timestamp
    }
}
