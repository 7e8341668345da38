// SPDX-License-Identifier: Apache-2.0

import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// Why the HTTP server could not start listening.
public struct MetricsServerError: Error, CustomStringConvertible {
    /// The cause, for callers that suggest a fix.
    public enum Reason: Sendable, Hashable {
        /// Another socket listens on the port.
        case addressInUse
        /// Ports below 1024 need root or CAP_NET_BIND_SERVICE.
        case permissionDenied
        /// The address is not one of this host's.
        case addressNotAvailable
        /// The host name did not resolve.
        case unknownHost
        /// Anything else; the text says what.
        case other
    }

    /// The address that could not be bound.
    public var address: ListenAddress
    /// The cause.
    public var reason: Reason
    /// The underlying error's text.
    public var underlying: String

    public init(address: ListenAddress, reason: Reason, underlying: String) {
        self.address = address
        self.reason = reason
        self.underlying = underlying
    }

    /// Classifies a bind error from NIO.
    init(address: ListenAddress, error: any Error) {
        let reason: Reason
        if let error = error as? IOError {
            switch error.errnoCode {
            case EADDRINUSE: reason = .addressInUse
            case EACCES, EPERM: reason = .permissionDenied
            case EADDRNOTAVAIL: reason = .addressNotAvailable
            default: reason = .other
            }
        } else if let host = address.host, IPAddress(host) == nil {
            // NIO's resolution errors changed type across versions; a name that is not an
            // address literal and failed before any socket call did not resolve.
            reason = .unknownHost
        } else {
            reason = .other
        }
        self.init(address: address, reason: reason, underlying: String(describing: error))
    }

    public var description: String {
        let port = address.port
        switch reason {
        case .addressInUse:
            return "cannot listen on \(address): port \(port) is already in use by another process"
        case .permissionDenied:
            return "cannot listen on \(address): permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
        case .addressNotAvailable:
            return "cannot listen on \(address): \(address.host ?? "the address") is not an address of this host"
        case .unknownHost:
            return "cannot listen on \(address): host \"\(address.host ?? "")\" does not resolve"
        case .other:
            return "cannot listen on \(address): \(underlying)"
        }
    }
}
