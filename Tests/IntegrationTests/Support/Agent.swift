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

    /// Starts `flowstat serve` with extra arguments and waits until /health answers 200.
    init(_ arguments: [String] = []) throws {
        port = try Agent.freePort()
        process.executableURL = URL(fileURLWithPath: flowstatBinary)
        process.arguments = ["serve", "--web.listen-address", "127.0.0.1:\(port)"] + arguments
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
        throw CommandError(command: [flowstatBinary] + (process.arguments ?? []),
                           result: CommandResult(status: process.terminationStatus, stdout: "", stderr: stderrText))
    }

    var stderrText: String {
        stderrDone.wait()
        return String(decoding: stderrData.data, as: UTF8.self)
    }

    /// Status line code and body of one GET (through curl: a real, independent client).
    func get(_ path: String) throws -> (status: Int, body: String) {
        let result = try run(["curl", "-sS", "--max-time", "30", "-o", "-", "-w", "\n%{http_code}",
                              "http://127.0.0.1:\(port)\(path)"], check: false)
        guard result.status == 0, let newline = result.stdout.lastIndex(of: "\n"),
              let code = Int(result.stdout[result.stdout.index(after: newline)...]) else {
            throw CommandError(command: ["curl", path], result: result)
        }
        return (code, String(result.stdout[..<newline]))
    }

    func scrape() throws -> Exposition {
        let response = try get("/metrics")
        guard response.status == 200 else {
            throw CommandError(command: ["GET /metrics"], result: CommandResult(status: Int32(response.status),
                                                                                 stdout: response.body, stderr: ""))
        }
        return Exposition(response.body)
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

    let text: String
    let samples: [Sample]

    init(_ text: String) {
        self.text = text
        samples = text.split(separator: "\n").compactMap(Exposition.parse)
    }

    func samples(_ name: String) -> [Sample] { samples.filter { $0.name == name } }

    /// The per-flow sample of a family for one 4-tuple, if exported.
    func flow(_ name: String, src: String, sport: UInt16, dst: String, dport: UInt16) -> Sample? {
        samples.first {
            $0.name == name && $0.labels["src"] == src && $0.labels["sport"] == String(sport)
                && $0.labels["dst"] == dst && $0.labels["dport"] == String(dport)
        }
    }

    /// `name{a="x",b="y"} value` (label values may hold escaped quotes).
    private static func parse(_ line: Substring) -> Sample? {
        guard !line.hasPrefix("#"), let lastSpace = line.lastIndex(of: " "),
              let value = Double(line[line.index(after: lastSpace)...].replacingOccurrences(of: "+Inf", with: "inf"))
        else { return nil }
        let series = line[..<lastSpace]
        guard let brace = series.firstIndex(of: "{") else {
            return Sample(name: String(series), labels: [:], value: value)
        }
        var labels: [String: String] = [:]
        var rest = series[series.index(after: brace)...].dropLast()  // drop "}"
        while let equals = rest.firstIndex(of: "=") {
            let key = String(rest[..<equals]).trimmingCharacters(in: CharacterSet(charactersIn: ","))
            var index = rest.index(equals, offsetBy: 2)  // skip ="
            var labelValue = ""
            while index < rest.endIndex, rest[index] != "\"" {
                if rest[index] == "\\" { index = rest.index(after: index) }
                labelValue.append(rest[index])
                index = rest.index(after: index)
            }
            labels[key] = labelValue
            rest = rest[rest.index(after: index)...]
        }
        return Sample(name: String(series[..<brace]), labels: labels, value: value)
    }
}
