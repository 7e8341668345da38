// SPDX-License-Identifier: Apache-2.0

import Foundation
import Testing

/// The config file from the command line: `--create-config`, `check-config`, and `serve`
/// refusing a bad file. Unprivileged: nothing here loads BPF (a bad config stops `serve`
/// before the flow source opens).
@Suite("Config on the command line")
struct ConfigCommandTests {
    let directory: String

    init() throws {
        directory = NSTemporaryDirectory() + "fscfg-cli-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    /// Runs flowstat in `directory`, so a relative config.yml is looked up there.
    func flowstat(_ arguments: [String]) throws -> CommandResult {
        let quoted = ([flowstatBinary] + arguments).map { "'\($0)'" }.joined(separator: " ")
        return try run(["sh", "-c", "cd '\(directory)' && exec \(quoted)"], check: false)
    }

    @Test("--create-config writes a sample check-config accepts, and will not overwrite it without --force")
    func createAndCheck() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let created = try flowstat(["--create-config", "sample.yml"])
        #expect(created.status == 0, "\(created.stderr)")
        let check = try flowstat(["check-config", "sample.yml"])
        #expect(check.status == 0)
        #expect(check.stdout.hasPrefix("sample.yml: OK\n"))
        #expect(check.stdout.contains("selection: every flow"))

        let again = try flowstat(["--create-config", "sample.yml"])
        #expect(again.status == 1)
        #expect(
            again.stderr
                == "flowstat: error: sample.yml already exists; choose another file, or add --force to overwrite it\n")
        try "# edited\n".write(toFile: directory + "/sample.yml", atomically: true, encoding: .utf8)
        #expect(try flowstat(["--create-config", "sample.yml", "--force"]).status == 0)
        let rewritten = try String(contentsOfFile: directory + "/sample.yml", encoding: .utf8)
        #expect(rewritten.contains("bucketBounds:"))
    }

    @Test("check-config reports a broken file on one line and exits 1")
    func checkBroken() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try "logic:\n  selection:\n    peering:\n      networks: [10.0.0.0/8, 10.0.0.0/40]\n"
            .write(toFile: directory + "/bad.yml", atomically: true, encoding: .utf8)
        let check = try flowstat(["check-config", "bad.yml"])
        #expect(check.status == 1)
        #expect(check.stdout.isEmpty)
        #expect(
            check.stderr
                == "flowstat: error: bad.yml:4: logic.selection.peering.networks[1]: \"10.0.0.0/40\" is not a network: bad prefix length; write a prefix length of 0-32 for IPv4 or 0-128 for IPv6, e.g. 10.0.0.0/8\n"
        )
    }

    @Test("serve reads ./config.yml by default and stops with the config's error")
    func serveDefaultConfig() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try "flowstat:\n  bpf:\n    mapEntrys: 10\n".write(
            toFile: directory + "/config.yml", atomically: true, encoding: .utf8)
        let serve = try flowstat(["serve", "--source", "fake", "--web.listen-address", "127.0.0.1:0"])
        #expect(serve.status == 1)
        #expect(
            serve.stderr.hasSuffix(
                "flowstat: error: config.yml:3: flowstat.bpf.mapEntrys: unknown key \"mapEntrys\"; did you mean mapEntries? known keys here: mapEntries, refresh, mode, tcpRcvHooks, cgroupPath\n"
            ))
    }

    @Test("an explicit -c that does not exist is an error")
    func missingExplicitConfig() throws {
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let serve = try flowstat(["-c", "nope.yml", "--source", "fake", "--web.listen-address", "127.0.0.1:0"])
        #expect(serve.status == 1)
        #expect(
            serve.stderr.hasSuffix(
                "flowstat: error: nope.yml: cannot read the file: open: No such file or directory; check the path, or write a sample config there\n"
            ))
    }
}
