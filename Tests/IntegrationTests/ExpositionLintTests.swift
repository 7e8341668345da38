// SPDX-License-Identifier: Apache-2.0

import Foundation
import Testing

/// Every output mode of a running agent passes Prometheus' own linter. Uses the demo flow
/// source, so it needs no privileges; the same encoder serves real flows.
@Suite("Exposition modes pass promtool")
struct ExpositionLintTests {
    @Test(
        "promtool check metrics accepts every format and label folding",
        arguments: [
            ["--compat", "flowstat"], ["--compat", "ss-exporter"],
            ["--label-folding", "pid_condensed"], ["--compat", "ss-exporter", "--label-folding", "pid_condensed"],
        ])
    func promtoolAccepts(arguments: [String]) throws {
        let agent = try Agent(["--source", "fake"] + arguments)
        defer { agent.stop() }
        let metrics = try agent.scrape()
        let lint = try run(["promtool", "check", "metrics"], check: false, input: metrics.text)
        if arguments.contains("ss-exporter") {
            // The seed's histogram name carries an abbreviated unit, which promtool's linter
            // flags (status 3); the name stays for the seed's dashboards. Anything else fails.
            let complaints = (lint.stdout + lint.stderr).split(separator: "\n")
            let others = complaints.filter { $0 != "tcp_rtt_hist_ms metric names should not contain abbreviated units" }
            #expect(lint.status == 0 || (lint.status == 3 && others.isEmpty), "promtool: \(lint.stdout)\(lint.stderr)")
        } else {
            #expect(lint.status == 0, "promtool: \(lint.stdout)\(lint.stderr)")
        }
        if arguments.contains("ss-exporter") {
            #expect(!metrics.samples("tcp_rtt").isEmpty)
            #expect(!metrics.samples("tcp_flows_total").isEmpty)
            #expect(metrics.samples("tcp_rtt").allSatisfy { $0.labels.keys.contains("flow") })
        } else {
            #expect(!metrics.samples("tcp_flow_rtt_seconds").isEmpty)
        }
    }
}
