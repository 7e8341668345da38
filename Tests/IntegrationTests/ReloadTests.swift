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
        func ports(_ metrics: Exposition) -> [String] { metrics.samples("tcp_flow_rtt_seconds").compactMap { $0.labels["sport"] } }
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

        try "logic:\n  selection:\n    portRanges: [{ lower: 9000, upper: 80 }]\n".write(to: file, atomically: true, encoding: .utf8)
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
}
