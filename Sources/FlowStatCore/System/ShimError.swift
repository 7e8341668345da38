// SPDX-License-Identifier: Apache-2.0

import CFlowStat

/// The one bridge of the C shim's errors (`fs_error`: the step that failed, a negative
/// errno, and for libbpf its log tail) into Swift values; each Swift error type of the seam
/// (`BPFError`, `InetDiagError`, `Privileges.DropError`) is built from it.
struct ShimError: Error, Sendable {
    /// What the shim was doing: "load", "attach sockops", "dump" …
    var step: String
    /// The errno, positive.
    var errno: Int32
    /// The shim's text: strerror, plus libbpf's last log lines where it has them; trailing
    /// newlines removed.
    var message: String

    init(_ error: fs_error) {
        var error = error
        step = withUnsafeBytes(of: &error.step) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        var text = withUnsafeBytes(of: &error.message) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        while text.last?.isNewline == true { text.removeLast() }
        message = text
        errno = -error.code
    }
}
