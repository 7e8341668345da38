// SPDX-License-Identifier: Apache-2.0

import FlowStatCore

#if canImport(Glibc)
import Glibc
#endif

/// A problem that stops `flowstat` from starting, reported as one line on stderr with the
/// fix, then exit code 1.
typealias StartupError = SetupError

extension SetupError {
    /// Writes `flowstat: error: <problem>; <fix>` to stderr, the fix naming settings' flags
    /// too (the problem may quote a config file's key, which stays as written).
    func report() {
        var line = "flowstat: error: \(problem); \(CommandLineSpelling.flags(in: fix))\n"
        line.withUTF8 { bytes in
            // One write(2): the line is not interleaved with log output.
            _ = write(STDERR_FILENO, bytes.baseAddress, bytes.count)
        }
    }
}

/// The library names settings by their config keys; on the command line they are flags.
/// The one table of which flag sets which key, for messages.
enum CommandLineSpelling {
    static let flags: [(key: String, flag: String)] = [
        ("flowstat.bpf.cgroupPath", "--bpf.cgroup-path"),
        ("flowstat.bpf.mapEntries", "--map-entries"),
        ("flowstat.bpf.refresh", "--[no-]bpf.refresh"),
        ("flowstat.bpf.mode", "--bpf.mode"),
        ("flowstat.source", "--source"),
    ]

    /// `text` with each config key followed by its flag: `flowstat.source (--source)`.
    static func flags(in text: String) -> String {
        var text = text
        for (key, flag) in flags { text = text.replacing(key, with: "\(key) (\(flag))") }
        return text
    }
}
