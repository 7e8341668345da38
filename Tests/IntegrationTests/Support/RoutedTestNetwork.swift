// SPDX-License-Identifier: Apache-2.0

import Foundation

/// Three network namespaces in a line, client — router — server, joined by two veth pairs
/// (IPv4): the router forwards, so a token bucket on its link toward the server drops the
/// client's segments the way a congested hop does, out of sight of the client's own stack
/// (a drop in the sender's own qdisc would be a local send failure, not a loss). `remove()`
/// (also on deinit) deletes the namespaces and with them the links.
final class RoutedTestNetwork {
    let client: String, router: String, server: String
    let clientIPv4 = "10.233.1.1", serverIPv4 = "10.233.2.1"
    /// The router's link toward the server: where a token bucket queues or drops the data.
    let routerToServerLink: String
    private var removed = false

    init(tag: String) throws {
        let suffix = "\(tag)\(getpid())"
        client = "frc\(suffix)"
        router = "frr\(suffix)"
        server = "frs\(suffix)"
        for namespace in [client, router, server] {
            try run(["ip", "netns", "add", namespace])
            try run(["ip", "-n", namespace, "link", "set", "lo", "up"])
        }
        let clientLink = String("rc\(suffix)".prefix(15))
        let routerClientLink = String("rrc\(suffix)".prefix(15))
        let serverLink = String("rs\(suffix)".prefix(15))
        let routerServerLink = String("rrs\(suffix)".prefix(15))
        routerToServerLink = routerServerLink
        try run([
            "ip", "link", "add", clientLink, "netns", client, "type", "veth", "peer", "name", routerClientLink,
            "netns", router,
        ])
        try run([
            "ip", "link", "add", serverLink, "netns", server, "type", "veth", "peer", "name", routerServerLink,
            "netns", router,
        ])
        for (namespace, link, address) in [
            (client, clientLink, "10.233.1.1/24"), (router, routerClientLink, "10.233.1.254/24"),
            (server, serverLink, "10.233.2.1/24"), (router, routerServerLink, "10.233.2.254/24"),
        ] {
            try run(["ip", "-n", namespace, "addr", "add", address, "dev", link])
            try run(["ip", "-n", namespace, "link", "set", link, "up"])
        }
        try run(["ip", "-n", client, "route", "add", "default", "via", "10.233.1.254"])
        try run(["ip", "-n", server, "route", "add", "default", "via", "10.233.2.254"])
        try run(["ip", "netns", "exec", router, "sysctl", "-qw", "net.ipv4.ip_forward=1"])
    }

    /// Starts a TCP peer (Tests/Support/tcp_peer.py) inside a namespace.
    func peer(in namespace: String, _ arguments: [String]) throws -> Child {
        let script = packageRoot.appendingPathComponent("Tests/Support/tcp_peer.py").path
        return try Child(["ip", "netns", "exec", namespace, "python3", script] + arguments)
    }

    /// The kernel's own counters in one namespace (`nstat -az`: absolute values, the history
    /// file left alone), by name.
    func kernelCounters(in namespace: String, _ names: [String]) throws -> [String: Double] {
        let output = try run(["ip", "netns", "exec", namespace, "nstat", "-asz"] + names).stdout
        var counters: [String: Double] = [:]
        for line in output.split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            if fields.count >= 2, let value = Double(fields[1]) { counters[String(fields[0])] = value }
        }
        return counters
    }

    func remove() {
        guard !removed else { return }
        removed = true
        for namespace in [client, router, server] {
            _ = try? run(["ip", "netns", "del", namespace], check: false)
        }
    }

    deinit { remove() }
}
