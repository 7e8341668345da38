// SPDX-License-Identifier: Apache-2.0

import Logging

/// Where flows come from (`flowstat.source`).
public enum SourceChoice: String, Sendable, Hashable, CaseIterable {
    /// The best source this host allows: BPF, else the inet_diag fallback (and it says why).
    case auto
    /// BPF only; fail if it cannot load.
    case bpf
    /// inet_diag dumps at each scrape: no privileges needed, no event-only metrics.
    case inetDiag = "inet_diag"
    /// Fixed demo flows (`FakeFlowSource`), for trying the HTTP side without privileges.
    case fake
}

/// A problem that stops flowstat from starting: what went wrong, naming the thing at fault,
/// and what the operator should do about it.
public struct SetupError: Error, CustomStringConvertible, Sendable {
    public var problem: String
    public var fix: String

    public init(problem: String, fix: String) {
        self.problem = problem
        self.fix = fix
    }

    /// `config.yml:14: logic.selection.portRanges[0]: lower 443 is above upper 80`, with its fix.
    public init(_ error: ConfigError) {
        self.init(problem: "\(error.location): \(error.problem)", fix: error.fix)
    }

    public var description: String { "\(problem); \(fix)" }
}

extension BPFOptions {
    /// The kernel-side settings of `config`.
    ///
    /// - Parameter keepsNamespaceAccess: Whether the agent keeps CAP_SYS_ADMIN for its whole
    ///   life (false when it will drop privileges after start-up).
    public init(config: FlowStatConfig, keepsNamespaceAccess: Bool = true) {
        self.init()
        mapEntries = config.bpf.mapEntries
        receiveVariants = config.bpf.receiveVariants
        modes = config.bpf.modes
        minUpdateInterval = UInt64(config.sampling.minUpdateInterval * 1e9)
        cgroupPath = config.bpf.cgroupPath
        self.keepsNamespaceAccess = keepsNamespaceAccess
        refreshBeforeSnapshot = config.bpf.refresh
        rttBucketBounds = config.rttHistogram ? config.rttBucketBounds : []
        rttSampleEvery = config.sampling.rttSampleEvery
        rttServicePorts = UInt32(config.rttServicePorts)
        rttPeerGroups = config.rttPeerGroups
    }
}

/// Opens the flow source `config.source` names: the only place that decides which source
/// runs, and how `auto` falls back.
///
/// - Throws: `SetupError` naming the problem and the fix.
public func openFlowSource(
    config: FlowStatConfig, keepsNamespaceAccess: Bool = true, logger: Logger = Logger(label: "flowstat.source")
) throws(SetupError) -> any FlowSource {
    let options = BPFOptions(config: config, keepsNamespaceAccess: keepsNamespaceAccess)
    switch config.source {
    case .fake:
        logger.warning("serving fixed demo flows (source fake), not this host's flows")
        return FakeFlowSource()
    case .inetDiag:
        return try openInetDiag(reason: nil, logger: logger)
    case .bpf:
        do {
            return try BPFFlowSource(options: options, logger: logger)
        } catch let error as BPFError {
            throw SetupError(
                problem: "cannot start the BPF flow source: \(error.step) failed: \(error.message)",
                fix: error.hint ?? "run with log level debug for libbpf's messages")
        } catch {
            throw SetupError(problem: "cannot start the BPF flow source: \(error)", fix: "see the log lines above")
        }
    case .auto:
        let bpfError: BPFError
        do {
            return try BPFFlowSource(options: options, logger: logger)
        } catch let error as BPFError {
            bpfError = error
        } catch {
            bpfError = BPFError(step: "open", errno: 0, message: "\(error)")
        }
        let reason = fallbackReason(bpfError)
        // One log line: libbpf's tail in the message spans several.
        let why = bpfError.description.split(whereSeparator: \.isNewline).joined(separator: " | ")
        logger.warning(
            "BPF flow source unavailable, falling back to inet_diag (\(inetDiagLimits)): \(why)",
            metadata: ["reason": "\(reason)"])
        do {
            return try openInetDiag(reason: reason, logger: logger)
        } catch {
            throw SetupError(
                problem: "no flow source works here: BPF: \(bpfError.step) failed: \(bpfError.message); "
                    + "inet_diag: \(error.problem)",
                fix: bpfError.hint ?? error.fix)
        }
    }
}

/// What the fallback lacks, for the warning that announces it.
private let inetDiagLimits =
    "no tcp_rtt_seconds histogram, no flow open/close counters, flows read at scrape time"

private func openInetDiag(reason: String?, logger: Logger) throws(SetupError) -> InetDiagFlowSource {
    do {
        return try InetDiagFlowSource(reason: reason, logger: logger)
    } catch {
        throw SetupError(
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
