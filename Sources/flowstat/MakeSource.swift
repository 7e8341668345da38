import ArgumentParser
import FlowStatCore
import Logging

/// `--source`: which flow source `serve` opens.
enum SourceChoice: String, ExpressibleByArgument, CaseIterable {
    /// The best source this host allows: for now BPF (the inet_diag fallback is to come).
    case auto
    /// BPF only; fail if it cannot load.
    case bpf
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
    case .bpf, .auto:
        // `auto` will fall back to inet_diag once that source exists; until then it is `bpf`.
        do {
            return try BPFFlowSource(options: options.bpf, logger: options.logger)
        } catch let error as BPFError {
            throw StartupError(
                problem: "cannot start the BPF flow source: \(error.step) failed: \(error.message)",
                fix: error.hint ?? "run with --log.level debug for libbpf's messages")
        }
    }
}
