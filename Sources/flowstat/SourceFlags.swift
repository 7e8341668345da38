// SPDX-License-Identifier: Apache-2.0

import ArgumentParser
import FlowStatCore
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// The flow-source flags of every command (`serve`, `dump`, `top`): each overrides its
/// config setting when given, so a command line moves between commands unchanged and every
/// command honours the config file's `flowstat.source` and `flowstat.bpf` sections.
struct SourceFlags: ParsableArguments {
    @Option(
        help:
            "Where flows come from: auto (bpf, else inet_diag), bpf, inet_diag (no privileges), or fake (demo data) (default: config, else auto)."
    )
    var source: SourceChoice?

    @Option(
        help:
            "Capacity of the kernel flow map; the least recently updated flows are evicted past it (default: config, else 65536)."
    )
    var mapEntries: Int?

    @Option(
        name: .customLong("bpf.tcp-rcv-hooks"),
        help:
            "tcp_rcv_established variants to try, comma-separated, from: fentry, tp_btf, raw_tp, tracepoint (tried in that order; default: config, else all)."
    )
    var receiveHooks: String?

    @Option(
        name: .customLong("bpf.mode"),
        help:
            "Snapshot mode: auto (the best the kernel allows), or one of live_storage_iter, live_tcp_iter, event, comma-separated (start-up fails if the kernel refuses them all; default: config, else auto)."
    )
    var bpfMode: String?

    @Option(
        name: .customLong("bpf.min-update-interval"),
        help:
            "Per flow, least seconds between updates from per-packet and RTT events (0: every event; default: config, else 0)."
    )
    var minUpdateInterval: Double?

    @Option(
        name: .customLong("bpf.cgroup-path"),
        help: "cgroup v2 directory to attach sockops to (default: config, else from /proc/mounts).")
    var cgroupPath: String?

    @Flag(
        name: .customLong("bpf.refresh"), inversion: .prefixedNo,
        help:
            "Refresh every flow from its socket just before each snapshot, so idle flows read as ss shows them (default: config, else on)."
    )
    var refresh: Bool?

    /// The flags as changes to a config, checked once.
    ///
    /// - Throws: `StartupError` naming the flag and the fix.
    func overrides() throws -> @Sendable (inout FlowStatConfig) -> Void {
        if let mapEntries, !FlowStatConfig.mapEntriesRange.contains(mapEntries) {
            throw StartupError(
                problem: "--map-entries \(mapEntries) is out of range",
                fix:
                    "use a value from \(FlowStatConfig.mapEntriesRange.lowerBound) to \(FlowStatConfig.mapEntriesRange.upperBound)"
            )
        }
        if let minUpdateInterval,
            !minUpdateInterval.isFinite || !FlowStatConfig.minUpdateIntervalRange.contains(minUpdateInterval)
        {
            throw StartupError(
                problem: "--bpf.min-update-interval \(minUpdateInterval) is out of range",
                fix: "use seconds from 0 to 60, e.g. 0.01")
        }
        let variants = try receiveHooks.map(Self.receiveVariants)
        let modes = try bpfMode.map(Self.modes)
        let (source, mapEntries, minUpdateInterval, cgroupPath, refresh) =
            (source, mapEntries, minUpdateInterval, cgroupPath, refresh)
        return { config in
            if let source { config.source = source }
            if let mapEntries { config.bpf.mapEntries = UInt32(mapEntries) }
            if let variants { config.bpf.receiveVariants = variants }
            if let modes { config.bpf.modes = modes }
            if let minUpdateInterval { config.sampling.minUpdateInterval = minUpdateInterval }
            if let cgroupPath { config.bpf.cgroupPath = cgroupPath }
            if let refresh { config.bpf.refresh = refresh }
        }
    }

    /// `--bpf.tcp-rcv-hooks`: a comma-separated list of known variants.
    static func receiveVariants(_ text: String) throws -> Set<String> {
        let variants = text.split(separator: ",").map { String($0.filter { !$0.isWhitespace }) }
        let known = BPFOptions.receiveVariantNames
        guard !variants.isEmpty, variants.allSatisfy(known.contains) else {
            throw StartupError(
                problem: "--bpf.tcp-rcv-hooks \"\(text)\" names no variant or an unknown one",
                fix: "list one or more of \(known.joined(separator: ", ")), comma-separated")
        }
        return Set(variants)
    }

    /// `--bpf.mode`: auto, or a comma-separated list of snapshot modes.
    static func modes(_ text: String) throws -> Set<BPFMode> {
        if text == "auto" { return Set(BPFMode.allCases) }
        let names = text.split(separator: ",").map { String($0.filter { !$0.isWhitespace }) }
        let modes = names.compactMap(BPFMode.init(rawValue:))
        guard !modes.isEmpty, modes.count == names.count else {
            throw StartupError(
                problem: "--bpf.mode \"\(text)\" names no mode or an unknown one",
                fix: "use auto, or one or more of \(BPFMode.spellings), comma-separated")
        }
        return Set(modes)
    }
}

/// Opens the source `config` names.
func openSource(config: FlowStatConfig, keepsNamespaceAccess: Bool = true, logger: Logger) throws -> any FlowSource {
    try openFlowSource(config: config, keepsNamespaceAccess: keepsNamespaceAccess, logger: logger)
}

/// Which flows the troubleshooting commands show, besides the config file's selection.
typealias FlowPredicate = @Sendable (borrowing FlowSample) -> Bool

/// Command-line narrowing for `dump` and `top`: flows of some network namespaces only (a
/// container's, or a test's).
struct FilterFlags: ParsableArguments {
    @Option(
        name: .customLong("netns"),
        help: ArgumentHelp(
            "Show only flows of this network namespace: a name from ip netns list, a path (/proc/PID/ns/net) or an inode number; repeatable.",
            valueName: "path-or-inode"))
    var namespaces: [String] = []

    @Option(
        name: [.short, .customLong("config")],
        help:
            "Config file: its selection and source settings apply, as serve uses them (default: config.yml if it exists)."
    )
    var configPath: String?

    /// The filter the flags ask for; nil when they ask for nothing.
    func filter() throws -> FlowPredicate? {
        guard !namespaces.isEmpty else { return nil }
        var inodes: Set<UInt32> = []
        for namespace in namespaces {
            if let inode = UInt32(namespace) {
                inodes.insert(inode)
                continue
            }
            let path = namespace.contains("/") ? namespace : "/run/netns/" + namespace
            var status = stat()
            guard stat(path, &status) == 0 else {
                throw StartupError(
                    problem: "--netns \(namespace): cannot read \(path): \(String(cString: strerror(errno)))",
                    fix:
                        "give a namespace file (ip netns list shows /run/netns names; /proc/PID/ns/net) or an inode number"
                )
            }
            inodes.insert(UInt32(truncatingIfNeeded: status.st_ino))
        }
        return { [inodes] flow in inodes.contains(flow.key.netns) }
    }
}

/// What `dump` and `top` read flows through: the config (the file `-c` names, or
/// config.yml, with the source flags over it), its source, and the export pipeline, so they
/// show the flows `serve` would export; then the `--netns` narrowing.
final class TroubleshootingSession {
    private let source: any FlowSource
    private let pipeline: ExportPipeline
    private let narrowing: FlowPredicate?

    init(_ filterFlags: FilterFlags, _ sourceFlags: SourceFlags) throws {
        narrowing = try filterFlags.filter()
        let file = ConfigFile(explicitPath: filterFlags.configPath, overrides: try sourceFlags.overrides())
        let config = try file.load(logger: Logger(label: "flowstat"))
        source = try openSource(config: config, logger: Logger(label: "flowstat.source"))
        pipeline = ExportPipeline(source: source, config: config)
    }

    /// The flows now.
    func flows() throws -> [FlowSample] {
        var flows: [FlowSample]
        do {
            flows = try pipeline.selectedSnapshot().flows
        } catch {
            throw StartupError(
                problem: "cannot read the flows: \(error)", fix: "run with --log.level debug for the source's messages")
        }
        if let narrowing { flows = flows.filter { narrowing($0) } }
        return flows
    }

    /// Detaches the source (BPF programs) and stops background work.
    func close() {
        pipeline.stop()
        source.shutdown()
    }
}

extension FlowSortKey: ExpressibleByArgument {}
extension SourceChoice: ExpressibleByArgument {}
extension TopView.SortKey: ExpressibleByArgument {}

/// Writes all of `text` to standard output with write(2), unbuffered: `top` draws a frame in
/// one write so the terminal never shows half of one.
func writeStandardOutput(_ text: String) {
    var text = text
    text.withUTF8 { bytes in
        var offset = 0
        while offset < bytes.count {
            let written = write(1, bytes.baseAddress! + offset, bytes.count - offset)
            if written < 0 {
                if errno == EINTR { continue }
                return
            }
            offset += written
        }
    }
}
