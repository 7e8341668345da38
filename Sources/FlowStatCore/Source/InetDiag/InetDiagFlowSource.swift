// SPDX-License-Identifier: Apache-2.0

import CFlowStat
import Logging
import NIOConcurrencyHelpers

#if canImport(Glibc)
import Glibc
#endif

/// A step of an inet_diag dump failed (as the C shim reports it: step, errno, message).
public struct InetDiagError: Error, CustomStringConvertible, Sendable {
    /// What flowstat was doing, e.g. "inet_diag dump of IPv4 TCP sockets".
    public var step: String
    /// The errno (positive).
    public var errno: Int32
    /// strerror and detail.
    public var message: String

    public init(step: String, errno: Int32, message: String) {
        self.step = step
        self.errno = errno
        self.message = message
    }

    init(_ error: fs_error) {
        let shim = ShimError(error)
        self.init(step: shim.step, errno: shim.errno, message: shim.message)
    }

    public var description: String {
        var text = "\(step) failed: \(message)"
        if errno == EPROTONOSUPPORT || errno == ENOENT {
            text +=
                ". Fix: the kernel needs sock_diag and inet_diag (CONFIG_INET_DIAG, CONFIG_INET_TCP_DIAG; "
                + "modprobe tcp_diag)"
        }
        return text
    }
}

/// Which network namespaces an `InetDiagFlowSource` reads.
public enum NamespaceScope: String, Sendable {
    /// Every network namespace with a process or an `ip netns` name, if the agent may enter
    /// them (CAP_SYS_ADMIN), else its own only.
    case auto
    /// The agent's own namespace only.
    case own
}

/// Flows from an inet_diag netlink dump of the kernel's TCP sockets at each snapshot: the
/// fallback where the BPF programs cannot load (no privileges, no BTF, old kernel).
///
/// Needs no privileges for the agent's own network namespace; with CAP_SYS_ADMIN (to enter
/// namespaces) it also reads every other namespace it finds a path to (`/run/netns`,
/// `/proc/PID/ns/net`). It gives the same per-flow values as the BPF source, read from the
/// kernel's `tcp_info` at the moment of the snapshot, but nothing that needs events: no RTT
/// histogram, no counts of flows opened and closed, no flow that lived between two scrapes.
/// A snapshot walks every socket, so it costs more than the BPF source's map copy at scale.
public final class InetDiagFlowSource: FlowSource, @unchecked Sendable {
    // @unchecked: every mutable member is only touched with `lock` held.
    private let lock = NIOLock()
    private var keys: UnsafeMutablePointer<fs_flow_key>
    private var values: UnsafeMutablePointer<fs_flow_stats>
    private var capacity: Int
    private var namespaces = NetworkNamespaces()
    /// Whether to read namespaces other than our own; off for good after entering one fails
    /// with EPERM (a capability the process lost or never had).
    private var readOtherNamespaces: Bool
    /// Other namespaces to read, and when that list was made (rescanned every 5 s).
    private var otherNamespaces: [UInt32] = []
    private var otherNamespacesScanned: UInt64 = 0
    /// Each flow's first dump and application seconds, for the `application` share of
    /// `tcp_flow_limited_seconds_total` (the flow's age less its busy time).
    private var history = DumpedFlowHistory()
    private let logger: Logger

    public let info: SourceInfo

    /// Opens the source and checks that a dump of the agent's own namespace works.
    ///
    /// - Parameter reason: why this source runs instead of BPF (shown in `flowstat_source_info`
    ///   and on the landing page); nil when it was asked for.
    /// - Parameter initialCapacity: flows the buffers hold at first; they grow to fit the
    ///   dumps (by a quarter more than the largest seen), so this only saves early regrowth.
    public init(
        namespaces scope: NamespaceScope = .auto, reason: String? = nil, initialCapacity: Int = 4_096,
        logger: Logger = Logger(label: "flowstat.inet_diag")
    ) throws {
        self.logger = logger
        self.capacity = max(1, initialCapacity)
        self.keys = .allocate(capacity: capacity)
        self.values = .allocate(capacity: capacity)
        self.readOtherNamespaces = scope == .auto && Self.hasCapability(21)  // CAP_SYS_ADMIN
        self.info = SourceInfo(kind: .inetDiag, reason: reason)
        _ = try lock.withLock { try dumpAll() }
        logger.info(
            "reading flows with inet_diag at each scrape",
            metadata: ["netns": "\(readOtherNamespaces ? "all (CAP_SYS_ADMIN)" : "own only")"])
    }

    deinit {
        keys.deallocate()
        values.deallocate()
    }

    public func snapshot() throws -> FlowSnapshot {
        try lock.withLock {
            let count = try dumpAll()
            var flows: [FlowSample] = []
            flows.reserveCapacity(count)
            for index in 0..<count {
                guard let sample = FlowSample(key: keys[index], stats: values[index]) else { continue }
                flows.append(sample)
            }
            history.fill(&flows)
            return FlowSnapshot(
                flows: flows, mapEntries: flows.count, mapCapacity: 0,
                kernelEvents: nil, rttHistogram: nil)
        }
    }

    /// Dumps our namespace, then the others if allowed, into the buffers; returns how many
    /// records they hold. Called with `lock` held.
    private func dumpAll() throws -> Int {
        var stored = try dump(fd: -1, inode: namespaces.own, after: 0)
        guard readOtherNamespaces else { return stored }
        let now = SystemClock.monotonicNanoseconds()
        if otherNamespacesScanned == 0 || now &- otherNamespacesScanned >= 5_000_000_000 {
            otherNamespaces = namespaces.all()
            otherNamespacesScanned = now
        }
        for inode in otherNamespaces {
            guard let fd = namespaces.open(inode) else { continue }  // gone since the scan
            defer { close(fd) }
            do {
                stored = try dump(fd: fd, inode: inode, after: stored)
            } catch let error as InetDiagError where error.errno == EPERM {
                logger.warning("cannot enter other network namespaces, reading only our own: \(error)")
                readOtherNamespaces = false
                return stored
            } catch {
                // One namespace's failure (e.g. it vanished) must not cost the others.
                logger.debug("inet_diag dump of netns \(inode) failed: \(error)")
            }
        }
        return stored
    }

    /// Appends one namespace's flows after the first `stored` records, growing the buffers
    /// and dumping again when they are too small. Returns the new total.
    private func dump(fd: Int32, inode: UInt32, after stored: Int) throws -> Int {
        while true {
            var buffer = fs_flow_buffer(
                keys: keys, values: values, capacity: UInt32(capacity),
                count: UInt32(stored))
            var error = fs_error()
            let result = fs_diag_dump(fd, inode, &buffer, &error)
            if result == 0 { return Int(buffer.count) }
            guard result == -ENOSPC else { throw InetDiagError(error) }
            // Room for the flows seen plus a quarter, so a growing host does not dump twice a scrape.
            grow(to: Int(buffer.count) + Int(buffer.count) / 4, keeping: stored)
        }
    }

    private func grow(to newCapacity: Int, keeping stored: Int) {
        let newKeys = UnsafeMutablePointer<fs_flow_key>.allocate(capacity: newCapacity)
        let newValues = UnsafeMutablePointer<fs_flow_stats>.allocate(capacity: newCapacity)
        newKeys.update(from: keys, count: stored)
        newValues.update(from: values, count: stored)
        keys.deallocate()
        values.deallocate()
        keys = newKeys
        values = newValues
        capacity = newCapacity
    }

    /// Whether capability number `bit` is in this process's effective set (/proc/self/status).
    static func hasCapability(_ bit: Int) -> Bool {
        guard let status = try? SystemFile.readText("/proc/self/status") else { return false }
        for line in status.split(separator: "\n") where line.hasPrefix("CapEff:") {
            guard let mask = UInt64(line.dropFirst("CapEff:".count).trimmingWhitespace(), radix: 16) else {
                return false
            }
            return mask & (1 << UInt64(bit)) != 0
        }
        return false
    }
}

extension Substring {
    fileprivate func trimmingWhitespace() -> Substring {
        var text = self
        while text.first?.isWhitespace == true { text.removeFirst() }
        while text.last?.isWhitespace == true { text.removeLast() }
        return text
    }
}
