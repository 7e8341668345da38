// SPDX-License-Identifier: Apache-2.0

import Foundation

/// A real Prometheus server (the Debian package) on a free loopback port, with its own
/// configuration and storage in a temporary directory, for end-to-end tests.
/// `stop()` (also on deinit) terminates it and deletes the directory.
final class PrometheusServer {
    let port: Int
    let directory: URL
    private let process = Process()
    private var stopped = false

    /// Starts Prometheus scraping `target` (`host:port`) every second, evaluating `ruleFiles`
    /// (copied next to its configuration) every second, and waits until it is ready.
    /// `flags`: more command-line flags, e.g. `--enable-feature=exemplar-storage`.
    init(name: String, target: String, ruleFiles: [String] = [], flags: [String] = []) throws {
        port = try Agent.freePort()
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("\(name)-\(getpid())")
        try? FileManager.default.removeItem(at: directory)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        var ruleNames: [String] = []
        for (index, file) in ruleFiles.enumerated() {
            let copy = "rules-\(index).yml"
            try FileManager.default.copyItem(at: URL(fileURLWithPath: file), to: directory.appendingPathComponent(copy))
            ruleNames.append(copy)
        }
        let config = """
            global:
              scrape_interval: 1s
              scrape_timeout: 1s
              evaluation_interval: 1s
            rule_files: [\(ruleNames.map { "\"\($0)\"" }.joined(separator: ", "))]
            scrape_configs:
              - job_name: flowstat
                static_configs:
                  - targets: ["\(target)"]

            """
        let configURL = directory.appendingPathComponent("prometheus.yml")
        try config.write(to: configURL, atomically: true, encoding: .utf8)
        let log = directory.appendingPathComponent("prometheus.log")
        FileManager.default.createFile(atPath: log.path, contents: nil)
        process.executableURL = URL(fileURLWithPath: "/usr/bin/prometheus")
        process.arguments =
            [
                "--config.file=\(configURL.path)",
                "--storage.tsdb.path=\(directory.appendingPathComponent("data").path)",
                "--web.listen-address=127.0.0.1:\(port)", "--log.level=warn",
            ] + flags
        let logHandle = try FileHandle(forWritingTo: log)
        process.standardOutput = logHandle
        process.standardError = logHandle
        try spawn(process)
        for _ in 0..<300 {
            if !process.isRunning { break }
            if let ready = try? run(
                ["curl", "-sf", "--max-time", "2", "http://127.0.0.1:\(port)/-/ready"], check: false),
                ready.status == 0
            {
                return
            }
            usleep(100_000)
        }
        let text = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
        stop()
        throw CommandError(
            command: ["prometheus"] + (process.arguments ?? []),
            result: CommandResult(status: process.terminationStatus, stdout: "", stderr: text))
    }

    /// GET an API path with URL-encoded parameters; returns the decoded `data` member after
    /// checking `status` is `success`.
    func api(_ path: String, _ parameters: [String: String] = [:]) throws -> Any {
        var arguments = ["curl", "-sS", "--max-time", "10", "-G", "http://127.0.0.1:\(port)\(path)"]
        for (name, value) in parameters.sorted(by: { $0.key < $1.key }) {
            arguments += ["--data-urlencode", "\(name)=\(value)"]
        }
        let result = try run(arguments)
        let object = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
        guard let object, object["status"] as? String == "success", let data = object["data"] else {
            throw CommandError(command: arguments, result: result)
        }
        return data
    }

    /// An instant query's result vector: each series' labels and value.
    func query(_ expression: String, at time: Double? = nil) throws -> [(labels: [String: String], value: Double)] {
        var parameters = ["query": expression]
        if let time { parameters["time"] = String(format: "%.3f", time) }
        let data = try api("/api/v1/query", parameters) as? [String: Any]
        let result = data?["result"] as? [[String: Any]] ?? []
        return result.compactMap { series in
            guard let labels = series["metric"] as? [String: String], let pair = series["value"] as? [Any],
                let text = pair.last as? String, let value = Double(text)
            else { return nil }
            return (labels, value)
        }
    }

    /// Polls `condition` every 200 ms for up to `seconds`; returns whether it held.
    func wait(seconds: Double, until condition: () throws -> Bool) rethrows -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if try condition() { return true }
            usleep(200_000)
        }
        return try condition()
    }

    var logText: String {
        (try? String(contentsOf: directory.appendingPathComponent("prometheus.log"), encoding: .utf8)) ?? ""
    }

    func stop() {
        guard !stopped else { return }
        stopped = true
        if process.isRunning {
            process.terminate()
            for _ in 0..<100 where process.isRunning { usleep(100_000) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
        }
        try? FileManager.default.removeItem(at: directory)
    }

    deinit { stop() }
}
