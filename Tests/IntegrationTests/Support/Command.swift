// SPDX-License-Identifier: Apache-2.0

import Foundation

/// A finished child process: its exit status and everything it printed.
struct CommandResult {
    var status: Int32
    var stdout: String
    var stderr: String
}

struct CommandError: Error, CustomStringConvertible {
    var command: [String]
    var result: CommandResult
    var description: String {
        "`\(command.joined(separator: " "))` exited \(result.status): \(result.stderr)\(result.stdout)"
    }
}

/// Runs a command to completion. `check`: throw unless it exits 0.
@discardableResult
func run(_ arguments: [String], check: Bool = true, input: String? = nil) throws -> CommandResult {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = arguments
    let out = Pipe()
    let err = Pipe()
    let inPipe = Pipe()
    process.standardOutput = out
    process.standardError = err
    process.standardInput = inPipe
    try spawn(process)
    if let input { inPipe.fileHandleForWriting.write(Data(input.utf8)) }
    try inPipe.fileHandleForWriting.close()
    // Read both pipes before waiting, so a chatty child cannot fill a pipe and block.
    let group = DispatchGroup()
    nonisolated(unsafe) var errData = Data()
    DispatchQueue.global().async(group: group) { errData = err.fileHandleForReading.readDataToEndOfFile() }
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    group.wait()
    process.waitUntilExit()
    let result = CommandResult(
        status: process.terminationStatus,
        stdout: String(decoding: outData, as: UTF8.self),
        stderr: String(decoding: errData, as: UTF8.self))
    if check && result.status != 0 { throw CommandError(command: arguments, result: result) }
    return result
}

/// A long-running child with a line-oriented stdin/stdout conversation (the TCP peers).
final class Child {
    let process = Process()
    private let stdin = Pipe()
    private let stdout = Pipe()
    private var buffered = Data()
    let arguments: [String]

    init(_ arguments: [String], stderr: FileHandle? = FileHandle.standardError) throws {
        self.arguments = arguments
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        process.standardInput = stdin
        process.standardOutput = stdout
        process.standardError = stderr
        try spawn(process)
    }

    /// The next line the child prints (blocking), or nil at end of output.
    func readLine() -> String? {
        while true {
            if let newline = buffered.firstIndex(of: UInt8(ascii: "\n")) {
                let line = buffered[buffered.startIndex..<newline]
                buffered.removeSubrange(buffered.startIndex...newline)
                return String(decoding: line, as: UTF8.self)
            }
            let chunk = stdout.fileHandleForReading.availableData
            if chunk.isEmpty { return nil }
            buffered.append(chunk)
        }
    }

    /// Writes one line to the child's stdin. A child that has exited (a TCP peer that gave
    /// up) is not written to: its next `readLine()` returns nil, and the test fails there.
    func send(_ line: String) {
        Child.ignoreSIGPIPE
        try? stdin.fileHandleForWriting.write(contentsOf: Data((line + "\n").utf8))
    }

    /// A write to a child that has exited must fail with EPIPE, not kill the test process.
    private static let ignoreSIGPIPE: Void = { signal(SIGPIPE, SIG_IGN) }()

    /// Closes stdin (the peers' signal to finish), then kills the process.
    func stop() {
        try? stdin.fileHandleForWriting.close()
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    deinit { stop() }
}

/// Starts a process with no signals blocked. Children inherit the spawning thread's signal
/// mask, and test-runner threads block SIGTERM: a child spawned from one would never die of
/// it, nor could the agent under test be stopped gracefully.
func spawn(_ process: Process) throws {
    var empty = sigset_t()
    var saved = sigset_t()
    sigemptyset(&empty)
    pthread_sigmask(SIG_SETMASK, &empty, &saved)
    defer { pthread_sigmask(SIG_SETMASK, &saved, nil) }
    try process.run()
}

/// The package root: tests run from there under `swift test`, and the Makefile runs them so.
let packageRoot = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().deletingLastPathComponent()

/// The flowstat binary under test: $FLOWSTAT_BIN, else the one beside the test bundle.
let flowstatBinary: String = {
    if let path = ProcessInfo.processInfo.environment["FLOWSTAT_BIN"] { return path }
    return URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        .deletingLastPathComponent().appendingPathComponent("flowstat").path
}()

let isRoot = geteuid() == 0

/// Polls `condition` every `interval` seconds until it holds or `seconds` pass; whether it held.
/// (A `for … where` loop evaluates its condition on every pass and never stops early.)
@discardableResult
func waitUntil(seconds: Double, interval: Double = 0.1, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while true {
        if try condition() { return true }
        if Date() >= deadline { return false }
        usleep(UInt32(interval * 1e6))
    }
}
