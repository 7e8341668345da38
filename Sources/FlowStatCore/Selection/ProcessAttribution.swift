// SPDX-License-Identifier: Apache-2.0

import Logging
import NIOConcurrencyHelpers

#if canImport(Glibc)
import Glibc
#endif

/// Finds the process that owns each flow's socket, from /proc, for flows whose source did
/// not record one (pid 0).
///
/// The BPF hooks run in softirq context when a flow is established or updated, where the
/// current task is not the socket's owner, so the flow map has no pid. This joins three
/// /proc views: `/proc/PID/net/tcp{,6}` (4-tuple to socket inode, per network namespace),
/// `/proc/PID/fd/*` (socket inode to pid) and `/proc/PID/comm`. Walking every process's file
/// descriptors is the expensive part, so an owner once found is cached per flow, and a walk
/// only happens when a flow has no cached answer. A flow found without an owner (an orphaned
/// socket, or one not yet accepted) is retried after `retryInterval`. Not thread-safe:
/// `ProcessAttributor` wraps it with a lock. Use it only when something needs processes
/// (selection by process, pid/comm labels): a walk costs in proportion to the host's sockets.
struct ProcessAttribution {
    struct Owner: Equatable {
        var pid: UInt32
        var comm: String
    }

    /// The result of the last `fill`, for logs and tests.
    struct Pass: Equatable {
        var flowsLookedUp = 0
        var flowsAttributed = 0
        var walkedProcFDs = false
    }

    /// Seconds before a flow without an owner is looked up again.
    var retryInterval: Double = 30
    /// Our own network namespace: its table is /proc/self/net/tcp.
    let ownNetns: UInt32

    private var owners: [FlowKey: Owner] = [:]
    /// Flows found without an owner, and when (monotonic ns).
    private var orphans: [FlowKey: UInt64] = [:]

    init(ownNetns: UInt32) {
        self.ownNetns = ownNetns
    }

    /// Sets `pid` and `comm` of every flow with pid 0 whose owner can be found.
    @discardableResult
    mutating func fill(_ flows: inout [FlowSample], now: UInt64 = SystemClock.monotonicNanoseconds()) -> Pass {
        var pass = Pass()
        var unknown: [Int] = []
        for index in flows.indices where flows[index].pid == 0 {
            let key = flows[index].key
            if let owner = owners[key] {
                flows[index].pid = owner.pid
                flows[index].comm = owner.comm
            } else if let since = orphans[key], Double(now &- since) / 1e9 < retryInterval {
                continue
            } else {
                unknown.append(index)
            }
        }
        if !unknown.isEmpty {
            pass.walkedProcFDs = true
            pass.flowsLookedUp = unknown.count
            let namespaces = Set(unknown.map { flows[$0].key.netns })
            let processes = ProcScan(namespaces: namespaces.subtracting([ownNetns]))
            var inodes: [FlowKey: UInt64] = [:]
            for netns in namespaces {
                let directory: String
                if netns == ownNetns {
                    directory = "/proc/self/net"
                } else if let pid = processes.pidInNamespace[netns] {
                    directory = "/proc/\(pid)/net"
                } else {
                    continue
                }
                SocketTable.read("\(directory)/tcp", family: .ipv4, netns: netns, into: &inodes)
                SocketTable.read("\(directory)/tcp6", family: .ipv6, netns: netns, into: &inodes)
            }
            var comms: [UInt32: String] = [:]
            for index in unknown {
                let key = flows[index].key
                guard let inode = inodes[key], inode != 0, let pid = processes.socketOwner[inode] else {
                    orphans[key] = now
                    continue
                }
                let comm = comms[pid] ?? Self.comm(of: pid)
                comms[pid] = comm
                owners[key] = Owner(pid: pid, comm: comm)
                orphans[key] = nil
                flows[index].pid = pid
                flows[index].comm = comm
                pass.flowsAttributed += 1
            }
        }
        // Forget flows that are gone, so the caches stay as small as the flow table.
        if owners.count + orphans.count > flows.count {
            let live = Set(flows.lazy.map(\.key))
            owners = owners.filter { live.contains($0.key) }
            orphans = orphans.filter { live.contains($0.key) }
        }
        return pass
    }

    /// `/proc/PID/comm` without its newline; empty if the process is gone.
    static func comm(of pid: UInt32) -> String {
        guard var bytes = try? SystemFile.read("/proc/\(pid)/comm") else { return "" }
        if bytes.last == UInt8(ascii: "\n") { bytes.removeLast() }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// One walk over /proc: which process holds each socket inode, and one process per network
/// namespace asked for.
struct ProcScan {
    /// Socket inode to the lowest pid holding it (a forked child shares its parent's sockets).
    var socketOwner: [UInt64: UInt32] = [:]
    var pidInNamespace: [UInt32: UInt32] = [:]

    init(namespaces: Set<UInt32>) {
        var pids: [UInt32] = []
        SystemFile.forEachEntry(in: "/proc") { name, _, _, _ in
            var value: UInt32 = 0
            var index = 0
            while name[index] != 0 {
                let byte = UInt8(bitPattern: name[index])
                guard byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") else { return true }
                value = value &* 10 &+ UInt32(byte - UInt8(ascii: "0"))
                index += 1
            }
            if value != 0 { pids.append(value) }
            return true
        }
        pids.sort()
        var link = [CChar](repeating: 0, count: 64)
        for pid in pids {
            if pidInNamespace.count < namespaces.count {
                var status = stat()
                if stat("/proc/\(pid)/ns/net", &status) == 0 {
                    let inode = UInt32(truncatingIfNeeded: status.st_ino)
                    if namespaces.contains(inode) && pidInNamespace[inode] == nil { pidInNamespace[inode] = pid }
                }
            }
            // A process gone, or not ours to read, lists nothing.
            SystemFile.forEachEntry(in: "/proc/\(pid)/fd") { name, type, _, directory in
                // Only symlinks name sockets.
                guard type == UInt8(DT_LNK) else { return true }
                let count = readlinkat(directory, name, &link, link.count)
                if count > 9, let inode = Self.socketInode(link, count: count), socketOwner[inode] == nil {
                    socketOwner[inode] = pid
                }
                return true
            }
        }
    }

    /// The inode of a `socket:[12345]` link target.
    private static func socketInode(_ link: [CChar], count: Int) -> UInt64? {
        let prefix: [UInt8] = Array("socket:[".utf8)
        for (index, byte) in prefix.enumerated() where UInt8(bitPattern: link[index]) != byte { return nil }
        var value: UInt64 = 0
        for index in prefix.count..<count {
            let byte = UInt8(bitPattern: link[index])
            if byte == UInt8(ascii: "]") { return value }
            guard byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") else { return nil }
            value = value &* 10 &+ UInt64(byte - UInt8(ascii: "0"))
        }
        return nil
    }
}

/// Parses `/proc/net/tcp` and `/proc/net/tcp6`: the kernel's socket table as text.
enum SocketTable {
    /// Adds `key → inode` for every socket with a remote end (listeners are skipped).
    static func read(_ path: String, family: AddressFamily, netns: UInt32, into table: inout [FlowKey: UInt64]) {
        guard let bytes = try? SystemFile.read(path) else { return }
        bytes.withUnsafeBufferPointer { text in
            var cursor = 0
            // Skip the header line.
            while cursor < text.count && text[cursor] != UInt8(ascii: "\n") { cursor += 1 }
            cursor += 1
            while cursor < text.count {
                let lineEnd = text[cursor...].firstIndex(of: UInt8(ascii: "\n")) ?? text.count
                if let (key, inode) = parseLine(text[cursor..<lineEnd], family: family, netns: netns) {
                    table[key] = inode
                }
                cursor = lineEnd + 1
            }
        }
    }

    /// `sl local rem st tx:rx tr:when retrnsmt uid timeout inode …`, fields space-separated.
    static func parseLine(_ line: Slice<UnsafeBufferPointer<UInt8>>, family: AddressFamily, netns: UInt32)
        -> (FlowKey, UInt64)?
    {
        var fields: [Slice<UnsafeBufferPointer<UInt8>>] = []
        fields.reserveCapacity(10)
        var start: Int?
        for index in line.indices {
            if line[index] == UInt8(ascii: " ") {
                if let begin = start {
                    fields.append(line[begin..<index])
                    start = nil
                    if fields.count == 10 { break }
                }
            } else if start == nil {
                start = index
            }
        }
        if let begin = start, fields.count < 10 { fields.append(line[begin..<line.endIndex]) }
        guard fields.count == 10,
            let (local, localPort) = endpoint(fields[1]), let (remote, remotePort) = endpoint(fields[2]),
            remotePort != 0, let inode = decimal(fields[9])
        else { return nil }
        let key = FlowKey(
            family: family, local: local, localPort: localPort, remote: remote, remotePort: remotePort,
            netns: netns)
        return (key, inode)
    }

    /// `0100007F:1F90` (IPv4) or 32 hex digits and a port (IPv6). The kernel prints each
    /// 32-bit word of the address as a host-order integer, so on little-endian hosts the
    /// bytes of each word come reversed.
    private static func endpoint(_ text: Slice<UnsafeBufferPointer<UInt8>>) -> (IPAddress, UInt16)? {
        guard let colon = text.firstIndex(of: UInt8(ascii: ":")) else { return nil }
        let hexAddress = text[text.startIndex..<colon]
        guard let port = hex(text[(colon + 1)...]), port <= 0xFFFF else { return nil }
        var words: [UInt32] = []
        var index = hexAddress.startIndex
        while index < hexAddress.endIndex {
            guard index + 8 <= hexAddress.endIndex, let word = hex(hexAddress[index..<(index + 8)]) else { return nil }
            words.append(UInt32(word))
            index += 8
        }
        // The word's bytes in this machine's order are the bytes as the kernel stored them:
        // network order.
        var bytes: [UInt8] = []
        for word in words {
            withUnsafeBytes(of: word) { bytes.append(contentsOf: $0) }
        }
        let address: IPAddress?
        switch bytes.count {
        case 4:
            address = IPAddress(
                ipv4: UInt32(bytes[0]) << 24 | UInt32(bytes[1]) << 16 | UInt32(bytes[2]) << 8 | UInt32(bytes[3]))
        case 16: address = IPAddress(bytes: bytes)
        default: address = nil
        }
        guard let address else { return nil }
        return (address, UInt16(port))
    }

    private static func hex(_ text: Slice<UnsafeBufferPointer<UInt8>>) -> UInt64? {
        guard !text.isEmpty, text.count <= 16 else { return nil }
        var value: UInt64 = 0
        for byte in text {
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            default: return nil
            }
            value = value << 4 | UInt64(digit)
        }
        return value
    }

    private static func decimal(_ text: Slice<UnsafeBufferPointer<UInt8>>) -> UInt64? {
        guard !text.isEmpty else { return nil }
        var value: UInt64 = 0
        for byte in text {
            guard byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") else { return nil }
            value = value &* 10 &+ UInt64(byte - UInt8(ascii: "0"))
        }
        return value
    }
}

/// Thread-safe owner of a `ProcessAttribution`: fills pid and comm of the flows a scrape
/// exports, for sources whose flows lack them (the BPF map has no owner).
///
/// The scrape runs it after the cheap selection groups (ports, peers), so only flows that
/// can still be exported cost a lookup. A pass that meets a new flow costs in proportion to
/// the host's sockets, nearly all of it in the kernel generating `/proc/net/tcp` and
/// resolving every `/proc/PID/fd` link (README, "Processes", has figures); passes with no
/// new flow cost a dictionary lookup per flow.
public final class ProcessAttributor: Sendable {
    private let state: NIOLockedValueBox<ProcessAttribution>
    private let logger: Logger

    public init(logger: Logger = Logger(label: "flowstat.process")) {
        var status = stat()
        let own = stat("/proc/self/ns/net", &status) == 0 ? UInt32(truncatingIfNeeded: status.st_ino) : 0
        state = NIOLockedValueBox(ProcessAttribution(ownNetns: own))
        self.logger = logger
    }

    /// Sets `pid` and `comm` of the flows with pid 0 whose owner /proc shows.
    public func fill(_ flows: inout [FlowSample]) {
        let started = SystemClock.monotonicNanoseconds()
        let pass = state.withLockedValue { $0.fill(&flows, now: started) }
        if pass.walkedProcFDs {
            let milliseconds = Double(SystemClock.monotonicNanoseconds() - started) / 1e6
            logger.debug(
                "process attribution from /proc: \(pass.flowsAttributed) of \(pass.flowsLookedUp) new flows in \(milliseconds) ms"
            )
        }
    }
}
