// SPDX-License-Identifier: Apache-2.0

import Foundation
import Testing

/// An operator swapping the seed exporter's binary for flowstat keeps its config and its
/// dashboards: a config the seed loaded starts the agent with its warnings logged and
/// printed by check-config, and the running agent serves the seed's collector status and the
/// standard process metrics. Unprivileged: the fake flow source, no BPF.
@Suite("Drop-in for the seed: config warnings and self metrics")
struct SeedDropInTests {
    /// A seed 3.x config that loads with one warning (bounds directly under histograms).
    static let config = """
        logic:
          metrics:
            histograms:
              active: false
              bucketBounds: [0.1, 0.5]
              rtt: {active: false, bucketBounds: []}
          selection:
            process: {cmds: [""]}

        """
    static let warnings = [
        ":5: logic.metrics.histograms.bucketBounds: bucket bounds directly under histograms are not the RTT histogram's",
        ":8: logic.selection.process.cmds[0]: empty process name; ignored",
    ]

    private func writeConfig() throws -> String {
        let path = NSTemporaryDirectory() + "fs-seed-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).yml"
        try Self.config.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test("check-config prints the warnings and exits 0")
    func checkConfig() throws {
        let path = try writeConfig()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let check = try run([flowstatBinary, "check-config", path], check: false)
        #expect(check.status == 0, "\(check.stderr)")
        let lines = check.stdout.split(separator: "\n").map(String.init)
        #expect(lines.first == "\(path): OK (2 warnings)")
        #expect(lines.count > 2 && lines[1].hasPrefix("warning: \(path)\(Self.warnings[0])"), "\(check.stdout)")
        #expect(lines.count > 2 && lines[2].hasPrefix("warning: \(path)\(Self.warnings[1])"), "\(check.stdout)")
        #expect(check.stdout.contains("RTT histogram: off"))
    }

    @Test("serve logs the warnings at start-up, serves the seed's collector status and process metrics")
    func serve() throws {
        let path = try writeConfig()
        defer { try? FileManager.default.removeItem(atPath: path) }
        let agent = try Agent(["--source", "fake", "--compat", "ss-exporter", "-c", path])
        let metrics = try agent.scrape()
        let second = try agent.scrape()
        let pid = agent.process.processIdentifier
        // Oracles: ps and prlimit read the agent's process from outside.
        let ps = try run(["ps", "-o", "etimes=", "-p", "\(pid)"]).stdout
        let limit = try run(["prlimit", "--pid", "\(pid)", "--nofile", "--output", "SOFT", "--noheadings"]).stdout
        let openMetrics = try agent.get("/metrics")  // curl sends no Accept: text
        agent.stop()
        let log = agent.stderrText
        for warning in Self.warnings {
            #expect(log.contains("config: \(path)\(warning)"), "\(log)")
        }

        #expect(metrics.samples("collector_collection_runs_total").first?.value == 1)
        #expect(second.samples("collector_collection_runs_total").first?.value == 2)
        let status = metrics.samples("collector_data_status")
        #expect(status.count == 1 && status.first?.labels["status"] == "success")
        #expect(status.first?.value == metrics.samples("tcp_flows_total").first?.value)
        #expect((status.first?.value ?? 0) > 0)

        let elapsed = try #require(Double(ps.trimmingCharacters(in: .whitespacesAndNewlines)))
        let start = try #require(metrics.samples("process_start_time_seconds").first?.value)
        #expect(abs(start - (Date().timeIntervalSince1970 - elapsed)) <= 3, "start \(start), ps etimes \(elapsed)")
        let maxFDs = try #require(Double(limit.trimmingCharacters(in: .whitespacesAndNewlines)))
        #expect(metrics.samples("process_max_fds").first?.value == maxFDs)
        for name in [
            "process_cpu_seconds_total", "process_resident_memory_bytes", "process_virtual_memory_bytes",
            "process_open_fds",
        ] {
            #expect((metrics.samples(name).first?.value ?? 0) > 0, "\(name)")
        }
        #expect(openMetrics.status == 200)
    }
}
