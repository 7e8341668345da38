/// Everything the exposition shows besides the snapshot: the agent's own state.
public struct ExpositionContext: Sendable {
    /// Version information for `flowstat_build_info`.
    public var build: BuildInfo
    /// The source and its hooks for `flowstat_source_info`.
    public var source: SourceInfo
    /// How long the previous scrape took (snapshot plus encoding), in seconds; `nil` before
    /// the first scrape has finished, in which case the gauge has no sample.
    public var previousScrapeDuration: Double?

    public init(build: BuildInfo = .current, source: SourceInfo, previousScrapeDuration: Double? = nil) {
        self.build = build
        self.source = source
        self.previousScrapeDuration = previousScrapeDuration
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
