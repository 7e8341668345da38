// SPDX-License-Identifier: Apache-2.0

#if canImport(Glibc)
import Glibc
#endif

/// Where the kubelet's pod list is: `https://HOST[:PORT]/PATH`. HTTPS only: the request
/// carries the service account's token, and the answer names every pod on the node.
public struct KubeletURL: Sendable, Hashable, CustomStringConvertible {
    public struct Invalid: Error, CustomStringConvertible {
        public var description: String
    }

    /// A name or an IP address (IPv6 without brackets).
    public var host: String
    public var port: Int
    /// The path and query (`/pods`).
    public var path: String

    /// The kubelet's authenticated port.
    public static let kubeletPort = 10250

    public init(host: String, port: Int = KubeletURL.kubeletPort, path: String = "/pods") {
        self.host = host
        self.port = port
        self.path = path
    }

    public init(parsing text: String) throws(Invalid) {
        guard text.hasPrefix("https://") else {
            throw Invalid(description: "\"\(text)\" is not an https:// URL (the kubelet is read over TLS only)")
        }
        let rest = text.dropFirst("https://".count)
        let authority = rest.prefix { $0 != "/" }
        let path = rest.dropFirst(authority.count)
        guard !path.isEmpty else { throw Invalid(description: "\"\(text)\" has no path (the pod list is /pods)") }
        var host = Substring(authority)
        var port = 443
        if host.hasPrefix("[") {
            guard let close = host.firstIndex(of: "]") else { throw Invalid(description: "\"\(text)\": no ] after [") }
            let after = host[host.index(after: close)...]
            host = host[host.index(after: host.startIndex)..<close]
            if !after.isEmpty {
                guard after.hasPrefix(":"), let number = Int(after.dropFirst()) else {
                    throw Invalid(description: "\"\(text)\": \"\(after)\" is not :PORT")
                }
                port = number
            }
        } else if let colon = host.lastIndex(of: ":") {
            guard let number = Int(host[host.index(after: colon)...]) else {
                throw Invalid(description: "\"\(text)\": \"\(host[colon...])\" is not :PORT")
            }
            port = number
            host = host[..<colon]
        }
        guard !host.isEmpty, !host.contains("@") else { throw Invalid(description: "\"\(text)\" has no host") }
        guard (1...65_535).contains(port) else {
            throw Invalid(description: "\"\(text)\": port \(port) is out of range")
        }
        self.init(host: String(host), port: port, path: String(path))
    }

    /// The URL the DaemonSet's environment gives: `$NODE_IP` (the downward API's
    /// `status.hostIP`: always reachable with hostNetwork), else `$NODE_NAME` (`spec.nodeName`);
    /// nil when neither is set (not on Kubernetes).
    public static func fromEnvironment(_ variable: (String) -> String? = KubeletURL.environment) -> KubeletURL? {
        for name in ["NODE_IP", "NODE_NAME"] {
            if let value = variable(name), !value.isEmpty { return KubeletURL(host: value) }
        }
        return nil
    }

    public static func environment(_ name: String) -> String? {
        getenv(name).map { String(cString: $0) }
    }

    /// Whether `host` is an IP literal: certificates name those in IP SANs, and TLS sends no
    /// server name for them.
    public var hostIsIPAddress: Bool {
        var v4 = in_addr()
        var v6 = in6_addr()
        return inet_pton(AF_INET, host, &v4) == 1 || inet_pton(AF_INET6, host, &v6) == 1
    }

    /// `host:port` as the Host header and messages write it.
    public var authority: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

    public var description: String { "https://\(authority)\(path)" }
}
