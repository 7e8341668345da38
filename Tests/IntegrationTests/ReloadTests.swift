// SPDX-License-Identifier: Apache-2.0

import Foundation
import Testing

/// Config reload on SIGHUP, against a running agent (demo flows: no privileges needed).
@Suite("Config reload")
struct ReloadTests {
    static func config(localPort: Int) -> String {
        """
        logic:
          selection:
            localPortRanges: [{ lower: \(localPort), upper: \(localPort) }]
        """
    }

    /// Scrapes until `done` holds (up to 10 s): a reload is applied asynchronously.
    static func scrape(_ agent: Agent, until done: (Exposition) -> Bool) throws -> Exposition {
        var metrics = try agent.scrape()
        for _ in 0..<100 where !done(metrics) {
            usleep(100_000)
            metrics = try agent.scrape()
        }
        return metrics
    }

    @Test("SIGHUP applies a good config; a bad one is rejected, logged, and the previous one stays in force")
    func reloadGoodAndBad() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("flowstat-reload-\(getpid())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("config.yml")
        try Self.config(localPort: 443).write(to: file, atomically: true, encoding: .utf8)

        let agent = try Agent(["--source", "fake", "-c", file.path])
        defer { agent.stop() }
        func ports(_ metrics: Exposition) -> [String] {
            metrics.samples("tcp_flow_rtt_seconds").compactMap { $0.labels["sport"] }
        }
        func successful(_ metrics: Exposition) -> Double? {
            metrics.samples("flowstat_config_last_reload_successful").first?.value
        }
        func timestamp(_ metrics: Exposition) -> Double {
            metrics.samples("flowstat_config_last_reload_success_timestamp_seconds").first?.value ?? 0
        }

        let first = try agent.scrape()
        #expect(ports(first) == ["443"])
        #expect(successful(first) == 1)

        try Self.config(localPort: 5432).write(to: file, atomically: true, encoding: .utf8)
        kill(agent.process.processIdentifier, SIGHUP)
        let second = try Self.scrape(agent) { ports($0) == ["5432"] }
        #expect(ports(second) == ["5432"])
        #expect(successful(second) == 1)
        #expect(timestamp(second) > timestamp(first))

        try "logic:\n  selection:\n    portRanges: [{ lower: 9000, upper: 80 }]\n".write(
            to: file, atomically: true, encoding: .utf8)
        kill(agent.process.processIdentifier, SIGHUP)
        let third = try Self.scrape(agent) { successful($0) == 0 }
        #expect(successful(third) == 0)
        #expect(ports(third) == ["5432"], "the previous config must stay in force")
        #expect(timestamp(third) == timestamp(second))
        #expect(try agent.get("/health").status == 200)

        #expect(agent.stop() == 0)
        let log = agent.stderrText
        #expect(log.contains("config reload rejected"))
        #expect(log.contains("config.yml:3"), "the error names the file and line: \(log)")
    }

    /// POST through curl; returns status and body.
    static func post(_ agent: Agent, _ path: String) throws -> (status: Int, body: String) {
        let result = try run(
            [
                "curl", "-sS", "--max-time", "30", "-X", "POST", "-o", "-", "-w", "\n%{http_code}",
                "http://127.0.0.1:\(agent.port)\(path)",
            ], check: false)
        let newline = try #require(result.stdout.lastIndex(of: "\n"), "curl: \(result.stderr)")
        return (Int(result.stdout[result.stdout.index(after: newline)...]) ?? 0, String(result.stdout[..<newline]))
    }

    @Test(
        "POST /-/reload with --web.enable-lifecycle: 200 for a good config, 500 with the reason for a bad one; 403 without the flag"
    )
    func lifecycleReload() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "flowstat-reload-http-\(getpid())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("config.yml")
        try Self.config(localPort: 443).write(to: file, atomically: true, encoding: .utf8)

        let disabled = try Agent(["--source", "fake", "-c", file.path])
        defer { disabled.stop() }
        #expect(try Self.post(disabled, "/-/reload").status == 403)
        #expect(disabled.stop() == 0)

        let agent = try Agent(["--source", "fake", "-c", file.path, "--web.enable-lifecycle"])
        defer { agent.stop() }
        #expect(try agent.get("/-/reload").status == 405)
        try Self.config(localPort: 5432).write(to: file, atomically: true, encoding: .utf8)
        let good = try Self.post(agent, "/-/reload")
        #expect(good.status == 200)
        // Synchronous: the next scrape already has the new selection.
        #expect(try agent.scrape().samples("tcp_flow_rtt_seconds").compactMap { $0.labels["sport"] } == ["5432"])

        try "logic:\n  compression:\n    labelFolding: condensed\n".write(to: file, atomically: true, encoding: .utf8)
        let bad = try Self.post(agent, "/-/reload")
        #expect(bad.status == 500)
        #expect(bad.body.contains("config.yml:3"), "\(bad.body)")
        let after = try agent.scrape()
        #expect(after.samples("flowstat_config_last_reload_successful").first?.value == 0)
        #expect(after.samples("tcp_flow_rtt_seconds").compactMap { $0.labels["sport"] } == ["5432"])
    }
}
