// SPDX-License-Identifier: Apache-2.0

/// The address family of the socket that owns a flow.
///
/// Raw values are the kernel's `AF_INET` and `AF_INET6`, so the C shim's key field converts
/// with `AddressFamily(rawValue:)`. An IPv6 socket talking to an IPv4 peer is `.ipv6` with
/// IPv4-mapped addresses; the family is that of the socket, not of the addresses.
public enum AddressFamily: UInt16, Hashable, Comparable, Sendable, CustomStringConvertible {
    case ipv4 = 2
    case ipv6 = 10

    public static func < (lhs: AddressFamily, rhs: AddressFamily) -> Bool {
        lhs.rawValue < rhs.rawValue
    }

    public var description: String {
        switch self {
        case .ipv4: "ipv4"
        case .ipv6: "ipv6"
        }
    }
}

/// Identifies one TCP flow: what the kernel's flow map uses as its key.
///
/// The network namespace is part of the identity because the same 4-tuple can exist in
/// several namespaces at once (containers); the exposition only shows it when needed.
public struct FlowKey: Hashable, Sendable {
    /// Family of the owning socket.
    public var family: AddressFamily
    /// Address of this host's end of the flow.
    public var local: IPAddress
    /// Port of this host's end of the flow.
    public var localPort: UInt16
    /// Address of the peer.
    public var remote: IPAddress
    /// Port of the peer.
    public var remotePort: UInt16
    /// Inode number of the socket's network namespace.
    public var netns: UInt32

    public init(
        family: AddressFamily,
        local: IPAddress,
        localPort: UInt16,
        remote: IPAddress,
        remotePort: UInt16,
        netns: UInt32
    ) {
        self.family = family
        self.local = local
        self.localPort = localPort
        self.remote = remote
        self.remotePort = remotePort
        self.netns = netns
    }
}

extension FlowKey: CustomStringConvertible {
    /// `ss`-style text, e.g. `10.0.0.1:443 -> 10.0.0.2:51234 (netns 4026531840)`.
    public var description: String {
        func endpoint(_ address: IPAddress, _ port: UInt16) -> String {
            address.isIPv4Mapped ? "\(address):\(port)" : "[\(address)]:\(port)"
        }
        return "\(endpoint(local, localPort)) -> \(endpoint(remote, remotePort)) (netns \(netns))"
    }
}
