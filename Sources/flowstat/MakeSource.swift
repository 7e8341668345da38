// SPDX-License-Identifier: Apache-2.0

import ArgumentParser
import FlowStatCore
import Logging

/// `--source`: which flow source `serve` opens.
enum SourceChoice: String, ExpressibleByArgument, CaseIterable {
    /// The best source this host allows: BPF, else the inet_diag fallback (and it says why).
    case auto
    /// BPF only; fail if it cannot load.
    case bpf
    /// inet_diag dumps at each scrape: no privileges needed, no event-only metrics.
    case inetDiag = "inet_diag"
    /// Fixed demo flows (`FakeFlowSource`), for trying the HTTP side without privileges.
    case fake
}

/// Everything `makeSource` needs, taken from `serve`'s options.
struct SourceOptions {
    var choice: SourceChoice
    /// Settings for the BPF programs.
    var bpf: BPFOptions
    /// Logger for the source (hooks attached, fallbacks taken).
    var logger: Logger
}

/// Opens the flow source `options` asks for. The only place that decides which source runs,
/// and how `auto` falls back.
///
/// - Throws: preferably `StartupError`, naming the problem and the fix; any other error is
///   reported as "cannot open the … flow source: <error>" with a generic fix.
func makeSource(_ options: SourceOptions) throws -> any FlowSource {
    switch options.choice {
    case .fake:
        options.logger.warning("serving fixed demo flows (--source fake), not this host's flows")
        return FakeFlowSource()
    case .inetDiag:
        return try openInetDiag(reason: nil, logger: options.logger)
    case .bpf:
        do {
            return try BPFFlowSource(options: options.bpf, logger: options.logger)
        } catch let error as BPFError {
            throw StartupError(
                problem: "cannot start the BPF flow source: \(error.step) failed: \(error.message)",
                fix: error.hint ?? "run with --log.level debug for libbpf's messages")
        }
    case .auto:
        let bpfError: BPFError
        do {
            return try BPFFlowSource(options: options.bpf, logger: options.logger)
        } catch let error as BPFError {
            bpfError = error
        }
        let reason = fallbackReason(bpfError)
        // One log line: libbpf's tail in the message spans several.
        let why = bpfError.description.split(whereSeparator: \.isNewline).joined(separator: " | ")
        options.logger.warning(
            "BPF flow source unavailable, falling back to inet_diag (\(inetDiagLimits)): \(why)",
            metadata: ["reason": "\(reason)"])
        do {
            return try openInetDiag(reason: reason, logger: options.logger)
        } catch let error as StartupError {
            throw StartupError(
                problem: "no flow source works here: BPF: \(bpfError.step) failed: \(bpfError.message); "
                    + "inet_diag: \(error.problem)",
                fix: bpfError.hint ?? error.fix)
        }
    }
}

/// What the fallback lacks, for the warning that announces it.
private let inetDiagLimits =
    "no tcp_rtt_seconds histogram, no flow open/close counters, flows read at scrape time"

private func openInetDiag(reason: String?, logger: Logger) throws -> InetDiagFlowSource {
    do {
        return try InetDiagFlowSource(reason: reason, logger: logger)
    } catch let error as InetDiagError {
        throw StartupError(
            problem: "cannot start the inet_diag flow source: \(error)",
            fix: "check that NETLINK_SOCK_DIAG sockets are allowed (seccomp, LSM) and that the kernel has "
                + "inet_diag (modprobe tcp_diag)")
    }
}

/// One line for the `reason` label: the step that failed and strerror, without libbpf's
/// log tail (which goes to the warning instead).
func fallbackReason(_ error: BPFError) -> String {
    let strerror = error.message.split(separator: ";", maxSplits: 1).first.map(String.init) ?? error.message
    return "bpf: \(error.step) failed: \(strerror)"
}
