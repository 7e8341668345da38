// SPDX-License-Identifier: Apache-2.0

import Foundation

/// A flowstat process under test, serving on a loopback port of its own. Tests also stop it
/// with `defer { agent.stop() }`: a failed `#require` must not leave an agent attached.
final class Agent {
    let port: Int
    let process = Process()
    private let stderrPipe = Pipe()
    private let stderrData = DataBox()
    private let stderrDone = DispatchGroup()

    /// Written once by the stderr reader, read after `stderrDone`; holding it rather than the
    /// agent keeps the reader from keeping the agent alive.
    private final class DataBox: @unchecked Sendable {
        var data = Data()
    }

    /// Network namespace the agent runs and listens in (nil: the test's own); `get` goes there too.
    let namespace: String?
    /// `https` when the agent serves TLS (a `--web.config.file` with tls_server_config).
    let scheme: String
    /// Extra curl options for `get` (CA file, credentials).
    let curlOptions: [String]

    /// Starts `flowstat serve` with extra arguments and waits until /health answers 200.
    /// `namespace`: run it inside that network namespace (an `ip netns` name), entered with
    /// `nsenter`, which unlike `ip netns exec` keeps the host's mounts (the cgroup v2 mount
    /// among them), as an agent in a container sees them; `launcher`: a command it runs under
    /// there, e.g. `setpriv` to drop privileges.
    init(
        _ arguments: [String] = [], namespace: String? = nil, launcher: [String] = [], scheme: String = "http",
        curlOptions: [String] = []
    ) throws {
        self.scheme = scheme
        self.curlOptions = curlOptions
        port = try Agent.freePort()
        self.namespace = namespace
        let serve = ["serve", "--web.listen-address", "127.0.0.1:\(port)"] + arguments
        let prefix = Agent.enter(namespace) + launcher
        if prefix.isEmpty {
            process.executableURL = URL(fileURLWithPath: flowstatBinary)
            process.arguments = serve
        } else {
            // nsenter and setpriv exec the agent: the process stays the agent's.
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = prefix + [flowstatBinary] + serve
        }
        process.standardError = stderrPipe
        process.standardOutput = FileHandle.nullDevice
        try spawn(process)
        let handle = stderrPipe.fileHandleForReading
        let box = stderrData
        DispatchQueue.global().async(group: stderrDone) {
            box.data = handle.readDataToEndOfFile()
        }
        // Start-up loads and verifies BPF programs; a debug build can take a few seconds.
        for _ in 0..<300 {
            if !process.isRunning { break }
            if let status = try? get("/health").status, status == 200 { return }
            usleep(100_000)
        }
        _ = stop()
        throw CommandError(
            command: [flowstatBinary] + (process.arguments ?? []),
            result: CommandResult(status: process.terminationStatus, stdout: "", stderr: stderrText))
    }

    var stderrText: String {
        stderrDone.wait()
        return String(decoding: stderrData.data, as: UTF8.self)
    }

    /// Status line code and body of one GET (through curl: a real, independent client).
    func get(_ path: String) throws -> (status: Int, body: String) {
        let curl =
            ["curl", "-sS", "--max-time", "30", "-o", "-", "-w", "\n%{http_code}"] + curlOptions
            + ["\(scheme)://127.0.0.1:\(port)\(path)"]
        let result = try run(Agent.enter(namespace) + curl, check: false)
        guard result.status == 0, let newline = result.stdout.lastIndex(of: "\n"),
            let code = Int(result.stdout[result.stdout.index(after: newline)...])
        else {
            throw CommandError(command: ["curl", path], result: result)
        }
        return (code, String(result.stdout[..<newline]))
    }

    func scrape() throws -> Exposition {
        let response = try get("/metrics")
        guard response.status == 200 else {
            throw CommandError(
                command: ["GET /metrics"],
                result: CommandResult(
                    status: Int32(response.status),
                    stdout: response.body, stderr: ""))
        }
        return try Exposition(response.body)
    }

    /// SIGTERM, then waits; returns the exit status. An agent that has not exited 20 s
    /// later is killed and reported as status -1, so a hung shutdown fails the test.
    @discardableResult
    func stop() -> Int32 {
        guard process.isRunning else { return process.terminationStatus }
        process.terminate()
        for _ in 0..<200 where process.isRunning { usleep(100_000) }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            return -1
        }
        process.waitUntilExit()
        return process.terminationStatus
    }

    deinit { stop() }

    /// The command prefix that runs a command in a named network namespace.
    private static func enter(_ namespace: String?) -> [String] {
        namespace.map { ["nsenter", "--net=/run/netns/\($0)"] } ?? []
    }

    static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
                bind(fd, pointer, length) == 0 && getsockname(fd, pointer, &length) == 0
            }
        }
        guard bound else { throw POSIXError(.EADDRINUSE) }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}

/// A scraped exposition: the raw text and its samples.
struct Exposition {
    struct Sample {
        var name: String
        var labels: [String: String]
        var value: Double
    }

    /// A line of our own exposition that is neither a comment, nor empty, nor a sample.
    struct MalformedLine: Error, CustomStringConvertible {
        var number: Int
        var line: String
        var problem: String
        var description: String { "exposition line \(number) is malformed (\(problem)): \(line)" }
    }

    let text: String
    let samples: [Sample]

    /// Parses every line; a line that is not a comment, an empty line or a well-formed sample
    /// (Prometheus text format 0.0.4, or OpenMetrics 1.0 text) throws with the line.
    init(_ text: String) throws {
        self.text = text
        var samples: [Sample] = []
        for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            if line.isEmpty || line.hasPrefix("#") { continue }
            do {
                samples.append(try Exposition.parse(line))
            } catch {
                let problem = (error as? Problem)?.text ?? String(describing: error)
                throw MalformedLine(number: index + 1, line: String(line), problem: problem)
            }
        }
        self.samples = samples
    }

    func samples(_ name: String) -> [Sample] { samples.filter { $0.name == name } }

    /// The per-flow sample of a family for one 4-tuple, if exported.
    func flow(_ name: String, src: String, sport: UInt16, dst: String, dport: UInt16) -> Sample? {
        samples.first {
            $0.name == name && $0.labels["src"] == src && $0.labels["sport"] == String(sport)
                && $0.labels["dst"] == dst && $0.labels["dport"] == String(dport)
        }
    }

    private struct Problem: Error {
        var text: String
        init(_ text: String) { self.text = text }
    }

    /// `name{a="x",b="y"} value [timestamp]`, as the text format defines it: a metric name,
    /// optional labels whose values escape only `\\`, `\"` and `\n`, one space, a float (or
    /// `NaN`, `+Inf`, `-Inf`), and an optional integer timestamp.
    private static func parse(_ line: Substring) throws -> Sample {
        let characters = Array(line.unicodeScalars)
        var index = 0
        func isNameStart(_ c: Unicode.Scalar) -> Bool {
            ("a"..."z").contains(c) || ("A"..."Z").contains(c) || c == "_" || c == ":"
        }
        func isNameChar(_ c: Unicode.Scalar) -> Bool { isNameStart(c) || ("0"..."9").contains(c) }
        func readName(labelName: Bool) throws -> String {
            let start = index
            guard index < characters.count, isNameStart(characters[index]),
                !(labelName && characters[index] == ":")
            else {
                throw Problem("no \(labelName ? "label" : "metric") name at column \(index + 1)")
            }
            while index < characters.count, isNameChar(characters[index]),
                !(labelName && characters[index] == ":")
            {
                index += 1
            }
            var name = String.UnicodeScalarView()
            name.append(contentsOf: characters[start..<index])
            return String(name)
        }
        func expect(_ c: Unicode.Scalar) throws {
            guard index < characters.count, characters[index] == c else {
                throw Problem("expected \"\(c)\" at column \(index + 1)")
            }
            index += 1
        }

        let name = try readName(labelName: false)
        var labels: [String: String] = [:]
        if index < characters.count, characters[index] == "{" {
            index += 1
            while index < characters.count, characters[index] != "}" {
                let key = try readName(labelName: true)
                try expect("=")
                try expect("\"")
                var value = String.UnicodeScalarView()
                while true {
                    guard index < characters.count else { throw Problem("unterminated value of label \(key)") }
                    let c = characters[index]
                    index += 1
                    if c == "\"" { break }
                    if c == "\\" {
                        guard index < characters.count else { throw Problem("dangling backslash in label \(key)") }
                        switch characters[index] {
                        case "\\": value.append("\\")
                        case "\"": value.append("\"")
                        case "n": value.append("\n")
                        default: throw Problem("unknown escape \\\(characters[index]) in label \(key)")
                        }
                        index += 1
                    } else {
                        value.append(c)
                    }
                }
                guard labels.updateValue(String(value), forKey: key) == nil else {
                    throw Problem("label \(key) given twice")
                }
                if index < characters.count, characters[index] == "," { index += 1 } else { break }
            }
            try expect("}")
        }
        try expect(" ")
        let rest = String(String.UnicodeScalarView(characters[index...]))
        let fields = rest.split(separator: " ", omittingEmptySubsequences: false)
        guard fields.count == 1 || fields.count == 2 else { throw Problem("expected a value and at most a timestamp") }
        let value: Double
        switch fields[0] {
        case "NaN": value = .nan
        case "+Inf": value = .infinity
        case "-Inf": value = -.infinity
        default:
            // Digits, sign, point and exponent only: Double("inf") or Double("0x1p3") are no
            // Prometheus values.
            guard !fields[0].isEmpty, fields[0].allSatisfy({ "0123456789+-.eE".contains($0) }),
                let number = Double(fields[0])
            else {
                throw Problem("value \"\(fields[0])\" is not a float")
            }
            value = number
        }
        if fields.count == 2, Int64(fields[1]) == nil {
            throw Problem("timestamp \"\(fields[1])\" is not an integer")
        }
        return Sample(name: name, labels: labels, value: value)
    }
}
