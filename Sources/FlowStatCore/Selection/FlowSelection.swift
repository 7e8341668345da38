// SPDX-License-Identifier: Apache-2.0

/// Which flows flowstat exports, as the config's `logic.selection` gives it.
///
/// Four groups: process (`pids`, `cmds`), peering (`addresses`, `networks`, `hosts`, all
/// about the remote end), remote ports (`portRanges`) and local ports (`localPortRanges`, a
/// flowstat extension). A flow is selected when it matches at least one entry of every
/// group that has entries: alternatives within a group are OR, groups combine with AND, and
/// an empty group selects everything. This is only the description; `FlowFilter` compiles
/// it for the scrape path.
public struct FlowSelection: Sendable, Equatable {
    /// Process ids owning the flow's socket.
    public var pids: [UInt32] = []
    /// Process names: matched against the kernel's command name (`comm`, at most 15 bytes, so
    /// a longer name matches on its first 15 bytes) or the basename of `/proc/PID/exe`.
    public var cmds: [String] = []
    /// Remote addresses (IPv4 or IPv6).
    public var addresses: [IPAddress] = []
    /// Remote networks in CIDR form (IPv4 or IPv6).
    public var networks: [IPNetwork] = []
    /// Host names whose addresses select the remote end; resolved at start and periodically.
    public var hosts: [String] = []
    /// Remote port ranges (the seed's `portRanges`).
    public var remotePorts: [PortRange] = []
    /// Local port ranges (flowstat extension `localPortRanges`).
    public var localPorts: [PortRange] = []
    /// Kubernetes namespaces of the flow's pod (flowstat extension `kubernetes.namespaces`).
    public var namespaces: [String] = []
    /// Pods, by name or UID (`kubernetes.pods`).
    public var pods: [String] = []
    /// Containers, by name (in their pod), full id, or an id's first 12 or more digits, as
    /// `docker ps` and `crictl ps` print them; outside Kubernetes too (`kubernetes.containers`).
    public var containers: [String] = []

    public init(
        pids: [UInt32] = [], cmds: [String] = [], addresses: [IPAddress] = [], networks: [IPNetwork] = [],
        hosts: [String] = [], remotePorts: [PortRange] = [], localPorts: [PortRange] = []
    ) {
        self.pids = pids
        self.cmds = cmds
        self.addresses = addresses
        self.networks = networks
        self.hosts = hosts
        self.remotePorts = remotePorts
        self.localPorts = localPorts
    }

    /// Whether every flow is selected (no group has entries).
    public var selectsEverything: Bool {
        !needsProcess && !hasPeering && remotePorts.isEmpty && localPorts.isEmpty && !needsWorkload
    }

    /// Whether the kubernetes group has entries, so flows need their workload. Within it,
    /// each list that has entries must match (a namespace and a pod, say).
    public var needsWorkload: Bool { !namespaces.isEmpty || !pods.isEmpty || !containers.isEmpty }

    /// Whether the process group has entries, so flows need their pid and comm.
    public var needsProcess: Bool { !pids.isEmpty || !cmds.isEmpty }

    /// Whether the peering group has entries.
    public var hasPeering: Bool { !addresses.isEmpty || !networks.isEmpty || !hosts.isEmpty }
}

/// An inclusive range of TCP ports, `lower...upper`.
public struct PortRange: Sendable, Hashable, CustomStringConvertible {
    public var lower: UInt16
    public var upper: UInt16

    public init(lower: UInt16, upper: UInt16) {
        precondition(lower <= upper, "lower must not be above upper")
        self.lower = lower
        self.upper = upper
    }

    public func contains(_ port: UInt16) -> Bool { lower <= port && port <= upper }

    public var description: String { lower == upper ? "\(lower)" : "\(lower)-\(upper)" }
}

/// An IP network (CIDR prefix), IPv4 or IPv6, in `IPAddress`'s 128-bit space: an IPv4
/// network `a.b.c.d/n` is the IPv4-mapped prefix `::ffff:a.b.c.d/(96+n)`, so it matches IPv4
/// sockets and IPv4-mapped addresses on IPv6 sockets alike.
public struct IPNetwork: Sendable, Hashable, CustomStringConvertible {
    /// The network address (host bits zero).
    public let address: IPAddress
    /// Prefix length in the 128-bit space (an IPv4 /8 is 104).
    public let prefixLength: Int
    private let maskHigh: UInt64
    private let maskLow: UInt64

    /// Why a CIDR text was refused.
    public enum ParseError: Error, Equatable {
        case badAddress
        case badPrefix
        case hostBitsSet(network: String)
    }

    /// Parses `address/prefix` (or a bare address, a single host). Host bits must be zero:
    /// `10.1.2.3/8` is refused because its intent (10.0.0.0/8 or the host) is unclear.
    public init(parsing text: String) throws(ParseError) {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard let address = IPAddress(String(parts[0])) else { throw .badAddress }
        let width = address.isIPv4Mapped && !parts[0].contains(":") ? 32 : 128
        var length = width
        if parts.count == 2 {
            guard let parsed = Int(parts[1]), (0...width).contains(parsed), parts[1].allSatisfy(\.isASCII)
            else { throw .badPrefix }
            length = parsed
        }
        let full = length + (128 - width)
        let network = IPNetwork(address: address, prefixLength: full)
        guard network.address == address else {
            throw .hostBitsSet(network: "\(network.address)/\(length)")
        }
        self = network
    }

    /// The network of `prefixLength` bits (0...128) containing `address`.
    public init(address: IPAddress, prefixLength: Int) {
        precondition((0...128).contains(prefixLength))
        self.prefixLength = prefixLength
        maskHigh = prefixLength >= 64 ? .max : (prefixLength == 0 ? 0 : ~0 << (64 - prefixLength))
        maskLow = prefixLength <= 64 ? 0 : (prefixLength == 128 ? .max : ~0 << (128 - prefixLength))
        self.address = IPAddress(high: address.high & maskHigh, low: address.low & maskLow)
    }

    @inline(__always)
    public func contains(_ candidate: IPAddress) -> Bool {
        candidate.high & maskHigh == address.high && candidate.low & maskLow == address.low
    }

    /// `10.0.0.0/8` for IPv4 networks, `fd00::/8` otherwise.
    public var description: String {
        if address.isIPv4Mapped && prefixLength >= 96 { return "\(address)/\(prefixLength - 96)" }
        return "\(address)/\(prefixLength)"
    }
}
