import Foundation
import Testing

/// The deployment files in deploy/ are checked by the tools that will consume them.
@Suite("Deployment kit")
struct DeploymentKitTests {
    @Test("promtool accepts the example Prometheus configuration")
    func prometheusConfig() throws {
        let path = packageRoot.appendingPathComponent("deploy/prometheus/prometheus.yml").path
        let result = try run(["promtool", "check", "config", path], check: false)
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
    }

    @Test("systemd accepts the unit (with ExecStart pointed at the built binary)")
    func systemdUnit() throws {
        let unit = try String(contentsOf: packageRoot.appendingPathComponent("deploy/systemd/flowstat.service"),
                              encoding: .utf8)
        #expect(unit.contains("ExecStart=/usr/local/bin/flowstat "))
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("flowstat-unit-\(getpid())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let copy = directory.appendingPathComponent("flowstat.service")
        try unit.replacingOccurrences(of: "/usr/local/bin/flowstat", with: flowstatBinary)
            .write(to: copy, atomically: true, encoding: .utf8)
        let result = try run(["systemd-analyze", "verify", copy.path], check: false)
        // Only lines about this unit count; the host's own units may have warnings of their own.
        let complaints = (result.stdout + result.stderr).split(separator: "\n").filter { $0.contains("flowstat.service") }
        #expect(complaints.isEmpty, "\(complaints.joined(separator: "\n"))")
    }
}
