// SPDX-License-Identifier: Apache-2.0

import Foundation

/// Two network namespaces joined by a veth pair, with IPv4 and IPv6 addresses: two real
/// hosts for TCP flows. Names are unique per test process so runs cannot collide; `remove()`
/// (also on deinit) deletes both namespaces, which deletes the veth pair with them.
final class TestNetwork {
    let client: String
    let server: String
    let clientIPv4 = "10.231.0.1", serverIPv4 = "10.231.0.2"
    let clientIPv6 = "fd00:231::1", serverIPv6 = "fd00:231::2"
    private var removed = false

    init(tag: String) throws {
        let suffix = "\(tag)\(getpid())"
        client = "fsc\(suffix)"
        server = "fss\(suffix)"
        try run(["ip", "netns", "add", client])
        try run(["ip", "netns", "add", server])
        let clientLink = "vc\(suffix)".prefix(15)
        let serverLink = "vs\(suffix)".prefix(15)
        try run([
            "ip", "link", "add", String(clientLink), "netns", client, "type", "veth",
            "peer", "name", String(serverLink), "netns", server,
        ])
        for (ns, link, v4, v6) in [
            (client, String(clientLink), clientIPv4, clientIPv6),
            (server, String(serverLink), serverIPv4, serverIPv6),
        ] {
            try run(["ip", "-n", ns, "addr", "add", "\(v4)/24", "dev", link])
            try run(["ip", "-n", ns, "addr", "add", "\(v6)/64", "dev", link, "nodad"])
            try run(["ip", "-n", ns, "link", "set", link, "up"])
            try run(["ip", "-n", ns, "link", "set", "lo", "up"])
        }
        self.serverLink = String(serverLink)
        self.clientLink = String(clientLink)
    }

    let serverLink: String
    let clientLink: String

    /// `ss -tin` inside one namespace, parsed.
    func socketStats(in namespace: String) throws -> [SocketStats] {
        SocketStats.parse(try run(["ip", "netns", "exec", namespace, "ss", "-tinH"]).stdout)
    }

    /// Starts a TCP peer (Tests/Support/tcp_peer.py) inside a namespace.
    func peer(in namespace: String, _ arguments: [String]) throws -> Child {
        let script = packageRoot.appendingPathComponent("Tests/Support/tcp_peer.py").path
        return try Child(["ip", "netns", "exec", namespace, "python3", script] + arguments)
    }

    func remove() {
        guard !removed else { return }
        removed = true
        _ = try? run(["ip", "netns", "del", client], check: false)
        _ = try? run(["ip", "netns", "del", server], check: false)
    }

    deinit { remove() }
}

/// One socket as `ss -tin` shows it: the kernel's own tcp_info, the oracle for flowstat.
struct SocketStats {
    var local: String
    var localPort: UInt16
    var peer: String
    var peerPort: UInt16
    var rttMilliseconds: Double?
    var cwnd: UInt32?
    var bytesAcked: UInt64?
    var bytesReceived: UInt64?
    /// Bits per second; nil when ss leaves it out (the kernel's rate is 0).
    var deliveryRateBitsPerSecond: Double?

    /// Parses `ss -tinH`: a socket line, then a tab-indented line of tcp_info fields.
    static func parse(_ text: String) -> [SocketStats] {
        var result: [SocketStats] = []
        for line in text.split(separator: "\n") {
            if line.first == "\t" || line.first == " " {
                guard var last = result.popLast() else { continue }
                let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
                // `delivery_rate 123bps`: with -n, tcpi_delivery_rate times 8, exactly (ss's "%.0f").
                if let name = fields.firstIndex(of: "delivery_rate"), name + 1 < fields.count {
                    last.deliveryRateBitsPerSecond = Double(fields[name + 1].dropLast(3))
                }
                for field in fields {
                    if field.hasPrefix("rtt:"), let slash = field.firstIndex(of: "/") {
                        last.rttMilliseconds = Double(field[field.index(field.startIndex, offsetBy: 4)..<slash])
                    } else if field.hasPrefix("cwnd:") {
                        last.cwnd = UInt32(field.dropFirst(5))
                    } else if field.hasPrefix("bytes_acked:") {
                        last.bytesAcked = UInt64(field.dropFirst(12))
                    } else if field.hasPrefix("bytes_received:") {
                        last.bytesReceived = UInt64(field.dropFirst(15))
                    }
                }
                result.append(last)
            } else {
                let columns = line.split(separator: " ", omittingEmptySubsequences: true)
                guard columns.count >= 5,
                    let (local, localPort) = splitEndpoint(columns[3]),
                    let (peer, peerPort) = splitEndpoint(columns[4])
                else { continue }
                result.append(SocketStats(local: local, localPort: localPort, peer: peer, peerPort: peerPort))
            }
        }
        return result
    }

    /// `10.0.0.1:80`, `[fd00::1]:80` or `[::ffff:10.0.0.1]:80` into address and port.
    private static func splitEndpoint(_ text: Substring) -> (String, UInt16)? {
        guard let colon = text.lastIndex(of: ":"), let port = UInt16(text[text.index(after: colon)...]) else {
            return nil
        }
        var address = String(text[..<colon])
        if address.hasPrefix("[") { address = String(address.dropFirst().dropLast()) }
        if address.hasPrefix("::ffff:"), !address.dropFirst(7).contains(":") { address = String(address.dropFirst(7)) }
        return (address, port)
    }
}
