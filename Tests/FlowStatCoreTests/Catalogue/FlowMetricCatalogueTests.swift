// SPDX-License-Identifier: Apache-2.0

import FlowStatCore
import Foundation
import NIOCore
import Testing

/// Every catalogue entry reaches every output: both exposition formats (flowstat's names and
/// the seed's), its config switch, the sample config, the JSON, dump's table and the README.
/// Each metric gets a distinct value on one flow, so a mix-up between two entries shows.
@Suite("Flow metric catalogue")
struct FlowMetricCatalogueTests {
    static let catalogue = FlowMetricCatalogue.all

    /// Every series of every entry, with its entry: series at position i of this list has the
    /// value 1000 + i on `flow` (reals: that many milliseconds, so the seed's scaling shows too).
    static let series: [(metric: FlowMetricDefinition, series: FlowSeries)] = catalogue.flatMap { metric in
        metric.series.map { (metric, $0) }
    }

    /// One flow with every optional field filled and a distinct value in every series.
    static let flow: FlowSample = {
        var flow = FlowSample(
            key: FlowKey(
                family: .ipv4, local: IPAddress("10.9.0.1")!, localPort: 443, remote: IPAddress("10.9.0.2")!,
                remotePort: 50_000, netns: 1))
        flow.fields = [.timeLimits, .lossDetail, .rtoTotals, .detail]
        withUnsafeMutablePointer(to: &flow) { pointer in
            for (index, entry) in series.enumerated() {
                switch entry.series.value {
                case .real(_, let set): set(pointer, Double(1000 + index) / 1000)
                case .integer(_, let set): set(pointer, UInt64(1000 + index))
                }
            }
        }
        return flow
    }()

    /// Series i's value on `flow` as the exposition writes it. Reals are read back (a family
    /// whose series share fields, like the limited seconds, may round in the last bit) and
    /// checked against what was set.
    static func expected(_ index: Int, milliseconds: Bool = false) -> String {
        // Integers read back: a flag holds 1, a byte-wide count its low byte.
        guard case .real(let get, _) = series[index].series.value else {
            guard case .integer(let get, _) = series[index].series.value else { return "" }
            return String(withUnsafePointer(to: flow) { get($0) })
        }
        let value = withUnsafePointer(to: flow) { get($0) }
        #expect(abs(value - Double(1000 + index) / 1000) < 1e-9, "\(series[index].series.jsonName)")
        return milliseconds ? String(1000 + index) : PrometheusText.format(value)
    }

    static func scrape(_ config: FlowStatConfig, format: MetricsEncoder.Format) throws -> String {
        let snapshot = FlowSnapshot(flows: [flow], mapEntries: 1, mapCapacity: 8)
        return try GoldenExport.scrape(config: config, snapshot: snapshot, format: format)
    }

    /// Every per-flow metric on, the detail ones included.
    static var allOn: FlowStatConfig {
        var config = FlowStatConfig()
        config.metrics = Set(FlowMetric.allCases)
        return config
    }

    @Test("each metric has one entry, and names, JSON fields and config keys are unique")
    func oneEntryEach() {
        #expect(Self.catalogue.map(\.metric) == FlowMetric.allCases)
        for names in [
            Self.catalogue.map(\.name.description), Self.series.map(\.series.jsonName.description),
            Self.catalogue.map { "\($0.configSwitch.group).\($0.configSwitch.key)" },
            Self.catalogue.compactMap { $0.seed?.name.description },
        ] {
            #expect(Set(names).count == names.count, "duplicates in \(names)")
        }
        for metric in Self.catalogue {
            #expect(metric.type != .counter || metric.name.description.hasSuffix("_total"), "\(metric.name)")
            #expect(metric.name.description.hasPrefix("tcp_flow_"), "\(metric.name)")
        }
    }

    @Test("each metric is in both formats with its value, and in the seed's names where the seed had it")
    func exposition() throws {
        let flowstat = try Self.scrape(Self.allOn, format: .prometheusText)
        let openMetrics = try Self.scrape(Self.allOn, format: .openMetrics)
        var compatConfig = Self.allOn
        compatConfig.output = .ssExporter
        let compat = try Self.scrape(compatConfig, format: .prometheusText)
        let labels = #"{src="10.9.0.1",sport="443",dst="10.9.0.2",dport="50000""#
        for (index, (metric, series)) in Self.series.enumerated() {
            let type = metric.type == .counter ? "counter" : "gauge"
            let line = "\n\(metric.name)\(labels)\(series.label)} \(Self.expected(index))\n"
            #expect(flowstat.contains("# TYPE \(metric.name) \(type)\n"))
            #expect(flowstat.contains(line), "\(metric.name)\(series.label)")
            #expect(openMetrics.contains("# TYPE \(metric.familyName) \(type)\n"))
            #expect(openMetrics.contains(line), "\(metric.name)\(series.label)")
            if metric.name.description.hasSuffix("_seconds") || metric.name.description.hasSuffix("_seconds_total") {
                #expect(openMetrics.contains("# UNIT \(metric.familyName) seconds\n"))
            }
            if let seed = metric.seed {
                let line =
                    "\n\(seed.name){flow=\"(SRC#10.9.0.1|443)(DST#10.9.0.2|50000)\"} "
                    + Self.expected(index, milliseconds: seed.milliseconds) + "\n"
                #expect(compat.contains(line), "\(seed.name)")
            }
            #expect(!compat.contains(metric.name.description))
        }
        // One HELP and TYPE per family, however many series it has.
        for metric in Self.catalogue {
            #expect(flowstat.components(separatedBy: "# TYPE \(metric.name) ").count == 2, "\(metric.name)")
        }
    }

    @Test("a family whose fields the source could not fill has no series, null in JSON, the others stay")
    func absentFields() throws {
        var flow = Self.flow
        flow.fields = [.lossDetail]
        let snapshot = FlowSnapshot(flows: [flow], mapEntries: 1, mapCapacity: 8)
        let text = try GoldenExport.scrape(config: Self.allOn, snapshot: snapshot, format: .prometheusText)
        let parsed = try #require(
            try JSONSerialization.jsonObject(with: Data(FlowJSON.flowsDocument([flow]).utf8)) as? [[String: Any]])
        let object = try #require(parsed.first)
        for metric in Self.catalogue {
            let present = metric.requires.isSubset(of: flow.fields)
            #expect(text.contains("# TYPE \(metric.name) "), "\(metric.name)")
            #expect(text.contains("\n\(metric.name){") == present, "\(metric.name)")
            for series in metric.series {
                #expect((object[series.jsonName.description] is NSNull) == !present, "\(series.jsonName)")
            }
        }
    }

    @Test(
        "each metric's config switch turns exactly its family off and on, in both formats",
        arguments: FlowMetric.allCases)
    func configSwitch(metric: FlowMetric) throws {
        let definition = FlowMetricCatalogue.definition(of: metric)
        #expect(FlowStatConfig().metrics == FlowMetricCatalogue.defaultMetrics)
        for on in [false, true] {
            let config = try FlowStatConfig(
                yaml: """
                    logic:
                      metrics:
                        \(definition.configSwitch.group.rawValue):
                          \(definition.configSwitch.key): {active: \(on)}
                    """)
            let expected =
                on
                ? FlowMetricCatalogue.defaultMetrics.union([metric])
                : FlowMetricCatalogue.defaultMetrics.subtracting([metric])
            #expect(config.metrics == expected)
            for format in [MetricsEncoder.Format.prometheusText, .openMetrics] {
                let text = try Self.scrape(config, format: format)
                for other in Self.catalogue {
                    #expect(text.contains("\n\(other.name){") == expected.contains(other.metric), "\(other.name)")
                }
            }
        }
    }

    @Test("a scrape asks its source for the fields its metrics read: the defaults need the time limits only")
    func fieldsNeeded() {
        #expect(FlowMetricCatalogue.fieldsNeeded(by: FlowMetricCatalogue.defaultMetrics) == .timeLimits)
        #expect(FlowMetricCatalogue.fieldsNeeded(by: [.lostSegments]) == .detail)
        #expect(FlowMetricCatalogue.fieldsNeeded(by: [.dsackDuplicates, .rtoTimeouts]) == [.lossDetail, .rtoTotals])
        // Every family reading a field past the time limits says so, or a lean snapshot would export 0s.
        for entry in FlowMetricCatalogue.all where !entry.defaultOn {
            #expect(!entry.requires.isEmpty, "\(entry.name) does not say which fields it reads")
        }
    }

    @Test("the sample config has every switch, at its default")
    func sampleConfig() throws {
        for metric in Self.catalogue {
            #expect(
                FlowStatConfig.sampleYAML.contains(
                    "\n      \(metric.configSwitch.key): {active: \(metric.defaultOn)}"))
        }
        #expect(try FlowStatConfig(yaml: FlowStatConfig.sampleYAML).metrics == FlowMetricCatalogue.defaultMetrics)
    }

    @Test("the JSON has each series under its name with its value; dump has its column")
    func jsonAndTable() throws {
        let document = FlowJSON.flowsDocument([Self.flow])
        let parsed = try #require(
            try JSONSerialization.jsonObject(with: Data(document.utf8)) as? [[String: Any]])
        let object = try #require(parsed.first)
        for (index, (_, series)) in Self.series.enumerated() {
            let value = try #require(object[series.jsonName.description] as? NSNumber, "\(series.jsonName)")
            #expect(abs(value.doubleValue - Double(Self.expected(index))!) < 1e-9, "\(series.jsonName)")
        }
        let header = FlowDumpTable.render([Self.flow], indices: [0])[0]
        for metric in Self.catalogue {
            if let column = metric.column { #expect(header.contains(column.title)) }
        }
    }

    @Test("the README's metric table lists each metric with its type and tcp_info field")
    func readme() throws {
        let readme = try String(contentsOfFile: "\(Fixtures.packageRoot)/README.md", encoding: .utf8)
        let rows = readme.split(separator: "\n").filter { $0.hasPrefix("| `tcp_flow_") }
        for metric in Self.catalogue {
            let type = metric.type == .counter ? "counter" : "gauge"
            let row = rows.first { $0.hasPrefix("| `\(metric.name)` | \(type) |") }
            #expect(row?.contains("`\(metric.tcpInfoField)`") == true, "README row of \(metric.name)")
        }
    }
}

extension FlowValue {
    var isRealValue: Bool {
        if case .real = self { return true }
        return false
    }
}
