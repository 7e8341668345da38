// SPDX-License-Identifier: Apache-2.0

import Foundation
import Testing

/// prometheus_ss_exporter's command lines, as its README, help text and container examples
/// write them (Nim's parseopt: a value after `:` or `=`), start flowstat unchanged. The fake
/// source needs no privileges, so these run anywhere.
@Suite("The seed exporter's command-line syntax", .serialized)
struct SeedCommandLineTests {
    /// Starts `flowstat ARGUMENTS` (no subcommand, as the seed's unit files run it), waits for
    /// /health on `port`, and returns what it logged once stopped.
    static func serve(_ arguments: [String], port: Int, from directory: String? = nil) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: flowstatBinary)
        process.arguments = arguments
        if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        try spawn(process)
        let healthy =
            waitUntil(seconds: 30) {
                !process.isRunning
                    || (try? run(
                        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:\(port)/health"],
                        check: false
                    ).stdout) == "200"
            } && process.isRunning
        if process.isRunning { process.terminate() }
        let log = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(healthy, "flowstat \(arguments.joined(separator: " ")) did not serve on \(port): \(log)")
        return log
    }

    @Test("the port: --port:N, -p:N, --port=N, -p=N", arguments: ["--port:", "-p:", "--port=", "-p="])
    func port(form: String) throws {
        let port = try Agent.freePort()
        _ = try Self.serve(["--source", "fake", "\(form)\(port)"], port: port)
    }

    @Test("the config file and log level: --create-config:FILE, --config:FILE, -c:FILE, --log-level:DEBUG")
    func configAndLogLevel() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("fs-seedcli-\(getpid())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("config.yml").path

        let created = try run([flowstatBinary, "--create-config:\(file)"], check: false)
        #expect(created.status == 0, "\(created.stderr)")
        #expect(FileManager.default.fileExists(atPath: file))
        for form in ["--config:", "-c:"] {
            let port = try Agent.freePort()
            // From an empty directory: without the flag, flowstat would run on its defaults.
            let log = try Self.serve(
                ["--source", "fake", "-p:\(port)", "\(form)\(file)", "--log-level:DEBUG"],
                port: port, from: "/")
            #expect(log.contains("read config \(file)"), "\(form): \(log)")
            #expect(log.contains(" debug "), "--log-level:DEBUG logs debug lines: \(log)")
        }
    }

    @Test("-v and --version print the version; -h and --help print the usage")
    func versionAndHelp() throws {
        let short = try run([flowstatBinary, "-v"])
        let long = try run([flowstatBinary, "--version"])
        #expect(!short.stdout.isEmpty && short.stdout == long.stdout)
        #expect(try run([flowstatBinary, "-h"]).stdout.contains("USAGE"))
        #expect(try run([flowstatBinary, "--help"]).stdout.contains("USAGE"))
    }

    @Test("flowstat's own flags keep their syntax: --web.listen-address:ADDR is refused, naming it")
    func ownFlagsUnchanged() throws {
        let result = try run([flowstatBinary, "--source", "fake", "--web.listen-address:127.0.0.1:0"], check: false)
        #expect(result.status == 64)
        #expect(result.stderr.contains("--web.listen-address:127.0.0.1:0"), "\(result.stderr)")
    }
}
