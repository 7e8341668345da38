// SPDX-License-Identifier: Apache-2.0

import FlowStatCore
import NIOCore
import Testing

/// The config's effect on a scrape: selection before encoding, metric families switched off.
@Suite("Configured scrape")
struct ConfiguredScrapeTests {
    private func scrape(_ config: FlowStatConfig = FlowStatConfig()) throws -> String {
        let source = FakeFlowSource(snapshot: Fixtures.snapshot, info: Fixtures.sourceInfo)
        let pipeline = ExportPipeline(source: source, config: config, build: Fixtures.build)
        return String(buffer: try pipeline.scrape())
    }

    private func scrape(selection: FlowSelection) throws -> String {
        var config = FlowStatConfig()
        config.selection = selection
        return try scrape(config)
    }

    private func scrape(metrics: Set<FlowMetric>) throws -> String {
        var config = FlowStatConfig()
        config.metrics = metrics
        return try scrape(config)
    }

    private func series(_ text: String, _ family: String) -> [String] {
        text.split(separator: "\n").filter { $0.hasPrefix(family + "{") || $0.hasPrefix(family + " ") }.map(String.init)
    }

    @Test("only selected flows are exported, and tcp_flows counts them")
    func selection() throws {
        // Remote port 1000 (two flows in two namespaces) on a 10/8 peer.
        let text = try scrape(
            selection: FlowSelection(
                networks: [try IPNetwork(parsing: "10.0.0.0/8")], remotePorts: [PortRange(lower: 1000, upper: 1000)]))
        #expect(
            series(text, "tcp_flow_rtt_seconds") == [
                #"tcp_flow_rtt_seconds{src="10.0.0.1",sport="80",dst="10.0.0.3",dport="1000",netns="4026531840"} 0.001"#,
                #"tcp_flow_rtt_seconds{src="10.0.0.1",sport="80",dst="10.0.0.3",dport="1000",netns="4026532000"} 0.002"#,
            ])
        #expect(series(text, "tcp_flows") == ["tcp_flows 2"])
        #expect(series(text, "flowstat_map_entries") == ["flowstat_map_entries 5"])  // the map is host-wide
    }

    @Test("a selection by process keeps only flows of that process")
    func processSelection() throws {
        let text = try scrape(selection: FlowSelection(cmds: ["nginx"]))
        #expect(
            series(text, "tcp_flow_cwnd_segments") == [
                #"tcp_flow_cwnd_segments{src="10.0.0.1",sport="80",dst="10.0.0.3",dport="1000"} 10"#
            ])
    }

    @Test("disabled per-flow families are left out entirely; the rest are unchanged")
    func disabledFamilies() throws {
        let all = try scrape()
        let some = try scrape(metrics: [.rtt, .retransmits])
        let families = some.split(separator: "\n").filter { $0.hasPrefix("# TYPE tcp_flow_") }
        #expect(families == ["# TYPE tcp_flow_rtt_seconds gauge", "# TYPE tcp_flow_retransmits_total counter"])
        #expect(series(some, "tcp_flow_rtt_seconds") == series(all, "tcp_flow_rtt_seconds"))
        #expect(series(some, "tcp_flows") == series(all, "tcp_flows"))
        let none = try scrape(metrics: [])
        #expect(!none.contains("tcp_flow_"))
    }
}
