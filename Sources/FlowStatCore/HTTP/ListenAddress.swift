// SPDX-License-Identifier: Apache-2.0

/// Where the HTTP server listens, as given by `--web.listen-address`.
///
/// Accepts the forms Prometheus exporters use: `:8020` (every interface), `host:port`,
/// `0.0.0.0:8020` and `[v6]:port`. A host name is resolved when the server binds.
public struct ListenAddress: Sendable, Hashable, CustomStringConvertible {
    /// Host name or address literal, without brackets; `nil` means every interface.
    public var host: String?
    /// TCP port; 0 asks the kernel for a free one (tests).
    public var port: Int

    public init(host: String?, port: Int) {
        self.host = host
        self.port = port
    }

    /// The default, `:8020`, the port of the exporter flowstat replaces.
    public static let `default` = ListenAddress(host: nil, port: 8020)

    /// Parses `:port`, `host:port` or `[ipv6]:port`.
    public init(parsing text: String) throws(ListenAddressError) {
        let hostPart: Substring
        let portPart: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else {
                throw ListenAddressError(text, "missing \"]\" after the IPv6 address")
            }
            hostPart = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else {
                throw ListenAddressError(text, "missing \":port\" after \"]\"")
            }
            portPart = rest.dropFirst()
            guard !hostPart.isEmpty else { throw ListenAddressError(text, "empty IPv6 address in brackets") }
        } else {
            guard let colon = text.lastIndex(of: ":") else {
                throw ListenAddressError(text, "missing port")
            }
            hostPart = text[..<colon]
            portPart = text[text.index(after: colon)...]
            if hostPart.contains(":") {
                throw ListenAddressError(text, "an IPv6 address needs brackets")
            }
        }
        guard !portPart.isEmpty, portPart.allSatisfy(\.isASCII), portPart.allSatisfy(\.isNumber),
            let port = Int(portPart), port <= 65_535
        else {
            throw ListenAddressError(text, "port must be a number from 0 to 65535")
        }
        self.init(host: hostPart.isEmpty ? nil : String(hostPart), port: port)
    }

    /// The same host with another port (`-p/--port`).
    public func withPort(_ port: Int) -> ListenAddress {
        ListenAddress(host: host, port: port)
    }

    /// The address in the form it is parsed from.
    public var description: String {
        guard let host else { return ":\(port)" }
        return host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }
}

/// A `--web.listen-address` value that cannot be parsed.
public struct ListenAddressError: Error, Hashable, CustomStringConvertible {
    /// The text as given.
    public var text: String
    /// What is wrong with it.
    public var reason: String

    init(_ text: String, _ reason: String) {
        self.text = text
        self.reason = reason
    }

    public var description: String {
        "invalid listen address \"\(text)\": \(reason)"
    }
}
