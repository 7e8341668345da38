// SPDX-License-Identifier: Apache-2.0

import FlowStatCore
import Foundation
import NIOCore
import Testing

/// The whole exposition for a fixed snapshot under each config fixture, in both formats,
/// against text recorded in `Fixtures/golden/`: restructuring the export path must not
/// change a byte of what Prometheus reads.
///
/// The recorded files are a regression guard, not an oracle: the exact-text tests
/// (`MetricsEncoderTests`, `SeedCompatTests`, `OpenMetricsTests`) check what the text means.
/// After an intended change of output, re-record with `FLOWSTAT_RECORD_GOLDEN=1 swift test
/// --filter ExpositionGoldenTests` and review the diff.
@Suite("Exposition golden files")
struct ExpositionGoldenTests {
    /// Config fixtures: the seed's files as they are, the sample, and one file per setting
    /// that changes the output.
    static let configs: [(name: String, yaml: String)] = [
        ("default", ""),
        ("seed-3.x", fixture("seed-3.x.yml")),
        ("seed-2.x", fixture("seed-2.x.yml")),
        ("sample", FlowStatConfig.sampleYAML),
        ("compat", "flowstat: {output: ss-exporter}"),
        ("compat-raw-endpoint", "logic: {compression: {labelFolding: raw_endpoint}}\nflowstat: {output: ss-exporter}"),
        (
            "compat-pid-condensed",
            "logic: {compression: {labelFolding: pid_condensed}}\nflowstat: {output: ss-exporter}"
        ),
        ("pid-condensed", "logic: {compression: {labelFolding: pid_condensed}}"),
        ("labels", "flowstat: {labels: {netns: true, pid: true, comm: true}}"),
        ("compat-labels", "flowstat: {output: ss-exporter, labels: {netns: true, pid: true, comm: true}}"),
        (
            "metrics-subset",
            """
            logic:
              metrics:
                gauges: {active: true, rtt: {active: false}, ssthresh: {active: false}}
                counters: {active: false}
            """
        ),
        ("cap", "flowstat: {cardinality: {maxFlows: 2, rankBy: rtt, maxAggregates: 2}}"),
        ("cap-retransmits", "flowstat: {cardinality: {maxFlows: 1, rankBy: retransmits}}"),
        (
            "selection",
            "logic: {selection: {peering: {networks: [10.0.0.0/8]}, portRanges: [{lower: 1000, upper: 1000}]}}"
        ),
        ("selection-process", "logic: {selection: {process: {cmds: [nginx]}}}"),
    ]

    static func fixture(_ name: String) -> String {
        (try? String(contentsOfFile: fixturesDirectory + "/" + name, encoding: .utf8)) ?? ""
    }

    static let fixturesDirectory = Fixtures.directory

    /// `Fixtures.snapshot` with everything a BPF source adds: kernel counts, histograms and
    /// flows that closed since the last snapshot.
    static var snapshot: FlowSnapshot {
        var snapshot = Fixtures.snapshot
        snapshot.kernelEvents = KernelEventCounts(
            updates: 100, updatesSkipped: 3, insertFailures: 1, evictions: 2, openedActive: 7, openedPassive: 9,
            closed: 4, eventsLost: 0)
        snapshot.rttHistogram = Histogram(bounds: [0.0001, 0.001, 0.01], counts: [5, 7, 2, 1], sum: 0.0734)
        snapshot.flowDurationHistogram = Histogram(bounds: [1, 10], counts: [3, 1, 0], sum: 12.5)
        snapshot.flowBytesHistogram = Histogram(bounds: [1000, 1_000_000], counts: [1, 2, 1], sum: 2_500_300)
        snapshot.closedSinceLastSnapshot = [
            AggregateKey(peer: .address(IPAddress("10.0.0.3")!), port: .port(80)): FlowTotals(
                flows: 2, bytesAcked: 5000, bytesReceived: 700, dataSegmentsIn: 9, dataSegmentsOut: 11, retransmits: 1),
            AggregateKey(peer: .address(IPAddress("2001:db8::9")!), port: .port(443)): FlowTotals(
                flows: 1, bytesAcked: 10, bytesReceived: 20, dataSegmentsIn: 1, dataSegmentsOut: 2, retransmits: 0),
        ]
        return snapshot
    }

    @Test("dump's table, the JSON of the fixed flows and the sample config are the recorded text")
    func views() throws {
        let flows = Self.snapshot.flows
        let indices = Array(flows.indices)
        try Self.compare(FlowDumpTable.render(flows, indices: indices).joined(separator: "\n") + "\n", to: "dump.txt")
        try Self.compare(FlowJSON.flowsDocument(flows) + "\n", to: "flows.json")
        try Self.compare(FlowStatConfig.sampleYAML, to: "sample-config.yml")
    }

    @Test("the exposition under each config fixture is the recorded text", arguments: configs.map(\.name))
    func golden(configName: String) throws {
        let yaml = Self.configs.first { $0.name == configName }!.yaml
        let config = try FlowStatConfig(yaml: yaml, file: configName)
        for (format, suffix) in [(MetricsEncoder.Format.prometheusText, "prom"), (.openMetrics, "om")] {
            let text = try GoldenExport.scrape(config: config, snapshot: Self.snapshot, format: format)
            try Self.compare(text, to: "\(configName).\(suffix)")
        }
    }

    /// Checks `text` against the recording `name` (or records it, when asked to).
    static func compare(_ text: String, to name: String) throws {
        let path = "\(fixturesDirectory)/golden/\(name)"
        if ProcessInfo.processInfo.environment["FLOWSTAT_RECORD_GOLDEN"] == "1" {
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            return
        }
        let recorded = try String(contentsOfFile: path, encoding: .utf8)
        guard text != recorded else { return }
        let ours = text.split(separator: "\n", omittingEmptySubsequences: false)
        let theirs = recorded.split(separator: "\n", omittingEmptySubsequences: false)
        let first =
            (0..<min(ours.count, theirs.count)).first { ours[$0] != theirs[$0] } ?? min(ours.count, theirs.count)
        Issue.record(
            """
            \(name) differs from the recording at line \(first + 1):
              now:      \(first < ours.count ? String(ours[first]) : "<end>")
              recorded: \(first < theirs.count ? String(theirs[first]) : "<end>")
            """)
    }
}

/// One scrape of a fixed snapshot under a config, as `serve` exports it.
enum GoldenExport {
    static func scrape(config: FlowStatConfig, snapshot: FlowSnapshot, format: MetricsEncoder.Format) throws -> String {
        let source = FakeFlowSource(snapshot: snapshot, info: Fixtures.sourceInfo)
        let pipeline = ExportPipeline(
            source: source, config: config, servicePorts: ServicePorts(), build: Fixtures.build,
            processMetrics: { Fixtures.process })
        defer { pipeline.stop() }
        return String(buffer: try pipeline.scrape(format: format))
    }
}
