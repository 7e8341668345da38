// SPDX-License-Identifier: Apache-2.0

import Dispatch
import Logging
import NIOConcurrencyHelpers

#if canImport(Glibc)
import Glibc
#endif

/// Keeps the addresses of the selection's `hosts` current: resolves each name with
/// `getaddrinfo` when started and again every `interval`, on its own queue, so a slow DNS
/// server never delays a scrape.
///
/// A name that fails to resolve is logged (not fatal) and keeps its last good addresses, so
/// a DNS outage does not suddenly deselect a host's flows.
public final class HostResolver: Sendable {
    /// The names resolved.
    public let hosts: [String]
    /// Time between two resolutions.
    public let interval: Double
    private let logger: Logger
    private let resolved: NIOLockedValueBox<[String: Set<IPAddress>]>
    private let queue = DispatchQueue(label: "flowstat.host-resolver")
    private let stopped = NIOLockedValueBox(false)

    /// Looks one name up; `HostResolver.getaddrinfo` except in tests.
    private let lookup: @Sendable (String) -> Result<Set<IPAddress>, ResolveError>

    public init(
        hosts: [String], interval: Double = 60, logger: Logger = Logger(label: "flowstat.resolver"),
        lookup: @escaping @Sendable (String) -> Result<Set<IPAddress>, ResolveError> = HostResolver.getaddrinfo
    ) {
        self.hosts = hosts
        self.lookup = lookup
        self.interval = interval
        self.logger = logger
        self.resolved = NIOLockedValueBox([:])
    }

    /// Every address any of the names resolved to, at the last resolution of each.
    public var addresses: Set<IPAddress> {
        resolved.withLockedValue { $0.values.reduce(into: Set()) { $0.formUnion($1) } }
    }

    /// Resolves every name now, on the calling thread.
    public func resolveNow() {
        for host in hosts {
            switch lookup(host) {
            case .success(let addresses):
                let previous = resolved.withLockedValue { table in
                    defer { table[host] = addresses }
                    return table[host]
                }
                if previous != addresses {
                    logger.info(
                        "host \(host) resolves to \(addresses.map(\.description).sorted().joined(separator: ", "))")
                }
            case .failure(let message):
                let kept = resolved.withLockedValue { $0[host]?.count ?? 0 }
                logger.warning("cannot resolve host \(host): \(message); keeping its \(kept) last known addresses")
            }
        }
    }

    /// Resolves now, then every `interval` seconds in the background until `stop()` or the
    /// resolver is released.
    public func start() {
        resolveNow()
        if !hosts.isEmpty { scheduleNext() }
    }

    /// Stops the periodic resolution.
    public func stop() {
        stopped.withLockedValue { $0 = true }
    }

    private func scheduleNext() {
        queue.asyncAfter(deadline: .now() + interval) { [weak self] in
            guard let self, !self.stopped.withLockedValue({ $0 }) else { return }
            self.resolveNow()
            self.scheduleNext()
        }
    }

    /// The TCP-usable addresses of `host`, or getaddrinfo's error text.
    @Sendable
    public static func getaddrinfo(_ host: String) -> Result<Set<IPAddress>, ResolveError> {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        let status = Glibc.getaddrinfo(host, nil, &hints, &list)
        guard status == 0 else { return .failure(ResolveError(message: String(cString: gai_strerror(status)))) }
        defer { freeaddrinfo(list) }
        var addresses = Set<IPAddress>()
        var entry = list
        while let current = entry {
            if let socketAddress = current.pointee.ai_addr {
                switch Int32(current.pointee.ai_family) {
                case AF_INET:
                    _ = socketAddress.withMemoryRebound(to: sockaddr_in.self, capacity: 1) {
                        addresses.insert(IPAddress(ipv4: UInt32(bigEndian: $0.pointee.sin_addr.s_addr)))
                    }
                case AF_INET6:
                    socketAddress.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) {
                        var raw = $0.pointee.sin6_addr
                        if let address = withUnsafeBytes(of: &raw, { IPAddress(bytes: $0) }) {
                            addresses.insert(address)
                        }
                    }
                default:
                    break
                }
            }
            entry = current.pointee.ai_next
        }
        return .success(addresses)
    }

    /// Why a name did not resolve.
    public struct ResolveError: Error, Sendable {
        public var message: String
        public init(message: String) { self.message = message }
    }
}
