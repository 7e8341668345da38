// SPDX-License-Identifier: Apache-2.0

import NIOConcurrencyHelpers

#if canImport(Glibc)
import Glibc
#endif

/// A `FlowSelection` compiled for the scrape path, plus what it needs at run time: the
/// resolved addresses of its hosts and the executable names of processes.
///
/// Use `matcher()` once per scrape and call `selects` per flow, or `apply(to:)` for a whole
/// snapshot. Thread-safe.
public final class FlowFilter: Sendable {
    /// The selection as configured.
    public let selection: FlowSelection
    /// Resolves `selection.hosts`; nil when there are none.
    public let resolver: HostResolver?
    private let executables: NIOLockedValueBox<[UInt32: String]> = NIOLockedValueBox([:])
    /// Reads a process's executable basename; replaceable for tests.
    private let executableName: @Sendable (UInt32) -> String?

    public init(
        selection: FlowSelection, resolver: HostResolver? = nil,
        executableName: @escaping @Sendable (UInt32) -> String? = FlowFilter.executableBasename
    ) {
        self.selection = selection
        self.resolver = resolver ?? (selection.hosts.isEmpty ? nil : HostResolver(hosts: selection.hosts))
        self.executableName = executableName
    }

    /// Whether every flow passes (no selection configured): callers can skip filtering.
    public var selectsEverything: Bool { selection.selectsEverything }

    /// A matcher with the hosts' current addresses.
    public func matcher() -> FlowMatcher {
        FlowMatcher(selection: selection, hostAddresses: resolver?.addresses ?? [], executable: executable(of:))
    }

    /// The selected flows of `flows`, in their order.
    ///
    /// With an `attributor`, flows that pass the port and peer groups get their owning
    /// process filled in before the process group is checked, so the costly /proc lookup is
    /// spent only on flows that can still be selected; the returned flows carry their pid and
    /// comm (for labels).
    public func apply(to flows: [FlowSample], attributor: ProcessAttributor? = nil) -> [FlowSample] {
        let matcher = matcher()
        guard let attributor else {
            // One pass: no process lookup to interleave.
            let selected = selectsEverything ? flows : flows.filter(matcher.selects)
            if matcher.checksExecutables { pruneExecutables(keeping: matcher.executablesLookedUp) }
            return selected
        }
        var selected = selectsEverything ? flows : flows.filter(matcher.selectsIgnoringProcess)
        attributor.fill(&selected)
        if selection.needsProcess {
            selected.removeAll { !matcher.matchesProcess($0) }
            if matcher.checksExecutables { pruneExecutables(keeping: matcher.executablesLookedUp) }
        }
        return selected
    }

    /// The cached executable basename of `pid`.
    private func executable(of pid: UInt32) -> String? {
        if let cached = executables.withLockedValue({ $0[pid] }) { return cached }
        let name = executableName(pid) ?? ""  // "" caches "unknown" too
        executables.withLockedValue { $0[pid] = name }
        return name
    }

    /// Forgets the processes this scrape did not ask about (their flows are gone or matched
    /// by comm), so the cache stays small and a reused pid is looked up afresh.
    private func pruneExecutables(keeping pids: Set<UInt32>) {
        executables.withLockedValue { cache in cache = cache.filter { pids.contains($0.key) } }
    }

    /// The basename of `/proc/PID/exe`, nil if unreadable (gone, or a kernel thread).
    public static let executableBasename: @Sendable (UInt32) -> String? = { pid in
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let count = readlink("/proc/\(pid)/exe", &buffer, buffer.count - 1)
        guard count > 0 else { return nil }
        var path = String(decoding: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        // An executable replaced on disk reads "/usr/bin/foo (deleted)".
        if path.hasSuffix(" (deleted)") { path.removeLast(" (deleted)".count) }
        return path.split(separator: "/").last.map(String.init)
    }
}

/// The selection as fast tests: sets and a port bitmap, built once per scrape.
public struct FlowMatcher {
    private let processGroup: Bool
    private let pids: SmallSet<UInt32>
    /// `cmds` cut to the kernel's 15-byte comm.
    private let comms: SmallSet<String>
    /// `cmds` as written, for the executable basename.
    private let commands: Set<String>
    private let peeringGroup: Bool
    private let addresses: SmallSet<IPAddress>
    private let networks: [IPNetwork]
    private let remotePorts: PortSet?
    private let localPorts: PortSet?
    private let namespaces: Set<String>
    private let pods: Set<String>
    private let containers: [String]
    /// Per pid: whether its executable is one of `commands`; looked up once per matcher
    /// (per scrape), not once per flow.
    private let executableMatches: ExecutableMemo

    /// Whether `selects` may read executables (the process group has cmds).
    public var checksExecutables: Bool { !commands.isEmpty }

    /// The pids whose executable this matcher has looked up so far.
    public var executablesLookedUp: Set<UInt32> { executableMatches.pids }

    /// The kernel keeps 15 bytes of a command name (TASK_COMM_LEN 16 with the NUL).
    public static let commLength = 15

    public init(selection: FlowSelection, hostAddresses: Set<IPAddress>, executable: @escaping (UInt32) -> String?) {
        processGroup = selection.needsProcess
        pids = SmallSet(selection.pids)
        commands = Set(selection.cmds)
        comms = SmallSet(selection.cmds.map { Self.truncatedComm($0) })
        peeringGroup = selection.hasPeering
        addresses = SmallSet(Array(Set(selection.addresses).union(hostAddresses)))
        networks = selection.networks
        remotePorts = selection.remotePorts.isEmpty ? nil : PortSet(selection.remotePorts)
        localPorts = selection.localPorts.isEmpty ? nil : PortSet(selection.localPorts)
        namespaces = Set(selection.namespaces)
        pods = Set(selection.pods)
        containers = selection.containers
        executableMatches = ExecutableMemo(commands: commands, executable: executable)
    }

    /// Whether `sample` is selected: it matches some entry of every group that has entries.
    /// A flow whose process is unknown (pid 0, empty comm) matches no process entry.
    public func selects(_ sample: FlowSample) -> Bool {
        selectsIgnoringProcess(sample) && matchesProcess(sample)
    }

    /// Whether `sample` passes the port and peering groups (the ones that need no process).
    public func selectsIgnoringProcess(_ sample: FlowSample) -> Bool {
        if let remotePorts, !remotePorts.contains(sample.key.remotePort) { return false }
        if let localPorts, !localPorts.contains(sample.key.localPort) { return false }
        if peeringGroup && !matchesPeer(sample.key.remote) { return false }
        if !namespaces.isEmpty || !pods.isEmpty || !containers.isEmpty { return matchesWorkload(sample.workload) }
        return true
    }

    /// The kubernetes group: every list with entries matches. A flow without a known
    /// workload matches none.
    private func matchesWorkload(_ workload: Workload?) -> Bool {
        guard let workload else { return false }
        if !namespaces.isEmpty, !namespaces.contains(workload.namespaceLabel) { return false }
        if !pods.isEmpty {
            let uid = workload.identity.podUID ?? ""
            guard pods.contains(workload.podLabel) || (!uid.isEmpty && pods.contains(uid)) else { return false }
        }
        if !containers.isEmpty {
            let id = workload.identity.containerID ?? ""
            let name = workload.containerLabel
            guard
                containers.contains(where: { wanted in
                    (!name.isEmpty && wanted == name) || (wanted.utf8.count >= 12 && id.hasPrefix(wanted))
                })
            else { return false }
        }
        return true
    }

    private func matchesPeer(_ remote: IPAddress) -> Bool {
        if addresses.contains(remote) { return true }
        for network in networks where network.contains(remote) { return true }
        return false
    }

    /// Whether `sample` passes the process group (true when it has no entries).
    public func matchesProcess(_ sample: FlowSample) -> Bool {
        guard processGroup else { return true }
        if sample.pid != 0 && pids.contains(sample.pid) { return true }
        if !sample.comm.isEmpty && comms.contains(sample.comm) { return true }
        return !commands.isEmpty && sample.pid != 0 && executableMatches.matches(sample.pid)
    }

    /// `name` as the kernel's comm would hold it: its first 15 bytes (not splitting a
    /// UTF-8 sequence).
    static func truncatedComm(_ name: String) -> String {
        let bytes = Array(name.utf8)
        guard bytes.count > commLength else { return name }
        var end = commLength
        while end > 0 && bytes[end] & 0xC0 == 0x80 { end -= 1 }  // continuation byte: back off
        return String(decoding: bytes[0..<end], as: UTF8.self)
    }
}

/// Remembers, per pid, whether its executable's basename is a configured cmd. A class so
/// that the non-mutating `selects` can fill it; a matcher is used by one thread at a time.
private final class ExecutableMemo {
    private let commands: Set<String>
    private let executable: (UInt32) -> String?
    private var known: [UInt32: Bool] = [:]

    init(commands: Set<String>, executable: @escaping (UInt32) -> String?) {
        self.commands = commands
        self.executable = executable
    }

    var pids: Set<UInt32> { Set(known.keys) }

    func matches(_ pid: UInt32) -> Bool {
        if let answer = known[pid] { return answer }
        let answer = executable(pid).map(commands.contains) ?? false
        known[pid] = answer
        return answer
    }
}

/// Membership for the selection's lists: a linear scan while they are short (a few
/// comparisons beat hashing every flow's value), a hash set once they are long.
struct SmallSet<Element: Hashable> {
    private let small: [Element]
    private let large: Set<Element>?

    init(_ elements: [Element]) {
        let unique = Array(Set(elements))
        small = unique.count <= 8 ? unique : []
        large = unique.count <= 8 ? nil : Set(unique)
    }

    @inline(__always)
    func contains(_ element: Element) -> Bool {
        if let large { return large.contains(element) }
        for candidate in small where candidate == element { return true }
        return false
    }
}

/// Ports as a 65,536-bit bitmap: one load and a mask per test, whatever the ranges.
struct PortSet {
    private var words = [UInt64](repeating: 0, count: 1024)

    init(_ ranges: [PortRange]) {
        for range in ranges {
            for port in Int(range.lower)...Int(range.upper) { words[port >> 6] |= 1 << UInt64(port & 63) }
        }
    }

    @inline(__always)
    func contains(_ port: UInt16) -> Bool {
        words[Int(port) >> 6] & (1 << UInt64(port & 63)) != 0
    }
}
