// SPDX-License-Identifier: Apache-2.0

import FlowStatCore
import Testing

/// Configs the seed exporter loaded load in flowstat too: values it tolerated (empty lists,
/// empty strings, `null`, numbers written as strings, integer bounds, YAML 1.1 booleans)
/// are read as the seed read them, and values it ignored give a warning instead of an error.
///
/// The expectations are the seed's semantics, written out by hand from its sources
/// (src/config.nim and src/collector.nim for 3.x, prometheus_ss_exporter/*.py for 2.x): a
/// bound in milliseconds is that many thousandths of a second; an empty selection list
/// selects nothing out; an inactive histogram's bounds are never used.
@Suite("Seed configs: what the seed tolerated loads")
struct SeedConfigToleranceTests {
    /// One config fragment, what it must load as, and where its warnings must point.
    struct Case: Sendable, CustomTestStringConvertible {
        var name: String
        var yaml: String
        var expected: @Sendable (inout FlowStatConfig) -> Void
        /// Key paths of the expected warnings, in order.
        var warnings: [String] = []
        var testDescription: String { name }
    }

    static let cases: [Case] = [
        // Histograms: bounds are checked only where they take effect.
        Case(
            name: "inactive RTT histogram with an empty bounds list",
            yaml: "logic: {metrics: {histograms: {active: false, rtt: {active: false, bucketBounds: []}}}}",
            expected: { $0.rttHistogram = false }),
        Case(
            name: "histograms on, RTT histogram off, empty bounds",
            yaml: "logic: {metrics: {histograms: {active: true, rtt: {active: false, bucketBounds: []}}}}",
            expected: { $0.rttHistogram = false }),
        Case(
            name: "histograms off, RTT histogram on, empty bounds",
            yaml: "logic: {metrics: {histograms: {active: false, rtt: {active: true, bucketBounds: []}}}}",
            expected: { $0.rttHistogram = false }),
        Case(
            name: "inactive histogram with bounds that would be refused: a warning, not an error",
            yaml: "logic:\n  metrics:\n    histograms:\n      active: false\n      rtt: {bucketBounds: [fast, slow]}\n",
            expected: { $0.rttHistogram = false },
            warnings: ["logic.metrics.histograms.rtt.bucketBounds"]),
        Case(
            name: "active histogram with an empty list: default bounds and a warning",
            yaml: "logic:\n  metrics:\n    histograms:\n      rtt: {active: true, bucketBounds: []}\n",
            expected: { _ in },
            warnings: ["logic.metrics.histograms.rtt.bucketBounds"]),
        Case(
            name: "bucketBounds: null is the default bounds",
            yaml: "logic:\n  metrics:\n    histograms:\n      rtt:\n        active: true\n        bucketBounds:\n",
            expected: { _ in }),
        Case(
            name: "bucketBounds: ~",
            yaml: "logic: {metrics: {histograms: {rtt: {bucketBounds: ~}}}}",
            expected: { _ in }),
        Case(
            name: "integer bounds",
            yaml: "logic: {metrics: {histograms: {rtt: {bucketBounds: [1, 5, 10, 100]}}}}",
            expected: { $0.rttBucketBounds = [0.001, 0.005, 0.01, 0.1] }),
        Case(
            name: "bounds written as strings",
            yaml: "logic: {metrics: {histograms: {rtt: {bucketBounds: [\"0.5\", '1', \"10\"]}}}}",
            expected: { $0.rttBucketBounds = [0.0005, 0.001, 0.01] }),
        Case(
            name: "bounds written .10 (the 2.x examples)",
            yaml: "logic: {metrics: {histograms: {latency: {bucket_bounds: [.10, .50, 1.00]}}}}",
            expected: { $0.rttBucketBounds = [0.0001, 0.0005, 0.001] }),
        Case(
            name: "bounds out of order and repeated: sorted, once each, with a warning",
            yaml: "logic:\n  metrics:\n    histograms:\n      rtt: {bucketBounds: [10, 1, 5, 5]}\n",
            expected: { $0.rttBucketBounds = [0.001, 0.005, 0.01] },
            warnings: ["logic.metrics.histograms.rtt.bucketBounds"]),
        Case(
            name: "a bound of 0 is left out with a warning",
            yaml: "logic:\n  metrics:\n    histograms:\n      rtt: {bucketBounds: [0, 1]}\n",
            expected: { $0.rttBucketBounds = [0.001] },
            warnings: ["logic.metrics.histograms.rtt.bucketBounds[0]"]),
        Case(
            name: "a null bound is left out with a warning",
            yaml: "logic:\n  metrics:\n    histograms:\n      rtt: {bucketBounds: [1, ~, 5]}\n",
            expected: { $0.rttBucketBounds = [0.001, 0.005] },
            warnings: ["logic.metrics.histograms.rtt.bucketBounds[1]"]),
        Case(
            name: "bucketBounds directly under histograms (the seed's reference config): ignored with a warning",
            yaml: "logic:\n  metrics:\n    histograms:\n      active: true\n      bucketBounds: [0.1, 0.5]\n",
            expected: { _ in },
            warnings: ["logic.metrics.histograms.bucketBounds"]),

        // Metric switches.
        Case(
            name: "active written as a quoted string",
            yaml: "logic: {metrics: {gauges: {cwnd: {active: \"false\"}, rtt: {active: 'true'}}}}",
            expected: { $0.metrics.remove(.cwnd) }),
        Case(
            name: "YAML 1.1 booleans of the 2.x examples",
            yaml: "logic: {metrics: {gauges: {active: True, cwnd: {active: False}}, counters: {active: no}}}",
            expected: {
                $0.metrics.remove(.cwnd)
                for metric in [
                    FlowMetric.dataSegmentsIn, .dataSegmentsOut, .bytesAcked, .bytesReceived, .retransmits,
                    .limitedSeconds,
                ] {
                    $0.metrics.remove(metric)
                }
            }),
        Case(
            name: "a metric written as null keeps its default",
            yaml: "logic:\n  metrics:\n    gauges:\n      rtt:\n      cwnd: ~\n",
            expected: { _ in }),

        // Label folding.
        Case(
            name: "labelFolding: \"\" keeps the default, with a warning",
            yaml: "logic:\n  compression:\n    labelFolding: \"\"\n",
            expected: { _ in },
            warnings: ["logic.compression.labelFolding"]),
        Case(
            name: "labelFolding: null keeps the default",
            yaml: "logic: {compression: {labelFolding: ~}}",
            expected: { _ in }),
        Case(
            name: "2.x label_folding: {origin: ...}",
            yaml: "logic: {compression: {label_folding: {origin: pid_condensed}}}",
            expected: { $0.labelFolding = .pidCondensed }),

        // Selection.
        Case(
            name: "every selection list empty",
            yaml: """
                logic:
                  selection:
                    process: {pids: [], cmds: []}
                    peering: {addresses: [], networks: [], hosts: []}
                    portRanges: []
                """,
            expected: { _ in }),
        Case(
            name: "every selection list null",
            yaml: """
                logic:
                  selection:
                    process: {pids: ~, cmds: null}
                    peering:
                      addresses:
                      networks: ~
                      hosts:
                    portRanges: ~
                """,
            expected: { _ in }),
        Case(
            name: "selection groups null",
            yaml: "logic:\n  selection:\n    process:\n    peering: ~\n",
            expected: { _ in }),
        Case(
            name: "selection null",
            yaml: "logic:\n  selection:\n",
            expected: { _ in }),
        Case(
            name: "empty strings in selection lists: each ignored with a warning",
            yaml: """
                logic:
                  selection:
                    process: {cmds: [""]}
                    peering: {addresses: [""], networks: [''], hosts: [""]}
                """,
            expected: { _ in },
            warnings: [
                "logic.selection.process.cmds[0]", "logic.selection.peering.addresses[0]",
                "logic.selection.peering.networks[0]", "logic.selection.peering.hosts[0]",
            ]),
        Case(
            name: "an empty string beside real entries",
            yaml: "logic:\n  selection:\n    process:\n      pids: [1000, \"\"]\n      cmds: [nginx, \"\"]\n",
            expected: { $0.selection = FlowSelection(pids: [1000], cmds: ["nginx"]) },
            warnings: ["logic.selection.process.pids[1]", "logic.selection.process.cmds[1]"]),
        Case(
            name: "pids written as strings",
            yaml: "logic: {selection: {process: {pids: [\"1000\", '1001']}}}",
            expected: { $0.selection = FlowSelection(pids: [1000, 1001]) }),
        Case(
            name: "a single pid written as a string, not a list",
            yaml: "logic: {selection: {process: {pids: \"1000\"}}}",
            expected: { $0.selection = FlowSelection(pids: [1000]) }),
        Case(
            name: "port bounds written as strings",
            yaml: "logic: {selection: {portRanges: [{lower: \"80\", upper: '443'}]}}",
            expected: { $0.selection = FlowSelection(remotePorts: [PortRange(lower: 80, upper: 443)]) }),
        Case(
            name: "a null port range is ignored with a warning",
            yaml: "logic:\n  selection:\n    portRanges:\n      - ~\n      - {lower: 22, upper: 22}\n",
            expected: { $0.selection = FlowSelection(remotePorts: [PortRange(lower: 22, upper: 22)]) },
            warnings: ["logic.selection.portRanges[0]"]),
        Case(
            name: "2.x port ranges under peering",
            yaml: "logic: {selection: {peering: {portranges: [{lower: 2000, upper: 10000}]}}}",
            expected: { $0.selection = FlowSelection(remotePorts: [PortRange(lower: 2000, upper: 10000)]) }),
    ]

    @Test("a value the seed tolerated", arguments: cases)
    func tolerated(_ testCase: Case) throws {
        let loaded = try FlowStatConfig.load(yaml: testCase.yaml, file: "config.yml")
        var expected = FlowStatConfig()
        testCase.expected(&expected)
        #expect(loaded.config == expected)
        #expect(loaded.warnings.map(\.keyPath) == testCase.warnings, "\(loaded.warnings)")
        for warning in loaded.warnings {
            #expect(warning.file == "config.yml" && warning.line != nil)
        }
        // The plain initializer loads the same config.
        #expect(try FlowStatConfig(yaml: testCase.yaml) == expected)
    }

    @Test("warnings read as one located line")
    func warningText() throws {
        let loaded = try FlowStatConfig.load(
            yaml:
                "logic:\n  metrics:\n    histograms:\n      active: false\n      rtt:\n        bucketBounds: [1, x]\n",
            file: "config.yml")
        #expect(loaded.config.rttHistogram == false)
        #expect(
            loaded.warnings.map(\.description) == [
                "config.yml:6: logic.metrics.histograms.rtt.bucketBounds: not checked: the RTT histogram is off; "
                    + "switched on, this would be refused: expected a number, found \"x\" "
                    + "(config.yml:6: logic.metrics.histograms.rtt.bucketBounds[1]); ignored while the histogram is off"
            ])
        let empty = try FlowStatConfig.load(
            yaml: "logic:\n  selection:\n    process:\n      cmds: [\"\"]\n", file: "c.yml")
        #expect(
            empty.warnings.map(\.description) == [
                "c.yml:4: logic.selection.process.cmds[0]: empty process name; ignored"
            ])
    }

    @Test("values that would take effect and cannot are still refused")
    func stillRefused() {
        // An active histogram with bounds that are not numbers: no default would be honest.
        #expect(throws: ConfigError.self) {
            try FlowStatConfig(yaml: "logic: {metrics: {histograms: {rtt: {bucketBounds: [fast]}}}}")
        }
        // More bounds than the kernel histogram holds.
        let many = (1...40).map(String.init).joined(separator: ", ")
        #expect(throws: ConfigError.self) {
            try FlowStatConfig(yaml: "logic: {metrics: {histograms: {rtt: {bucketBounds: [\(many)]}}}}")
        }
        // A network that is not one.
        #expect(throws: ConfigError.self) {
            try FlowStatConfig(yaml: "logic: {selection: {peering: {networks: [\"10.0.0.0/40\"]}}}")
        }
    }

    @Test("the seed's all-off example: every metric off, every list empty, no warning")
    func allOffFixture() throws {
        let loaded = try FlowStatConfig.load(contentsOf: ConfigTests.fixture("seed-3.x-all-off.yml"))
        var expected = FlowStatConfig()
        expected.metrics = []  // both groups off: flowstat's extra per-flow metrics too
        expected.rttHistogram = false
        expected.labelFolding = .rawEndpoint
        #expect(loaded.config == expected)
        #expect(loaded.warnings.isEmpty, "\(loaded.warnings)")
    }

    @Test("the seed's reference config: bounds under histograms are ignored with one warning")
    func referenceFixture() throws {
        let path = ConfigTests.fixture("seed-3.x-reference.yml")
        let loaded = try FlowStatConfig.load(contentsOf: path)
        var expected = FlowStatConfig()
        expected.metrics = []
        expected.rttHistogram = false
        expected.labelFolding = .rawEndpoint
        #expect(loaded.config == expected)
        #expect(
            loaded.warnings.map(\.description) == [
                "\(path):9: logic.metrics.histograms.bucketBounds: bucket bounds directly under histograms are not the "
                    + "RTT histogram's (the seed never read them); ignored; the RTT histogram's bounds go under "
                    + "histograms.rtt.bucketBounds"
            ])
    }

    @Test("a 2.x (Python) config: True, .10, label_folding.origin, peering.portranges, null lists")
    func python2Fixture() throws {
        let loaded = try FlowStatConfig.load(contentsOf: ConfigTests.fixture("seed-2.x-python.yml"))
        var expected = FlowStatConfig()
        expected.metrics.remove(.cwnd)
        expected.rttBucketBounds = [0.0001, 0.0005, 0.001, 0.005, 0.01]
        expected.labelFolding = .pidCondensed
        expected.selection = FlowSelection(
            networks: [try IPNetwork(parsing: "10.0.0.0/8")], remotePorts: [PortRange(lower: 2000, upper: 10000)])
        #expect(loaded.config == expected)
        #expect(loaded.warnings.isEmpty, "\(loaded.warnings)")
    }
}
