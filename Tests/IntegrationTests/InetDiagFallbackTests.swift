// SPDX-License-Identifier: Apache-2.0

import Foundation
import Testing

/// The inet_diag fallback source on real flows between two network namespaces, with the agent
/// run as `nobody` without capabilities inside the client's namespace: values checked against
/// `ss -tin`, and `--source auto` checked to fall back, say why, and still serve flows.
///
/// Needs root to set up the namespaces; the agents themselves run unprivileged except in the
/// all-namespaces test. No BPF program is loaded (an unprivileged agent cannot), so these
/// tests do not disturb others that count flowstat's programs. Names carry "diag".
@Suite(.serialized, .enabled(if: isRoot, "needs root: creates network namespaces and drops to nobody"))
struct InetDiagFallbackTests {
    /// `setpriv` as the brief of an unprivileged agent: nobody, no groups, no capabilities.
    static let unprivileged = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--inh-caps=-all"]

    /// A server in the server namespace and clients in the client namespace: IPv4, IPv6 and
    /// IPv4 to a dual-stack listener; returns the clients (to stop) and their flows.
    static func startFlows(_ network: TestNetwork) throws -> (
        servers: [Child], clients: [Child],
        flows: [EndToEndTests.Flow]
    ) {
        let servers = try [
            EndToEndTests.startServer(network, network.serverIPv4, 5101),
            EndToEndTests.startServer(network, network.serverIPv6, 5102),
            EndToEndTests.startServer(network, "::", 5103),
        ]
        let clients = try [
            network.peer(in: network.client, ["connect", network.serverIPv4, "5101", "3", "1000000"]),
            network.peer(in: network.client, ["connect", network.serverIPv6, "5102", "2", "500000"]),
            network.peer(in: network.client, ["connect", network.serverIPv4, "5103", "2", "200000"]),
        ]
        let flows = try clients.flatMap(EndToEndTests.readFlows)
        return (servers, clients, flows)
    }

    static func bytesAgree(_ metrics: Exposition, _ kernel: [SocketStats], _ flow: EndToEndTests.Flow) throws {
        let socket = try #require(kernel.first { $0.localPort == flow.localPort && $0.peerPort == flow.remotePort })
        let acked = try #require(
            metrics.flow(
                "tcp_flow_bytes_acked_total", src: flow.local, sport: flow.localPort,
                dst: flow.remote, dport: flow.remotePort))
        let kernelAcked = Double(try #require(socket.bytesAcked))
        #expect(abs(acked.value - kernelAcked) <= 0.01 * kernelAcked, "bytes acked \(acked.value) vs ss \(kernelAcked)")
    }

    @Test(
        "unprivileged --source inet_diag: its namespace's flows with ss -tin's values, nothing faked, promtool accepts")
    func unprivilegedMatchesSS() throws {
        let network = try TestNetwork(tag: "diag")
        defer { network.remove() }
        let (servers, clients, flows) = try Self.startFlows(network)
        defer { (clients + servers).forEach { $0.stop() } }
        #expect(flows.count == 7)

        let agent = try Agent(["--source", "inet_diag"], namespace: network.client, launcher: Self.unprivileged)
        defer { agent.stop() }
        let metrics = try agent.scrape()
        let kernel = try network.socketStats(in: network.client)
        for flow in flows {
            try EndToEndTests.expectAgreement(
                metrics, kernel, src: flow.local, sport: flow.localPort,
                dst: flow.remote, dport: flow.remotePort)
            try Self.bytesAgree(metrics, kernel, flow)
            // The server's end lives in another namespace, which an unprivileged agent cannot enter.
            #expect(
                metrics.flow(
                    "tcp_flow_rtt_seconds", src: flow.remote, sport: flow.remotePort, dst: flow.local,
                    dport: flow.localPort) == nil, "server end of \(flow) seen without privileges")
        }
        #expect(metrics.samples("tcp_flow_rtt_seconds").allSatisfy { $0.labels["dport"] != "0" }, "a listener")
        let info = metrics.samples("flowstat_source_info")
        #expect(info.count == 1 && info.first?.labels["source"] == "inet_diag" && info.first?.labels["reason"] == nil)
        // Event-only metrics are absent, not zero.
        for name in [
            "tcp_rtt_seconds_count", "tcp_flows_opened_total", "tcp_flows_closed_total",
            "flowstat_map_evictions_total",
        ] {
            #expect(metrics.samples(name).isEmpty, "\(name) exported by the inet_diag source")
        }
        let lint = try run(["promtool", "check", "metrics"], check: false, input: metrics.text)
        #expect(lint.status == 0, "promtool: \(lint.stdout)\(lint.stderr)")

        // More data, then closed flows: the next scrape reads the sockets anew.
        clients[0].send("send 500000")
        #expect(clients[0].readLine() == "sent")
        clients[1].send("close 2")
        #expect(clients[1].readLine() == "closed")
        let after = try agent.scrape()
        let kernelAfter = try network.socketStats(in: network.client)
        for flow in flows.prefix(3) {
            try Self.bytesAgree(after, kernelAfter, flow)
        }
        for flow in flows[3..<5] {
            #expect(!EndToEndTests.isExported(after, flow), "closed flow \(flow) still exported")
        }
        #expect(agent.stop() == 0, "agent did not exit cleanly: \(agent.stderrText)")
    }

    @Test("--source auto without privileges: BPF fails, the agent says why, falls back to inet_diag and serves flows")
    func autoFallsBack() throws {
        let network = try TestNetwork(tag: "diaga")
        defer { network.remove() }
        let (servers, clients, flows) = try Self.startFlows(network)
        defer { (clients + servers).forEach { $0.stop() } }

        let agent = try Agent(["--source", "auto"], namespace: network.client, launcher: Self.unprivileged)
        defer { agent.stop() }
        let metrics = try agent.scrape()
        let info = try #require(metrics.samples("flowstat_source_info").first)
        #expect(info.labels["source"] == "inet_diag")
        let reason = try #require(info.labels["reason"], "no reason label")
        #expect(reason.hasPrefix("bpf: ") && reason.contains("Operation not permitted"), "reason: \(reason)")
        let kernel = try network.socketStats(in: network.client)
        for flow in flows {
            try EndToEndTests.expectAgreement(
                metrics, kernel, src: flow.local, sport: flow.localPort,
                dst: flow.remote, dport: flow.remotePort)
        }
        #expect(try agent.get("/health").status == 200)
        #expect(try agent.get("/").body.contains("Fallback: bpf: "))

        #expect(agent.stop() == 0)
        let log = agent.stderrText
        let warning = try #require(
            log.split(separator: "\n").first { $0.contains("falling back to inet_diag") },
            "no fallback warning in: \(log)")
        #expect(warning.contains("warning"), "not at warning level: \(warning)")
        #expect(warning.contains("Operation not permitted"), "the BPF error is missing: \(warning)")
        #expect(log.contains("Fix: run flowstat as root, or grant it CAP_BPF"), "the hint is missing: \(log)")
    }

    @Test("--source auto as root with a cgroup path that does not exist: falls back (before any BPF loads), says why")
    func autoFallsBackWithoutCgroup() throws {
        let network = try TestNetwork(tag: "diagc")
        defer { network.remove() }
        let (servers, clients, flows) = try Self.startFlows(network)
        defer { (clients + servers).forEach { $0.stop() } }

        // The shim opens the cgroup before it loads anything: no program of this agent reaches
        // the kernel, so other agents' tests cannot see it.
        let agent = try Agent(["--source", "auto", "--bpf.cgroup-path", "/nonexistent-fsdiag"])
        defer { agent.stop() }
        let metrics = try agent.scrape()
        let info = try #require(metrics.samples("flowstat_source_info").first)
        #expect(info.labels["source"] == "inet_diag")
        #expect(info.labels["reason"] == "bpf: open cgroup /nonexistent-fsdiag failed: No such file or directory")
        // As root it reads the client's namespace too (not its own): every client end is there.
        let kernel = try network.socketStats(in: network.client)
        for flow in flows {
            try EndToEndTests.expectAgreement(
                metrics, kernel, src: flow.local, sport: flow.localPort,
                dst: flow.remote, dport: flow.remotePort)
        }
        #expect(agent.stop() == 0)
        let log = agent.stderrText
        #expect(log.contains("falling back to inet_diag") && log.contains("set flowstat.bpf.cgroupPath"), "log: \(log)")

        // Without the fallback, the same fault stops start-up; the fix names the setting both
        // ways: its config key and its flag.
        let bpfOnly = try run(
            [flowstatBinary, "dump", "--source", "bpf", "--bpf.cgroup-path", "/nonexistent-fsdiag"], check: false)
        #expect(bpfOnly.status == 1)
        #expect(
            bpfOnly.stderr.contains("open cgroup /nonexistent-fsdiag failed")
                && bpfOnly.stderr.contains("or set flowstat.bpf.cgroupPath (--bpf.cgroup-path)\n"), "\(bpfOnly.stderr)")
    }

    @Test("with CAP_SYS_ADMIN (root) inet_diag reads every network namespace: both ends of each flow, netns apart")
    func privilegedReadsEveryNamespace() throws {
        let network = try TestNetwork(tag: "diagp")
        defer { network.remove() }
        let (servers, clients, flows) = try Self.startFlows(network)
        defer { (clients + servers).forEach { $0.stop() } }

        let agent = try Agent(["--source", "inet_diag", "--netns-label"])
        defer { agent.stop() }
        let metrics = try agent.scrape()
        let clientKernel = try network.socketStats(in: network.client)
        let serverKernel = try network.socketStats(in: network.server)
        var namespaces: Set<String> = []
        for flow in flows {
            try EndToEndTests.expectAgreement(
                metrics, clientKernel, src: flow.local, sport: flow.localPort,
                dst: flow.remote, dport: flow.remotePort)
            try EndToEndTests.expectAgreement(
                metrics, serverKernel, src: flow.remote, sport: flow.remotePort,
                dst: flow.local, dport: flow.localPort)
            for (src, sport, dst, dport) in [
                (flow.local, flow.localPort, flow.remote, flow.remotePort),
                (flow.remote, flow.remotePort, flow.local, flow.localPort),
            ] {
                let sample = metrics.flow("tcp_flow_cwnd_segments", src: src, sport: sport, dst: dst, dport: dport)
                if let netns = sample?.labels["netns"] { namespaces.insert(netns) }
            }
        }
        #expect(namespaces.count == 2, "client and server ends in two namespaces: \(namespaces)")
        let lint = try run(["promtool", "check", "metrics"], check: false, input: metrics.text)
        #expect(lint.status == 0, "promtool: \(lint.stdout)\(lint.stderr)")
        #expect(agent.stop() == 0)
    }
}
