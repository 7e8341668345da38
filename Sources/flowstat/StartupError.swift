// SPDX-License-Identifier: Apache-2.0

import FlowStatCore

#if canImport(Glibc)
import Glibc
#endif

/// A problem that stops `flowstat` from starting, reported as one line on stderr with the
/// fix, then exit code 1.
typealias StartupError = SetupError

extension SetupError {
    /// Writes `flowstat: error: <problem>; <fix>` to stderr.
    func report() {
        var line = "flowstat: error: \(description)\n"
        line.withUTF8 { bytes in
            // One write(2): the line is not interleaved with log output.
            _ = write(STDERR_FILENO, bytes.baseAddress, bytes.count)
        }
    }
}
