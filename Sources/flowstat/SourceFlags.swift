// SPDX-License-Identifier: Apache-2.0

import ArgumentParser
import FlowStatCore
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// The flow-source flags of the troubleshooting commands (`dump`, `top`), with the same names
/// and meaning as `serve`'s, so a command line moves between them unchanged.
struct SourceFlags: ParsableArguments {
    @Option(help: "Where flows come from: auto (bpf, else inet_diag), bpf, inet_diag (no privileges), or fake (demo data).")
    var source = SourceChoice.auto

    @Option(help: "Capacity of the kernel flow map; the least recently updated flows are evicted past it.")
    var mapEntries = 65_536

    @Option(
        name: .customLong("bpf.tcp-rcv-hooks"),
        help: "tcp_rcv_established variants to try, comma-separated, from: fentry, tp_btf, raw_tp, tracepoint (tried in that order).")
    var receiveHooks = "fentry,tp_btf,raw_tp,tracepoint"

    @Option(
        name: .customLong("bpf.mode"),
        help: "Snapshot mode: auto (the best the kernel allows), or one of live_storage_iter, live_tcp_iter, event, comma-separated (start-up fails if the kernel refuses them all).")
    var bpfMode = "auto"

    @Option(
        name: .customLong("bpf.min-update-interval"),
        help: "Per flow, least seconds between updates from per-packet and RTT events (0: every event).")
    var minUpdateInterval = 0.0

    @Option(name: .customLong("bpf.cgroup-path"), help: "cgroup v2 directory to attach sockops to (default: from /proc/mounts).")
    var cgroupPath: String?

    @Flag(
        name: .customLong("bpf.refresh"), inversion: .prefixedNo,
        help: "Refresh every flow from its socket before each snapshot, so idle flows read as ss shows them.")
    var refresh = true

    /// Opens the source these flags describe.
    ///
    /// - Throws: `StartupError` naming the problem and the fix.
    func open(logger: Logger) throws -> any FlowSource {
        guard (1...(1 << 24)).contains(mapEntries) else {
            throw StartupError(
                problem: "--map-entries \(mapEntries) is out of range", fix: "use a value from 1 to 16777216")
        }
        var options = BPFOptions()
        options.mapEntries = UInt32(mapEntries)
        options.receiveVariants = try BPFFlagValues.receiveVariants(receiveHooks)
        options.modes = try BPFFlagValues.modes(bpfMode)
        options.minUpdateInterval = try BPFFlagValues.minUpdateInterval(minUpdateInterval)
        options.cgroupPath = cgroupPath
        options.refreshBeforeSnapshot = refresh
        do {
            return try makeSource(SourceOptions(choice: source, bpf: options, logger: logger))
        } catch let error as StartupError {
            throw error
        } catch {
            throw StartupError(
                problem: "cannot open the \(source.rawValue) flow source: \(error)",
                fix: "run as root (or with CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN, CAP_SYS_ADMIN); --source fake shows demo data")
        }
    }
}

/// Checks of the BPF flags that `serve`, `dump` and `top` share.
enum BPFFlagValues {
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
                fix: "use auto, or one or more of \(BPFMode.allCases.map(\.rawValue).joined(separator: ", ")), comma-separated")
        }
        return Set(modes)
    }

    /// `--bpf.min-update-interval`: seconds from 0 to 60, in nanoseconds.
    static func minUpdateInterval(_ seconds: Double) throws -> UInt64 {
        guard seconds.isFinite, (0...60).contains(seconds) else {
            throw StartupError(
                problem: "--bpf.min-update-interval \(seconds) is out of range", fix: "use seconds from 0 to 60, e.g. 0.01")
        }
        return UInt64(seconds * 1e9)
    }
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
        help: "Show only the flows this config file's selection selects (default: config.yml if it exists), as serve exports them.")
    var configPath: String?

    /// The config file's selection, hosts resolved; nil when it selects everything.
    func selection(logger: Logger) throws -> FlowFilter? {
        let config = try loadConfig(explicitPath: configPath, logger: logger)
        guard !config.selection.selectsEverything else { return nil }
        let filter = FlowFilter(selection: config.selection)
        filter.resolver?.start()
        return filter
    }

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
                    fix: "give a namespace file (ip netns list shows /run/netns names; /proc/PID/ns/net) or an inode number")
            }
            inodes.insert(UInt32(truncatingIfNeeded: status.st_ino))
        }
        return { [inodes] flow in inodes.contains(flow.key.netns) }
    }
}

/// The flows of `snapshot` that `filter` and the config's `selection` keep (all of them
/// without either); owners are looked up in /proc where the selection needs processes.
func selectFlows(_ snapshot: FlowSnapshot, filter: FlowPredicate?, selection: FlowFilter? = nil) -> [FlowSample] {
    var flows = snapshot.flows
    if let filter { flows = flows.filter { filter($0) } }
    if let selection { flows = selection.apply(to: flows, attributor: ProcessAttributor()) }
    return flows
}

extension FlowSortKey: ExpressibleByArgument {}
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
