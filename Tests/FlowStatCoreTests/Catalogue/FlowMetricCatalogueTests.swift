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

    /// One flow whose metric at catalogue position i has the value 1000 + i (reals: that many
    /// milliseconds, so the seed's scaling shows too).
    static let flow: FlowSample = {
        var flow = FlowSample(
            key: FlowKey(
                family: .ipv4, local: IPAddress("10.9.0.1")!, localPort: 443, remote: IPAddress("10.9.0.2")!,
                remotePort: 50_000, netns: 1))
        withUnsafeMutablePointer(to: &flow) { pointer in
            for (index, metric) in catalogue.enumerated() {
                switch metric.value {
                case .real(_, let set): set(pointer, Double(1000 + index) / 1000)
                case .integer(_, let set): set(pointer, UInt64(1000 + index))
                }
            }
        }
        return flow
    }()

    static func expected(_ index: Int, milliseconds: Bool = false) -> String {
        guard case .real = catalogue[index].value else { return String(1000 + index) }
        return milliseconds ? String(1000 + index) : PrometheusText.format(Double(1000 + index) / 1000)
    }

    static func scrape(_ config: FlowStatConfig, format: MetricsEncoder.Format) throws -> String {
        let snapshot = FlowSnapshot(flows: [flow], mapEntries: 1, mapCapacity: 8)
        return try GoldenExport.scrape(config: config, snapshot: snapshot, format: format)
    }

    @Test("each metric has one entry, and names, JSON fields and config keys are unique")
    func oneEntryEach() {
        #expect(Self.catalogue.map(\.metric) == FlowMetric.allCases)
        for names in [
            Self.catalogue.map(\.name.description), Self.catalogue.map(\.jsonName.description),
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
        let flowstat = try Self.scrape(FlowStatConfig(), format: .prometheusText)
        let openMetrics = try Self.scrape(FlowStatConfig(), format: .openMetrics)
        var compatConfig = FlowStatConfig()
        compatConfig.output = .ssExporter
        let compat = try Self.scrape(compatConfig, format: .prometheusText)
        let labels = #"{src="10.9.0.1",sport="443",dst="10.9.0.2",dport="50000"}"#
        for (index, metric) in Self.catalogue.enumerated() {
            let type = metric.type == .counter ? "counter" : "gauge"
            #expect(flowstat.contains("# TYPE \(metric.name) \(type)\n"))
            #expect(flowstat.contains("\n\(metric.name)\(labels) \(Self.expected(index))\n"), "\(metric.name)")
            #expect(openMetrics.contains("# TYPE \(metric.familyName) \(type)\n"))
            #expect(openMetrics.contains("\n\(metric.name)\(labels) \(Self.expected(index))\n"), "\(metric.name)")
            if metric.name.description.hasSuffix("_seconds") {
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
    }

    @Test("each metric's config switch turns off exactly its family, in both formats", arguments: FlowMetric.allCases)
    func configSwitch(metric: FlowMetric) throws {
        let definition = FlowMetricCatalogue.definition(of: metric)
        let config = try FlowStatConfig(
            yaml: """
                logic:
                  metrics:
                    \(definition.configSwitch.group.rawValue):
                      \(definition.configSwitch.key): {active: false}
                """)
        #expect(config.metrics == Set(FlowMetric.allCases).subtracting([metric]))
        for format in [MetricsEncoder.Format.prometheusText, .openMetrics] {
            let text = try Self.scrape(config, format: format)
            for other in Self.catalogue {
                #expect(text.contains("\n\(other.name){") == (other.metric != metric), "\(other.name)")
            }
        }
    }

    @Test("the sample config has every switch, on")
    func sampleConfig() throws {
        for metric in Self.catalogue {
            #expect(FlowStatConfig.sampleYAML.contains("\n      \(metric.configSwitch.key): {active: true}"))
        }
        #expect(try FlowStatConfig(yaml: FlowStatConfig.sampleYAML).metrics == Set(FlowMetric.allCases))
    }

    @Test("the JSON has each metric under its name with its value; dump has its column")
    func jsonAndTable() throws {
        let document = FlowJSON.flowsDocument([Self.flow])
        let parsed = try #require(
            try JSONSerialization.jsonObject(with: Data(document.utf8)) as? [[String: Any]])
        let object = try #require(parsed.first)
        for (index, metric) in Self.catalogue.enumerated() {
            let value = try #require(object[metric.jsonName.description] as? NSNumber, "\(metric.jsonName)")
            #expect(
                value.doubleValue == (metric.value.isRealValue ? Double(1000 + index) / 1000 : Double(1000 + index)))
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
