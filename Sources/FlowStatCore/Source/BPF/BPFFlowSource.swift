// SPDX-License-Identifier: Apache-2.0

import CFlowStat
import Logging
import NIOConcurrencyHelpers

#if canImport(Glibc)
import Glibc
#endif

/// Settings for the BPF programs, fixed when they load.
public struct BPFOptions: Sendable {
    /// Capacity of the kernel's flow map; the least recently updated flows are evicted past it.
    public var mapEntries: UInt32 = 65_536
    /// Per flow, the least time between two updates from per-packet and RTT events
    /// (0: every event). Bounds the hooks' cost on busy hosts; lifecycle events always update.
    public var minUpdateInterval: UInt64 = 0
    /// cgroup v2 directory to attach sockops to; nil: the cgroup v2 mount from /proc/mounts.
    public var cgroupPath: String?
    /// tcp_rcv_established variants the shim may try. It always prefers fentry, then tp_btf,
    /// then raw_tp, then the classic tracepoint; removing some is for tests and for kernels
    /// that misbehave.
    public var receiveVariants: Set<String> = Set(BPFOptions.receiveVariantNames)
    /// The snapshot modes the shim may run in, best first (see `BPFMode`); one alone forces
    /// it, and opening fails if the kernel refuses it. Event mode also runs whenever
    /// `refreshBeforeSnapshot` is off.
    public var modes: Set<BPFMode> = Set(BPFMode.allCases)
    /// Whether the agent keeps CAP_SYS_ADMIN (if it has it) for its whole life: false when
    /// `--run-as` will drop it. Live mode through iter/tcp needs it to read other namespaces.
    public var keepsNamespaceAccess = true
    /// Every tcp_rcv_established variant, in the shim's order of preference.
    public static let receiveVariantNames = ["fentry", "tp_btf", "raw_tp", "tracepoint"]
    /// Before each snapshot, rewrite every flow from its socket's current state (iter/tcp),
    /// so idle flows show what `ss` shows now rather than their state before their last packet.
    public var refreshBeforeSnapshot = true
    /// Upper bounds of the in-kernel RTT histogram, seconds, increasing, at most 32; empty
    /// turns it off. Default: 1 µs to 1 s in 1-2.5-5 steps (the seed's 0.001 … 1000 ms).
    public var rttBucketBounds: [Double] = BPFOptions.defaultRTTBucketBounds
    /// Count 1 in N RTT samples in the histogram (1: all); bounds the cost on busy hosts.
    public var rttSampleEvery: UInt32 = 1
    /// Per-service RTT histograms (`tcp_service_rtt_seconds`) for at most this many service
    /// ports, the rest in `port="other"`; 0 turns them off.
    public var rttServicePorts: UInt32 = 0
    /// Named lists of networks whose flows' RTT samples also go to a histogram of their own
    /// (`tcp_peer_group_rtt_seconds`); at most 16 groups.
    public var rttPeerGroups: [RTTPeerGroup] = []
    /// Upper bounds of the closed-flow lifetime histogram, seconds, increasing, at most 32.
    public var flowDurationBucketBounds: [Double] = BPFOptions.defaultFlowDurationBucketBounds
    /// Upper bounds of the closed-flow bytes histogram, increasing, at most 32.
    public var flowBytesBucketBounds: [Double] = BPFOptions.defaultFlowBytesBucketBounds
    /// Size of the closed-flow ring buffer in bytes: a power of two of at least a page. A
    /// record takes 160 bytes plus an 8-byte header, so 8 MiB hold about 50,000 closes
    /// between two reads.
    public var ringBufferBytes: UInt32 = 8 << 20

    public static let defaultRTTBucketBounds: [Double] = [
        0.000001, 0.0000025, 0.000005, 0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005,
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
    ]

    /// 1 ms to 1 hour: 1-2.5-5 steps to 1000 s, then 1 h.
    public static let defaultFlowDurationBucketBounds: [Double] = [
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 3600,
    ]

    /// 64 bytes to 1 GiB in powers of 4.
    public static let defaultFlowBytesBucketBounds: [Double] = (0...12).map { Double(64 << (2 * $0)) }

    public init() {}
}

/// Flows from flowstat's BPF programs: the kernel keeps the flow map up to date on every
/// TCP event, and a snapshot is a batched copy of that map.
///
/// Creating one loads and attaches the programs (root or CAP_BPF+CAP_PERFMON+CAP_NET_ADMIN
/// needed; CAP_SYS_ADMIN to seed and refresh other network namespaces); `shutdown()` or
/// deinit detaches them. Only one should exist per process: each attaches its own copy of
/// every hook. Once open it needs no privilege to be read (see `serve --run-as`).
public final class BPFFlowSource: FlowSource, @unchecked Sendable {
    // @unchecked: every mutable member is only touched with `lock` held.
    private let lock = NIOLock()
    private var agent: OpaquePointer?
    private let capacity: Int
    private let keys: UnsafeMutablePointer<fs_flow_key>
    private let values: UnsafeMutablePointer<fs_flow_stats>
    private var namespaces = NetworkNamespaces()
    /// Namespaces seen in the last snapshot: the ones to refresh (event mode) or read (live
    /// mode through iter/tcp) at the next.
    private var activeNamespaces: Set<UInt32> = []
    /// Live mode through iter/tcp: namespaces the kernel reported with new flows that no path
    /// led to yet (made a moment ago), with how many snapshots tried; retried a few times.
    private var unresolvedNamespaces: [UInt32: Int] = [:]
    /// False once the refresh has found it cannot enter other namespaces (see `canEnterNamespaces`).
    private var entersNamespaces = true
    private let refreshBeforeSnapshot: Bool
    private let logger: Logger
    /// RTT histogram bounds in seconds, as configured in the kernel.
    private let rttBounds: [Double]
    /// Service ports with an RTT histogram of their own (0: none), and the RTT peer groups.
    private let servicePortLimit: Int
    private let peerGroupNames: [String]
    /// Closed-flow histogram bounds: seconds, bytes.
    private let durationBounds: [Double]
    private let bytesBounds: [Double]
    /// Whether the refresh iterates flowstat's socket storage (all namespaces in one pass)
    /// rather than iter/tcp per namespace.
    private let refreshesTracked: Bool
    /// How snapshots are taken (see `BPFMode`).
    private let mode: BPFMode
    /// Whether a variant of tcp_retransmit_skb is attached: the retransmit counts are real.
    private let countsRetransmits: Bool
    /// Drains the closed-flow ring buffer on its own thread into `closedFlows`.
    private let closedFlowReader: ClosedFlowCollector
    public let closedFlows: ClosedFlowAggregates?
    /// Whether a snapshot left flows out past the capacity already (logged once, not per scrape).
    private var warnedSnapshotFull = false
    /// Live mode: flows left out of snapshots for want of room, summed over snapshots.
    private var leftOut: UInt64 = 0
    /// Flows in the last live snapshot: the next one reserves room for as many.
    private var lastSnapshotCount = 0
    /// A snapshot's flow array handed back (`recycle`): the next live snapshot fills it.
    private var spareFlows: [FlowSample] = []
    /// Highest eviction count reported so far (see `readEvents`).
    private var evictions: UInt64 = 0
    /// Separate from `lock` so that /health answers while a scrape holds the lock.
    private let serving = NIOLockedValueBox(true)

    public let info: SourceInfo

    public init(options: BPFOptions = BPFOptions(), logger: Logger = Logger(label: "flowstat.bpf")) throws {
        self.logger = logger
        fs_set_log_handler(forwardLibbpfLog)

        var variants: UInt32 = 0
        for (name, hook) in Self.receiveVariants where options.receiveVariants.contains(name) {
            variants |= hook.rawValue
        }
        if variants == 0 {
            throw BPFError(
                step: "choose tcp_rcv_established variants", errno: EINVAL,
                message: "none of \(options.receiveVariants.sorted()) is one of \(BPFOptions.receiveVariantNames)")
        }
        // iter/tcp reads a namespace from inside it: without CAP_SYS_ADMIN for the agent's whole
        // life, live_tcp_iter would lose the flows of every other namespace, where event mode
        // keeps them from events. Forced alone, it runs anyway.
        var allowedModes = options.modes
        var modeNote: String?
        if allowedModes.count > 1, allowedModes.contains(.liveTCPIterator),
            !(options.keepsNamespaceAccess && CapabilitySet.effective().contains(.sysAdmin))
        {
            allowedModes.remove(.liveTCPIterator)
            modeNote =
                "\(BPFMode.liveTCPIterator): cannot enter other network namespaces "
                + "(no CAP_SYS_ADMIN\(options.keepsNamespaceAccess ? "" : " once privileges are dropped"))"
        }
        var modes: UInt32 = 0
        for mode in allowedModes { modes |= 1 << Self.shimMode(mode).rawValue }

        let bounds = try Self.validated(options.rttBucketBounds, "RTT")
        guard options.rttPeerGroups.count <= Int(FS_PEER_GROUPS_MAX) else {
            throw BPFError(
                step: "configure RTT peer groups", errno: EINVAL,
                message: "\(options.rttPeerGroups.count) groups, at most \(FS_PEER_GROUPS_MAX)")
        }
        var peerNetworks: [fs_peer_group_network] = []
        for (index, group) in options.rttPeerGroups.enumerated() {
            for network in group.networks {
                var entry = fs_peer_group_network()
                entry.network.prefix_len = UInt32(network.prefixLength)
                withUnsafeMutableBytes(of: &entry.network.addr) { target in
                    network.address.withNetworkBytes { target.copyMemory(from: $0) }
                }
                entry.group = UInt32(index)
                peerNetworks.append(entry)
            }
        }
        let durationBounds = try Self.validated(options.flowDurationBucketBounds, "flow duration")
        let bytesBounds = try Self.validated(options.flowBytesBucketBounds, "flow bytes")
        let boundsNanoseconds = bounds.map { UInt64(($0 * 1e9).rounded()) }
        let durationNanoseconds = durationBounds.map { UInt64(($0 * 1e9).rounded()) }
        let bytesIntegers = bytesBounds.map { UInt64($0.rounded(.down)) }

        var agent: OpaquePointer?
        var error = fs_error()
        let result = withOptionalCString(options.cgroupPath) { cgroupPath in
            var cOptions = fs_options()
            cOptions.map_entries = options.mapEntries
            cOptions.min_update_interval_ns = options.minUpdateInterval
            cOptions.cgroup_path = cgroupPath
            cOptions.rcv_variants = variants
            cOptions.use_iterator = 1
            cOptions.live_snapshot = options.refreshBeforeSnapshot ? 1 : 0
            cOptions.rtt_sample_every = options.rttSampleEvery
            cOptions.ring_buffer_bytes = options.ringBufferBytes
            cOptions.modes = modes
            cOptions.service_port_limit = bounds.isEmpty ? 0 : options.rttServicePorts
            cOptions.peer_group_count = bounds.isEmpty ? 0 : UInt32(options.rttPeerGroups.count)
            cOptions.peer_network_count = UInt32(peerNetworks.count)
            // fs_agent_open copies the bounds: the pointers only need to live through the call.
            return boundsNanoseconds.withUnsafeBufferPointer { rtt in
                durationNanoseconds.withUnsafeBufferPointer { duration in
                    bytesIntegers.withUnsafeBufferPointer { bytes in
                        cOptions.rtt_bounds_ns = rtt.baseAddress
                        cOptions.rtt_bound_count = UInt32(rtt.count)
                        cOptions.duration_bounds_ns = duration.baseAddress
                        cOptions.duration_bound_count = UInt32(duration.count)
                        cOptions.bytes_bounds = bytes.baseAddress
                        cOptions.bytes_bound_count = UInt32(bytes.count)
                        return peerNetworks.withUnsafeBufferPointer { networks in
                            cOptions.peer_networks = networks.baseAddress
                            return fs_agent_open(&cOptions, &agent, &error)
                        }
                    }
                }
            }
        }
        guard result == 0, let agent else { throw BPFError(error) }

        self.agent = agent
        self.capacity = Int(fs_agent_map_capacity(agent))
        self.keys = .allocate(capacity: capacity)
        self.values = .allocate(capacity: capacity)
        self.refreshBeforeSnapshot = options.refreshBeforeSnapshot
        self.rttBounds = bounds
        self.servicePortLimit = bounds.isEmpty ? 0 : Int(options.rttServicePorts)
        self.peerGroupNames = bounds.isEmpty ? [] : options.rttPeerGroups.map(\.name)
        self.durationBounds = durationBounds
        self.bytesBounds = bytesBounds.map { $0.rounded(.down) }
        let hooks = Self.hookReport(agent)
        let mode = Self.mode(fs_agent_mode(agent))
        self.mode = mode
        self.info = SourceInfo(
            kind: .bpf, hooks: hooks,
            reason: Self.whyNotBetter(than: mode, hooks: hooks, asked: options, note: modeNote), mode: mode,
            missingHooks: Self.missingHooks(mode: mode, hooks: hooks))
        self.refreshesTracked = fs_agent_attached_hooks(agent) & FS_HOOK_ITER_OWNED.rawValue != 0
        self.countsRetransmits =
            fs_agent_attached_hooks(agent) & (FS_HOOK_RETRANS_TP_BTF.rawValue | FS_HOOK_RETRANS_RAW_TP.rawValue) != 0
        let closedFlows = ClosedFlowAggregates(servicePorts: .system())
        self.closedFlows = closedFlows
        self.closedFlowReader = try ClosedFlowCollector(agent: agent, into: closedFlows, logger: logger)
        // The shim seeded our own namespace; flows that already exist in the others (containers)
        // have no sockops callbacks enabled and may be idle: seed them too.
        if info.hooks.contains(where: { $0.name == "iter_tcp" && $0.attached }) {
            refresh(agent, namespaces: Set(namespaces.all()))
        }
        for hook in info.hooks {
            if hook.attached {
                logger.info("attached \(hook.name) via \(hook.variant)")
            } else {
                logger.warning("\(hook.name) via \(hook.variant) not attached: \(hook.error ?? "unknown")")
            }
        }
        if fs_agent_mounted_tracefs(agent) != 0 {
            logger.notice("mounted tracefs at /sys/kernel/tracing for a classic tracepoint; it stays mounted")
        }
        logger.info("snapshot mode: \(mode)\(info.reason.map { " (\($0))" } ?? "")")
        for hook in info.missingHooks {
            logger.error(
                """
                \(hook) attached in no variant: in \(mode) mode the flows it follows keep the values of their \
                last other event (flowstat_source_hook_missing says so); see the README's kernel support
                """)
        }
    }

    private static func shimMode(_ mode: BPFMode) -> fs_mode {
        switch mode {
        case .liveStorageIterator: FS_MODE_LIVE_STORAGE_ITER
        case .liveTCPIterator: FS_MODE_LIVE_TCP_ITER
        case .event: FS_MODE_EVENT
        }
    }

    private static func mode(_ mode: fs_mode) -> BPFMode {
        switch mode {
        case FS_MODE_LIVE_STORAGE_ITER: .liveStorageIterator
        case FS_MODE_LIVE_TCP_ITER: .liveTCPIterator
        default: .event
        }
    }

    /// Why the shim runs a worse mode than the best one asked for: the better modes' iterator
    /// errors, for the log and the `reason` label. Nil when it runs the best.
    private static func whyNotBetter(
        than mode: BPFMode, hooks: [HookStatus], asked options: BPFOptions, note: String?
    ) -> String? {
        guard options.refreshBeforeSnapshot else { return mode == .event ? "flowstat.bpf.refresh off" : nil }
        let better = BPFMode.allCases.prefix { $0 != mode }.filter(options.modes.contains)
        let reasons = better.compactMap { candidate -> String? in
            if candidate == .liveTCPIterator, let note { return note }
            let iterator = candidate == .liveStorageIterator ? "iter_snapshot" : "iter_tcp_snapshot"
            if let failed = hooks.first(where: { $0.name == iterator && !$0.attached }) {
                return "\(candidate): \(failed.error ?? "not attached")"
            }
            if candidate == .liveStorageIterator,
                let receive = hooks.first(where: { $0.name == "tcp_rcv_established" && $0.attached }),
                ["raw_tp", "tracepoint"].contains(receive.variant)
            {
                return "\(candidate): tcp_rcv_established via \(receive.variant) has no typed socket"
            }
            return nil
        }
        return reasons.isEmpty ? nil : reasons.joined(separator: "; ")
    }

    /// Hooks that attached in no variant, of those the agent needs. In live modes the
    /// snapshot reads every socket itself; in event mode flows sockops does not follow
    /// (opened before start-up) change only through tcp_rcv_established. Every mode needs
    /// tcp_retransmit_skb for the host-wide retransmit counts.
    private static func missingHooks(mode: BPFMode, hooks: [HookStatus]) -> [String] {
        let attached = Set(hooks.filter(\.attached).map(\.name))
        let needed = mode == .event ? ["tcp_rcv_established", "tcp_retransmit_skb"] : ["tcp_retransmit_skb"]
        return needed.filter { !attached.contains($0) }
    }

    deinit {
        closedFlowReader.stop()
        if let agent { fs_agent_close(agent) }
        keys.deallocate()
        values.deallocate()
    }

    public var isServing: Bool {
        serving.withLockedValue { $0 }
    }

    public func recycle(_ flows: inout [FlowSample]) {
        // Event mode copies the flow map in batches of its own: nothing would fill a spare.
        guard mode != .event else { return }
        flows.removeAll(keepingCapacity: true)
        lock.withLock { swap(&spareFlows, &flows) }
    }

    public func shutdown() {
        serving.withLockedValue { $0 = false }
        closedFlowReader.stop()  // before the agent closes: its thread reads the ring buffer
        lock.withLock {
            if let agent { fs_agent_close(agent) }
            agent = nil
        }
    }

    public func snapshot() throws -> FlowSnapshot {
        try snapshot(needing: [.timeLimits, .lossDetail, .rtoTotals, .detail])
    }

    /// A live snapshot that needs none of the `detail`, `lossDetail` and `rtoTotals` fields is
    /// taken lean: the iterator leaves them out and reads fewer of each socket's cache lines.
    public func snapshot(needing needed: FlowFields) throws -> FlowSnapshot {
        let lean = needed.isDisjoint(with: [.detail, .lossDetail, .rtoTotals])
        return try lock.withLock {
            guard let agent else {
                throw BPFError(step: "read flow map", errno: EBADF, message: "the BPF programs are detached")
            }
            var snapshot = try readRefreshed(agent, lean: lean)
            // Once per snapshot: a batch taken by a read that is then redone would be lost.
            snapshot.closedSinceLastSnapshot = closedFlows?.drain()
            return snapshot
        }
    }

    /// Refreshes the namespaces with flows, if asked to, and reads the map; called with
    /// `lock` held.
    private func readRefreshed(_ agent: OpaquePointer, lean: Bool) throws -> FlowSnapshot {
        if mode != .event {
            return try readTracked(agent, lean: lean)
        }
        guard refreshBeforeSnapshot else { return try read(agent) }
        if refreshesTracked {
            // One pass over the tracked sockets of every namespace.
            var error = fs_error()
            if fs_agent_refresh_tracked(agent, &error) != 0 {
                logger.debug("refresh failed: \(BPFError(error))")
            }
            return try read(agent)
        }

        refresh(agent, namespaces: activeNamespaces.union([namespaces.own]))
        var snapshot = try read(agent)
        var seen = Set(snapshot.flows.lazy.map(\.key.netns))
        // A namespace whose flows appeared since the last snapshot was not refreshed yet.
        let fresh = seen.subtracting(activeNamespaces).subtracting([namespaces.own])
        if !fresh.isEmpty {
            refresh(agent, namespaces: fresh)
            snapshot = try read(agent)
            seen = Set(snapshot.flows.lazy.map(\.key.netns))
        }
        activeNamespaces = seen
        return snapshot
    }

    /// Copies the flow map (batched) and converts it; called with `lock` held.
    private func read(_ agent: OpaquePointer) throws -> FlowSnapshot {
        var count: UInt32 = 0
        var error = fs_error()
        guard fs_agent_read_flows(agent, keys, values, UInt32(capacity), &count, &error) == 0 else {
            throw BPFError(error)
        }
        var flows: [FlowSample] = []
        flows.reserveCapacity(Int(count))
        for index in 0..<Int(count) {
            if let sample = FlowSample(key: keys[index], stats: values[index]) { flows.append(sample) }
        }
        let (durations, bytes) = try readClosedHistograms(agent)
        return FlowSnapshot(
            flows: flows, mapEntries: Int(count), mapCapacity: capacity,
            kernelEvents: try readEvents(agent, liveEntries: UInt64(count)),
            rttHistogram: try readRTTHistogram(agent),
            flowDurationHistogram: durations, flowBytesHistogram: bytes,
            serviceRTTHistograms: try readServiceRTTHistograms(agent),
            peerGroupRTTHistograms: try readPeerGroupRTTHistograms(agent))
    }

    /// One pass of the snapshot iterator: every tracked socket as it is now; called with
    /// `lock` held. Records are converted as the kernel hands them over, a batch at a time,
    /// so no copy of the whole snapshot's records is held. Flows past the capacity count as
    /// evictions, once per snapshot, so that the alert on evictions still says "raise
    /// --map-entries".
    private func readTracked(_ agent: OpaquePointer, lean: Bool) throws -> FlowSnapshot {
        var count: UInt32 = 0
        var missed: UInt32 = 0
        var error = fs_error()
        let visited = try namespacesToRead(agent)
        var errors = [Int32](repeating: 0, count: visited.count)
        let fds = visited.map(\.fd)
        defer { for fd in fds where fd >= 0 { close(fd) } }
        let collector = SnapshotCollector(reusing: &spareFlows, expecting: lastSnapshotCount)
        let read = withExtendedLifetime(collector) {
            fs_agent_read_tracked(
                agent, fds, &errors, UInt32(fds.count), lean,
                { context, records, count in
                    guard let context, let records else { return }
                    Unmanaged<SnapshotCollector>.fromOpaque(context).takeUnretainedValue()
                        .take(UnsafeBufferPointer(start: records, count: Int(count)))
                }, Unmanaged.passUnretained(collector).toOpaque(), &count, &missed, &error)
        }
        guard read == 0 else { throw BPFError(error) }
        lastSnapshotCount = Int(count)
        if mode == .liveTCPIterator {
            noteNamespaceResults(visited, errors: errors, withFlows: collector.namespaces, missed: missed)
        }
        if missed > 0, !warnedSnapshotFull {
            warnedSnapshotFull = true
            logger.warning(
                "the snapshot has room for \(count) flows and left out \(missed) (logged once): raise flowstat.bpf.mapEntries"
            )
        }
        leftOut &+= UInt64(missed)
        let (durations, bytes) = try readClosedHistograms(agent)
        return FlowSnapshot(
            flows: collector.flows, mapEntries: Int(count), mapCapacity: capacity,
            kernelEvents: try readEvents(agent, liveEntries: UInt64(count), evictions: leftOut),
            rttHistogram: try readRTTHistogram(agent),
            flowDurationHistogram: durations, flowBytesHistogram: bytes,
            serviceRTTHistograms: try readServiceRTTHistograms(agent),
            peerGroupRTTHistograms: try readPeerGroupRTTHistograms(agent))
    }

    /// Live mode through iter/tcp: the namespaces to read, each as an open file (-1: our own):
    /// ours, those that had flows at the last snapshot, and those where flows became tracked
    /// since. Other modes read every namespace in one run and need none.
    private func namespacesToRead(_ agent: OpaquePointer) throws -> [(inode: UInt32, fd: Int32)] {
        guard mode == .liveTCPIterator else { return [] }
        var inodes = [UInt32](repeating: 0, count: 4096)
        var taken: UInt32 = 0
        var error = fs_error()
        guard fs_agent_take_new_namespaces(agent, &inodes, UInt32(inodes.count), &taken, &error) == 0 else {
            throw BPFError(error)
        }
        var visit: [(inode: UInt32, fd: Int32)] = [(namespaces.own, -1)]
        let new = Set(inodes.prefix(Int(taken))).union(unresolvedNamespaces.keys)
        for inode in activeNamespaces.union(new) where inode != namespaces.own {
            guard canEnterNamespaces() else { break }
            if let fd = namespaces.open(inode, fresh: new.contains(inode)) {
                visit.append((inode, fd))
                unresolvedNamespaces[inode] = nil
            } else if new.contains(inode) {
                // Not in /proc or /run/netns yet, or gone already: a few more tries, then drop it.
                let tries = (unresolvedNamespaces[inode] ?? 0) + 1
                unresolvedNamespaces[inode] = tries < 5 ? tries : nil
            }
        }
        return visit
    }

    /// Remembers the namespaces that had flows for the next snapshot; a namespace we may not
    /// enter stops the visits to others (it needs CAP_SYS_ADMIN, which `--run-as` drops).
    private func noteNamespaceResults(
        _ visited: [(inode: UInt32, fd: Int32)], errors: [Int32], withFlows: Set<UInt32>, missed: UInt32
    ) {
        var active = withFlows
        // Flows were left out: a namespace without records may still have flows.
        if missed > 0 { active.formUnion(visited.map(\.inode)) }
        for (namespace, error) in zip(visited, errors) where error != 0 {
            if error == -EPERM, namespace.fd >= 0 {
                stopEnteringNamespaces(because: "entering one failed with EPERM")
            } else {
                // Transient (the namespace is going away): try again next time while it exists.
                active.insert(namespace.inode)
                logger.debug("snapshot of netns \(namespace.inode) failed: \(String(cString: strerror(-error)))")
            }
        }
        activeNamespaces = active
    }

    private func readClosedHistograms(_ agent: OpaquePointer) throws -> (duration: Histogram?, bytes: Histogram?) {
        var sums = fs_closed_histograms()
        var error = fs_error()
        guard fs_agent_read_closed_histograms(agent, &sums, &error) == 0 else { throw BPFError(error) }
        func counts<Buckets>(_ buckets: Buckets, _ bounds: [Double]) -> [UInt64] {
            withUnsafeBytes(of: buckets) { Array($0.bindMemory(to: UInt64.self).prefix(bounds.count + 1)) }
        }
        let duration =
            durationBounds.isEmpty
            ? nil
            : Histogram(
                bounds: durationBounds, counts: counts(sums.duration_buckets, durationBounds),
                sum: Double(sums.duration_sum_ns) / 1e9)
        let bytes =
            bytesBounds.isEmpty
            ? nil
            : Histogram(
                bounds: bytesBounds, counts: counts(sums.bytes_buckets, bytesBounds), sum: Double(sums.bytes_sum))
        return (duration, bytes)
    }

    private static func validated(_ bounds: [Double], _ what: String) throws -> [Double] {
        guard bounds.count <= Int(FS_HIST_BOUNDS_MAX), zip(bounds, bounds.dropFirst()).allSatisfy({ $0 < $1 }),
            bounds.allSatisfy({ $0 > 0 && $0.isFinite })
        else {
            throw BPFError(
                step: "configure \(what) histogram", errno: EINVAL,
                message: "bounds must be positive, increasing and at most \(FS_HIST_BOUNDS_MAX): \(bounds)")
        }
        return bounds
    }

    private func readRTTHistogram(_ agent: OpaquePointer) throws -> Histogram? {
        guard !rttBounds.isEmpty else { return nil }
        var counts = [UInt64](repeating: 0, count: rttBounds.count + 1)
        var sumMicroseconds: UInt64 = 0
        var error = fs_error()
        guard fs_agent_read_rtt_histogram(agent, &counts, UInt32(rttBounds.count), &sumMicroseconds, &error) == 0
        else { throw BPFError(error) }
        return Histogram(bounds: rttBounds, counts: counts, sum: Double(sumMicroseconds) / 1e6)
    }

    /// The per-service RTT histograms, by port (0: every port past the limit); nil when off.
    private func readServiceRTTHistograms(_ agent: OpaquePointer) throws -> [UInt16: Histogram]? {
        guard servicePortLimit > 0 else { return nil }
        let capacity = servicePortLimit + 1
        let width = rttBounds.count + 1
        var ports = [UInt32](repeating: 0, count: capacity)
        var counts = [UInt64](repeating: 0, count: capacity * width)
        var sums = [UInt64](repeating: 0, count: capacity)
        var count: UInt32 = 0
        var error = fs_error()
        guard
            fs_agent_read_service_rtt(
                agent, &ports, &counts, &sums, UInt32(capacity), UInt32(rttBounds.count), &count, &error) == 0
        else { throw BPFError(error) }
        var histograms: [UInt16: Histogram] = [:]
        for index in 0..<Int(count) {
            histograms[UInt16(truncatingIfNeeded: ports[index])] = Histogram(
                bounds: rttBounds, counts: Array(counts[index * width..<(index + 1) * width]),
                sum: Double(sums[index]) / 1e6)
        }
        return histograms
    }

    /// The per-peer-group RTT histograms, by group name; nil without groups.
    private func readPeerGroupRTTHistograms(_ agent: OpaquePointer) throws -> [String: Histogram]? {
        guard !peerGroupNames.isEmpty else { return nil }
        let width = rttBounds.count + 1
        var counts = [UInt64](repeating: 0, count: peerGroupNames.count * width)
        var sums = [UInt64](repeating: 0, count: peerGroupNames.count)
        var error = fs_error()
        guard
            fs_agent_read_peer_group_rtt(
                agent, &counts, &sums, UInt32(peerGroupNames.count), UInt32(rttBounds.count), &error) == 0
        else { throw BPFError(error) }
        var histograms: [String: Histogram] = [:]
        for (index, name) in peerGroupNames.enumerated() {
            histograms[name] = Histogram(
                bounds: rttBounds, counts: Array(counts[index * width..<(index + 1) * width]),
                sum: Double(sums[index]) / 1e6)
        }
        return histograms
    }

    /// The programs' counters. The kernel does not count LRU evictions, so they are derived:
    /// every entry ever inserted is either live, removed at close, or evicted. Inserts and
    /// removals are read a moment apart from the map, so the estimate is held monotone.
    /// In live mode there is no LRU map: the caller passes what stands for evictions.
    private func readEvents(
        _ agent: OpaquePointer, liveEntries: UInt64, evictions knownEvictions: UInt64? = nil
    ) throws -> KernelEventCounts {
        var counters = [UInt64](repeating: 0, count: Int(FS_CTR_MAX.rawValue))
        var error = fs_error()
        guard fs_agent_read_counters(agent, &counters, &error) == 0 else { throw BPFError(error) }
        func counter(_ which: fs_counter) -> UInt64 { counters[Int(which.rawValue)] }
        let accounted = counter(FS_CTR_ENTRIES_REMOVED) &+ liveEntries
        let inserted = counter(FS_CTR_INSERTS)
        evictions = knownEvictions ?? max(evictions, inserted > accounted ? inserted - accounted : 0)
        return KernelEventCounts(
            updates: counter(FS_CTR_UPDATES), updatesSkipped: counter(FS_CTR_UPDATES_SKIPPED),
            insertFailures: counter(FS_CTR_INSERTS_FAILED), evictions: evictions,
            openedActive: counter(FS_CTR_OPENED_ACTIVE), openedPassive: counter(FS_CTR_OPENED_PASSIVE),
            closed: counter(FS_CTR_CLOSED), eventsLost: counter(FS_CTR_EVENTS_LOST),
            retransmits: countsRetransmits
                ? RetransmitCounts(
                    fast: counter(FS_CTR_RETRANS_FAST), rto: counter(FS_CTR_RETRANS_RTO),
                    lossProbe: counter(FS_CTR_RETRANS_LOSS_PROBE), rtoTimeouts: counter(FS_CTR_RTO_TIMEOUTS))
                : nil)
    }

    /// Rewrites the flows of these namespaces from their sockets' current state. Failures
    /// only cost freshness (the event-recorded values stay), so they are logged, not thrown.
    private func refresh(_ agent: OpaquePointer, namespaces inodes: Set<UInt32>) {
        var error = fs_error()
        for inode in inodes {
            var fd: Int32 = -1
            if inode != namespaces.own {
                guard canEnterNamespaces(), let opened = namespaces.open(inode) else { continue }
                fd = opened
            }
            if fs_agent_refresh(agent, fd, &error) != 0 {
                if fd >= 0, error.code == -EPERM {
                    stopEnteringNamespaces(because: "entering one failed with EPERM")
                } else {
                    logger.debug("refresh of netns \(inode) failed: \(BPFError(error))")
                }
            }
            if fd >= 0 { close(fd) }
        }
    }

    /// Whether the refresh may still visit other network namespaces: that takes CAP_SYS_ADMIN
    /// (setns), which an agent that dropped privileges or got only the capabilities to load
    /// lacks. Checked per snapshot (one capget) because `--run-as` drops it after start-up.
    private func canEnterNamespaces() -> Bool {
        guard entersNamespaces else { return false }
        if !CapabilitySet.effective().contains(.sysAdmin) {
            stopEnteringNamespaces(because: "the agent lacks CAP_SYS_ADMIN")
        }
        return entersNamespaces
    }

    /// Turns the refresh of other namespaces off for good, with one log line (not one per scrape).
    private func stopEnteringNamespaces(because reason: String) {
        guard entersNamespaces else { return }
        entersNamespaces = false
        if mode == .liveTCPIterator {
            logger.warning(
                """
                reading only this network namespace from now on: \(reason); flows of other namespaces \
                (containers) leave the output (this kernel refuses the storage-map iterator, which reads \
                every namespace without entering it)
                """)
        } else {
            logger.notice(
                """
                refreshing only this network namespace from now on: \(reason); flows of other namespaces \
                (containers) are still recorded by the event hooks, with the values of their last event
                """)
        }
    }

    /// Reads the kernel's counters once, without side effects: for checking that the maps can
    /// still be read after the process changed its privileges.
    public func checkReadable() throws {
        try lock.withLock {
            guard let agent else {
                throw BPFError(step: "read counters", errno: EBADF, message: "the BPF programs are detached")
            }
            var counters = [UInt64](repeating: 0, count: Int(FS_CTR_MAX.rawValue))
            var error = fs_error()
            guard fs_agent_read_counters(agent, &counters, &error) == 0 else { throw BPFError(error) }
        }
    }

    private static let receiveVariants: [(String, fs_hook)] = [
        ("fentry", FS_HOOK_RCV_FENTRY), ("tp_btf", FS_HOOK_RCV_TP_BTF), ("raw_tp", FS_HOOK_RCV_RAW_TP),
        ("tracepoint", FS_HOOK_RCV_TRACEPOINT),
    ]

    /// Every hook variant the shim tried, in its order, attached or with its errno.
    private static func hookReport(_ agent: OpaquePointer) -> [HookStatus] {
        let hooks: [(fs_hook, String, String)] = [
            (FS_HOOK_STATE_TP_BTF, "inet_sock_set_state", "tp_btf"),
            (FS_HOOK_STATE_RAW_TP, "inet_sock_set_state", "raw_tp"),
            (FS_HOOK_STATE_TRACEPOINT, "inet_sock_set_state", "tracepoint"),
            (FS_HOOK_SOCKOPS, "sockops", "cgroup_sockops"),
            (FS_HOOK_RCV_FENTRY, "tcp_rcv_established", "fentry"),
            (FS_HOOK_RCV_TP_BTF, "tcp_rcv_established", "tp_btf"),
            (FS_HOOK_RCV_RAW_TP, "tcp_rcv_established", "raw_tp"),
            (FS_HOOK_RCV_TRACEPOINT, "tcp_rcv_established", "tracepoint"),
            (FS_HOOK_ITER_TCP, "iter_tcp", "iter"),
            (FS_HOOK_ITER_OWNED, "iter_sk_storage", "iter"),
            (FS_HOOK_ITER_SNAPSHOT, "iter_snapshot", "iter"),
            (FS_HOOK_ITER_TCP_SNAPSHOT, "iter_tcp_snapshot", "iter"),
            (FS_HOOK_RETRANS_TP_BTF, "tcp_retransmit_skb", "tp_btf"),
            (FS_HOOK_RETRANS_RAW_TP, "tcp_retransmit_skb", "raw_tp"),
        ]
        let attached = fs_agent_attached_hooks(agent)
        return hooks.compactMap { hook, name, variant in
            let error = fs_agent_hook_error(agent, hook.rawValue)
            let isAttached = attached & hook.rawValue != 0
            guard isAttached || error != 0 else { return nil }  // never tried
            return HookStatus(
                name: name, variant: variant, attached: isAttached,
                error: error == 0 ? nil : String(cString: strerror(-error)))
        }
    }
}

extension FlowSample {
    /// Converts one map entry to base units; nil for an address family flowstat does not know.
    init?(key: fs_flow_key, stats: fs_flow_stats) {
        guard let family = AddressFamily(rawValue: key.family) else { return nil }
        let flowKey = FlowKey(
            family: family,
            local: IPAddress(bytes: key.saddr), localPort: key.sport,
            remote: IPAddress(bytes: key.daddr), remotePort: key.dport,
            netns: key.netns)
        // As tcp_get_info() computes tcpi_delivery_rate: delivered segments times MSS over the
        // sampling interval, in 64-bit integers (wrapping, and the quotient truncated), so the
        // value is the kernel's to the byte (and prints as an integer, the encoder's fast path).
        var deliveryRate = 0.0
        if stats.rate_delivered != 0, stats.rate_interval_us != 0 {
            deliveryRate = Double(
                UInt64(stats.rate_delivered) &* UInt64(stats.mss_cache) &* 1_000_000 / UInt64(stats.rate_interval_us))
        }
        // The kernel's "no sample yet" minimum RTT is ~0; report it as 0 like a fresh srtt.
        let minRTT = stats.min_rtt_us == UInt32.max ? 0 : Double(stats.min_rtt_us) / 1e6
        self.init(
            key: flowKey,
            state: stats.state,
            rtt: Double(stats.srtt_us) / 1e6,
            rttVariance: Double(stats.rttvar_us) / 1e6,
            minRTT: minRTT,
            cwnd: stats.snd_cwnd,
            ssthresh: stats.snd_ssthresh,
            deliveryRate: deliveryRate,
            dataSegmentsIn: UInt64(stats.data_segs_in),
            dataSegmentsOut: UInt64(stats.data_segs_out),
            bytesAcked: stats.bytes_acked,
            bytesReceived: stats.bytes_received,
            retransmits: UInt64(stats.total_retrans),
            direction: FlowDirection(rawValue: stats.direction) ?? .unknown,
            pid: stats.pid,
            comm: withUnsafeBytes(of: stats.comm) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            },
            lastUpdate: stats.last_update_ns, cgroupID: stats.cgroup_id)
        firstSeen = stats.first_seen_ns
        fields = FlowFields(rawValue: stats.has)
        busyTime = Double(stats.busy_us) / 1e6
        receiverLimitedTime = Double(stats.rwnd_limited_us) / 1e6
        senderBufferLimitedTime = Double(stats.sndbuf_limited_us) / 1e6
        deliveryRateAppLimited = stats.delivery_rate_app_limited != 0
        zeroWindowProbes = stats.probes
        notsentBytes = stats.notsent_bytes
        sendWindow = stats.snd_wnd
        receiveRTT = Double(stats.rcv_rtt_us) / 1e6
        lostSegments = stats.lost_out
        retransmitsInFlight = stats.retrans_out
        reorderingEvents = stats.reord_seen
        dsackDuplicates = stats.dsack_dups
        outOfOrderPackets = stats.rcv_ooopack
        rtoTimeouts = UInt32(stats.total_rto)
        rtoRecoveries = UInt32(stats.total_rto_recoveries)
        rtoTime = Double(stats.total_rto_time_ms) / 1e3
        // Counted by the kernel in the jiffies the busy time is counted in: it never falls.
        applicationTime = Double(stats.application_us) / 1e6
    }
}

extension BPFError {
    init(_ error: fs_error) {
        let shim = ShimError(error)
        self.init(step: shim.step, errno: shim.errno, message: shim.message)
    }
}

private func withOptionalCString<Result>(_ text: String?, _ body: (UnsafePointer<CChar>?) -> Result) -> Result {
    guard let text else { return body(nil) }
    return text.withCString { body($0) }
}

/// libbpf's messages, through a C function pointer (no context: hence a global logger).
private let libbpfLogger = Logger(label: "flowstat.libbpf")

private func forwardLibbpfLog(level: Int32, line: UnsafePointer<CChar>?) {
    guard let line else { return }
    let text = String(cString: line)
    switch level {
    case 0: libbpfLogger.debug("\(text)")  // failures are reported through fs_error
    default: libbpfLogger.trace("\(text)")
    }
}

/// A named list of networks whose flows' RTT samples the kernel also counts in a histogram of
/// their own (`tcp_peer_group_rtt_seconds{peer_group=name}`): e.g. the database subnets.
public struct RTTPeerGroup: Sendable, Hashable {
    /// The `peer_group` label value.
    public var name: String
    /// A flow is in the group when its remote address is in one of these (longest prefix
    /// over all groups wins).
    public var networks: [IPNetwork]

    public init(name: String, networks: [IPNetwork]) {
        self.name = name
        self.networks = networks
    }
}

/// Gathers a live snapshot's flows as the C side hands over batches of records, and the
/// network namespaces they are in (iter/tcp visits those again next time).
private final class SnapshotCollector {
    private(set) var flows: [FlowSample] = []
    private(set) var namespaces: Set<UInt32> = []
    private var lastNamespace: UInt32?

    /// Fills `spare`'s memory (taking it), with room for the last snapshot's flows and a few
    /// more: growing past it would double the array.
    init(reusing spare: inout [FlowSample], expecting count: Int) {
        swap(&flows, &spare)
        flows.removeAll(keepingCapacity: true)
        flows.reserveCapacity(count + count / 16)
    }

    func take(_ records: UnsafeBufferPointer<fs_flow_record>) {
        for record in records {
            if let sample = FlowSample(key: record.key, stats: record.stats) { flows.append(sample) }
            // Records come namespace by namespace: one set insert per run, not per flow.
            if record.key.netns != lastNamespace {
                lastNamespace = record.key.netns
                namespaces.insert(record.key.netns)
            }
        }
    }
}
