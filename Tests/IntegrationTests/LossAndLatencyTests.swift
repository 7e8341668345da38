// SPDX-License-Identifier: Apache-2.0

import Foundation
import Testing

/// Loss and latency the kernel counts at the event: host-wide retransmissions by kind against
/// the kernel's own MIB counters (`nstat`) of the namespaces where real loss was made, and
/// against a second BPF program on the same tracepoint (`RetransmitWitness`).
///
/// flowstat counts on the whole host; the test's namespaces are the only ones with made loss,
/// so other traffic can only add to flowstat's side: each check is "at least what the
/// namespaces counted, and not more than a small allowance above".
@Suite(.serialized, .enabled(if: isRoot, "needs root: loads BPF programs and creates network namespaces"))
struct LossAndLatencyTests {
    static let mibNames = [
        "TcpRetransSegs", "TcpExtTCPRetransFail", "TcpExtTCPFastRetrans", "TcpExtTCPSlowStartRetrans",
        "TcpExtTCPLossProbes", "TcpExtTCPTimeouts",
    ]

    /// The kernel's counters summed over the namespaces.
    static func mibs(_ network: RoutedTestNetwork) throws -> [String: Double] {
        var total: [String: Double] = [:]
        for namespace in [network.client, network.server] {
            total.merge(try network.kernelCounters(in: namespace, mibNames), uniquingKeysWith: +)
        }
        return total
    }

    struct Retransmits: CustomStringConvertible {
        var fast = 0.0, rto = 0.0, lossProbe = 0.0, timeouts = 0.0
        var total: Double { fast + rto + lossProbe }
        var description: String { "fast \(fast), rto \(rto), loss_probe \(lossProbe), RTO timeouts \(timeouts)" }

        init() {}

        init(_ metrics: Exposition) throws {
            func kind(_ name: String) throws -> Double {
                try #require(metrics.samples("tcp_retransmits_total").first { $0.labels["kind"] == name }).value
            }
            fast = try kind("fast")
            rto = try kind("rto")
            lossProbe = try kind("loss_probe")
            timeouts = try #require(metrics.samples("tcp_rto_timeouts_total").first).value
        }

        static func - (after: Retransmits, before: Retransmits) -> Retransmits {
            var delta = Retransmits()
            delta.fast = after.fast - before.fast
            delta.rto = after.rto - before.rto
            delta.lossProbe = after.lossProbe - before.lossProbe
            delta.timeouts = after.timeouts - before.timeouts
            return delta
        }
    }

    /// What other traffic on the host may add over the test's window.
    static func allowance(_ expected: Double) -> Double { max(20, expected * 0.05) }

    @Test(
        "host-wide retransmits by kind and RTO timeouts match the kernel's MIB counters (nstat) of the namespaces with real loss, and exactly what an independent BPF program counted"
    )
    func retransmitsMatchTheKernelsCounters() throws {
        let network = try RoutedTestNetwork(tag: "rx")
        defer { network.remove() }
        // 20 Mbit/s with room for 12 KB of queue at the router: bulk data overflows it and is
        // dropped there, so the client recovers by SACK, tail-loss probes and timeouts.
        try run([
            "ip", "netns", "exec", network.router, "tc", "qdisc", "add", "dev", network.routerToServerLink, "root",
            "tbf", "rate", "20mbit", "burst", "8kb", "limit", "12kb",
        ])
        let agent = try Agent()
        defer { agent.stop() }
        let metrics = try agent.scrape()
        let hook = try #require(
            metrics.samples("flowstat_source_info").first { $0.labels["hook"] == "tcp_retransmit_skb" },
            "the retransmit hook attaches (tp_btf, else raw_tp): \(agent.stderrText)")
        #expect(["tp_btf", "raw_tp"].contains(hook.labels["variant"] ?? ""))
        let missing = metrics.samples("flowstat_source_hook_missing").first {
            $0.labels["hook"] == "tcp_retransmit_skb"
        }
        #expect(missing?.value == 0)

        let server = try network.peer(in: network.server, ["serve", network.serverIPv4, "5001"])
        defer { server.stop() }
        #expect(server.readLine() == "ready")

        // The witness's window holds flowstat's: it reads first and last.
        let witness = try RetransmitWitness()
        defer { witness.stop() }
        let kernelBefore = try Self.mibs(network)
        let witnessBefore = try witness.segments()
        let before = try Retransmits(agent.scrape())
        let client = try network.peer(in: network.client, ["connect", network.serverIPv4, "5001", "4", "2000000"])
        defer { client.stop() }
        // The JSON line comes once every byte is acknowledged: all recovery is over.
        _ = try #require(client.readLine(), "the transfer through the lossy hop completed")
        let counted = try Retransmits(agent.scrape()) - before
        let delivered = try witness.segments() - witnessBefore
        let kernelAfter = try Self.mibs(network)
        func kernel(_ name: String) -> Double { (kernelAfter[name] ?? 0) - (kernelBefore[name] ?? 0) }

        let sent = kernel("TcpRetransSegs") - kernel("TcpExtTCPRetransFail")
        // Segments the kernel counted but ran no BPF program for (see RetransmitWitness):
        // no program can count them, so each kind may fall short of the MIB by this many.
        let undelivered = max(0, sent - delivered)
        print(
            "retransmits: flowstat \(counted); witness \(delivered); kernel (namespaces): TcpRetransSegs \(kernel("TcpRetransSegs")), "
                + "TCPRetransFail \(kernel("TcpExtTCPRetransFail")), TCPFastRetrans \(kernel("TcpExtTCPFastRetrans")), "
                + "TCPSlowStartRetrans \(kernel("TcpExtTCPSlowStartRetrans")), TCPLossProbes \(kernel("TcpExtTCPLossProbes")), "
                + "TCPTimeouts \(kernel("TcpExtTCPTimeouts"))")
        try #require(sent >= 50, "the token bucket made loss: \(sent) segments retransmitted")
        // Seen up to 1% on this machine's 6.18; far more would leave the MIB checks below weak.
        try #require(
            undelivered <= sent * 0.05,
            "the kernel ran BPF programs for \(delivered) of \(sent) retransmitted segments")

        // Every segment the kernel handed to BPF programs, however it was classified.
        #expect(counted.total == delivered, "total: \(counted); the witness counted \(delivered)")
        #expect(counted.total <= sent + Self.allowance(sent), "total: \(counted)")
        // Recovery outside Loss is what tcp_xmit_retransmit_queue() counts as TCPFastRetrans;
        // in Loss it counts TCPSlowStartRetrans, and the timer's own resend is one per timeout.
        let fast = kernel("TcpExtTCPFastRetrans")
        #expect(
            counted.fast >= fast - undelivered && counted.fast <= fast + Self.allowance(fast), "fast: \(counted)")
        let rto = kernel("TcpExtTCPSlowStartRetrans")
        #expect(counted.rto >= rto - undelivered, "rto: \(counted)")
        // TCPTimeouts counts only a flow's first timeout from Open; backed-off ones add to ours.
        #expect(counted.timeouts >= kernel("TcpExtTCPTimeouts"), "timeouts: \(counted)")
        #expect(counted.rto <= rto + counted.timeouts + Self.allowance(rto), "rto: \(counted)")
        // A probe sends new data when it can (counted by the kernel, not a retransmission).
        let probes = kernel("TcpExtTCPLossProbes")
        #expect(counted.lossProbe <= probes + Self.allowance(probes), "loss_probe: \(counted)")
        #expect(agent.stop() == 0)
    }

    // MARK: - RTT per service and per peer group

    /// One labelled series of an RTT histogram family: (upper bound, cumulative count).
    static func histogram(
        _ metrics: Exposition, _ family: String, _ label: String, _ value: String
    ) -> [(le: Double, count: Double)] {
        metrics.samples("\(family)_bucket").filter { $0.labels[label] == value }.map {
            (le: $0.labels["le"] == "+Inf" ? Double.infinity : Double($0.labels["le"]!)!, count: $0.value)
        }
    }

    /// Samples added between two readings of one series (an absent series has none), and
    /// of those, how many above `bound` seconds.
    static func added(
        _ before: [(le: Double, count: Double)], _ after: [(le: Double, count: Double)], above bound: Double
    ) -> (total: Double, above: Double) {
        func total(_ buckets: [(le: Double, count: Double)]) -> Double { buckets.last?.count ?? 0 }
        func atOrBelow(_ buckets: [(le: Double, count: Double)]) -> Double {
            buckets.last { $0.le <= bound }?.count ?? 0
        }
        let added = total(after) - total(before)
        return (added, added - (atOrBelow(after) - atOrBelow(before)))
    }

    static func writeConfig(_ text: String) throws -> String {
        let path = NSTemporaryDirectory() + "flowstat-rtt-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).yml"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// Smoothed RTTs, seconds, of the client's flows to one server port, as `ss -tin` shows them.
    static func kernelRTTs(_ network: RoutedTestNetwork, port: UInt16) throws -> [Double] {
        let text = try run(["ip", "netns", "exec", network.client, "ss", "-tinH"]).stdout
        return SocketStats.parse(text).filter { $0.peerPort == port }.compactMap {
            $0.rttMilliseconds.map { $0 / 1000 }
        }
    }

    @Test(
        "per-service and per-peer-group RTT histograms: a queueing path's service and group get high samples, a plain one's low, a group without flows none",
        arguments: ["default", "event"])
    func rttPerServiceAndPeerGroup(mode: String) throws {
        let network = try RoutedTestNetwork(tag: "sv")
        defer { network.remove() }
        let config = try Self.writeConfig(
            """
            logic:
              metrics:
                histograms:
                  rtt:
                    maxServicePorts: 64
                    peerGroups:
                      servers: [10.233.2.0/24]
                      nobody: [192.0.2.0/24, "2001:db8::/32"]
            """)
        defer { try? FileManager.default.removeItem(atPath: config) }
        let agent = try Agent(["--config", config] + (mode == "default" ? [] : ["--bpf.mode", mode]))
        defer { agent.stop() }
        var servers: [Child] = []
        defer { for server in servers { server.stop() } }
        for port in ["6001", "6002"] {
            let server = try network.peer(in: network.server, ["serve", network.serverIPv4, port])
            #expect(server.readLine() == "ready")
            servers.append(server)
        }
        let family = "tcp_service_rtt_seconds"
        let groups = "tcp_peer_group_rtt_seconds"
        let start = try agent.scrape()

        // Port 6001 over the plain path: tens of microseconds.
        let plain = try network.peer(in: network.client, ["connect", network.serverIPv4, "6001", "2", "2000000"])
        defer { plain.stop() }
        _ = try #require(plain.readLine())
        let plainRTTs = try Self.kernelRTTs(network, port: 6001)
        let middle = try agent.scrape()

        // Port 6002 behind a token bucket with 200 ms of queue at the router: bulk data waits.
        try run([
            "ip", "netns", "exec", network.router, "tc", "qdisc", "add", "dev", network.routerToServerLink, "root",
            "tbf", "rate", "4mbit", "burst", "16kbit", "latency", "200ms",
        ])
        let shaped = try network.peer(in: network.client, ["connect", network.serverIPv4, "6002", "1", "1000000"])
        defer { shaped.stop() }
        _ = try #require(shaped.readLine())
        let shapedRTTs = try Self.kernelRTTs(network, port: 6002)
        let end = try agent.scrape()

        // The oracle for each path: what the kernel's own smoothed RTT says of its flows. The
        // bound between "low" and "high" is a bucket edge well above the plain path's RTT (5 ms,
        // or 4 times ss's RTT where the kernel runs emulated and even a veth takes milliseconds).
        try #require(!plainRTTs.isEmpty && !shapedRTTs.isEmpty, "ss shows the flows")
        let edges = Self.histogram(end, family, "port", "6001").map(\.le).filter(\.isFinite)
        let bound = try #require(edges.first { $0 >= max(0.005, 4 * plainRTTs.max()!) }, "edges: \(edges)")
        let plainService = Self.added(
            Self.histogram(start, family, "port", "6001"), Self.histogram(end, family, "port", "6001"), above: bound)
        let shapedService = Self.added(
            Self.histogram(middle, family, "port", "6002"), Self.histogram(end, family, "port", "6002"), above: bound)
        print(
            "\(mode): above \(bound) s: port 6001 \(plainService), ss \(plainRTTs); port 6002 \(shapedService), ss \(shapedRTTs)"
        )
        #expect(shapedRTTs.allSatisfy { $0 > bound }, "ss: the shaped path queues above \(bound) s")
        #expect(plainService.total >= 20 && plainService.above <= plainService.total * 0.1, "6001: \(plainService)")
        #expect(shapedService.total >= 10 && shapedService.above >= shapedService.total * 0.5, "6002: \(shapedService)")

        // The servers' network: the client's sockets' samples, the path's delay in each phase.
        let groupPlain = Self.added(
            Self.histogram(start, groups, "peer_group", "servers"),
            Self.histogram(middle, groups, "peer_group", "servers"), above: bound)
        let groupShaped = Self.added(
            Self.histogram(middle, groups, "peer_group", "servers"),
            Self.histogram(end, groups, "peer_group", "servers"), above: bound)
        let nobody = Self.added(
            Self.histogram(start, groups, "peer_group", "nobody"), Self.histogram(end, groups, "peer_group", "nobody"),
            above: bound)
        print("\(mode): group servers plain \(groupPlain), shaped \(groupShaped); nobody \(nobody)")
        #expect(groupPlain.total >= 10 && groupPlain.above <= groupPlain.total * 0.1, "servers, plain: \(groupPlain)")
        #expect(
            groupShaped.total >= 5 && groupShaped.above >= groupShaped.total * 0.5, "servers, shaped: \(groupShaped)")
        #expect(Self.histogram(end, groups, "peer_group", "nobody").last?.count == 0, "nobody: \(nobody)")
        #expect(agent.stop() == 0)
    }

    @Test("service ports past maxServicePorts share port=\"other\", and the series stay within the bound")
    func servicePortsPastTheBoundFoldIntoOther() throws {
        let network = try RoutedTestNetwork(tag: "so")
        defer { network.remove() }
        let limit = 2
        let config = try Self.writeConfig(
            "logic: {metrics: {histograms: {rtt: {maxServicePorts: \(limit)}}}}\n")
        defer { try? FileManager.default.removeItem(atPath: config) }
        let agent = try Agent(["--config", config])
        defer { agent.stop() }
        let family = "tcp_service_rtt_seconds"
        var previous = try agent.scrape()
        // The host's own traffic (this agent's scrapes among it) takes slots first: whichever
        // ports got one, every sample of a port without one must land in "other".
        for port in ["6101", "6102", "6103"] {
            let server = try network.peer(in: network.server, ["serve", network.serverIPv4, port])
            defer { server.stop() }
            #expect(server.readLine() == "ready")
            let client = try network.peer(in: network.client, ["connect", network.serverIPv4, port, "1", "1000000"])
            defer { client.stop() }
            _ = try #require(client.readLine())
            let now = try agent.scrape()
            let ports = Set(now.samples("\(family)_count").compactMap { $0.labels["port"] })
            #expect(ports.subtracting(["other"]).count <= limit, "at most \(limit) ports: \(ports.sorted())")
            #expect(ports.contains("other"))
            let own = Self.added(
                Self.histogram(previous, family, "port", port), Self.histogram(now, family, "port", port), above: 1)
            let other = Self.added(
                Self.histogram(previous, family, "port", "other"), Self.histogram(now, family, "port", "other"),
                above: 1)
            // A 1 MB transfer takes dozens of samples natively, under ten on an emulated kernel.
            if ports.contains(port) {
                #expect(own.total >= 3, "\(port) has its own series: \(own)")
            } else {
                #expect(other.total >= 3, "\(port) has no series of its own: its samples are in other: \(other)")
            }
            previous = now
        }
        let ports = Set(previous.samples("\(family)_count").compactMap { $0.labels["port"] })
        #expect(!ports.isSuperset(of: ["6101", "6102", "6103"]), "three test ports cannot all fit in \(limit)")
        #expect(agent.stop() == 0)
    }

    // MARK: - Exemplars

    @Test(
        "a real Prometheus with exemplar storage scrapes OpenMetrics and returns RTT exemplars that name flows ss shows"
    )
    func exemplarsReachPrometheus() throws {
        let network = try RoutedTestNetwork(tag: "ex")
        defer { network.remove() }
        // A queue at the router: these flows' RTTs (tens of milliseconds and more) stand above
        // the host's other traffic, so the high buckets' worst flows are these.
        try run([
            "ip", "netns", "exec", network.router, "tc", "qdisc", "add", "dev", network.routerToServerLink, "root",
            "tbf", "rate", "4mbit", "burst", "16kbit", "latency", "200ms",
        ])
        let agent = try Agent()
        defer { agent.stop() }
        let server = try network.peer(in: network.server, ["serve", network.serverIPv4, "6201"])
        defer { server.stop() }
        #expect(server.readLine() == "ready")
        let client = try network.peer(in: network.client, ["connect", network.serverIPv4, "6201", "3", "300000"])
        defer { client.stop() }  // the flows stay open until then
        _ = try #require(client.readLine())

        let prometheus = try PrometheusServer(
            name: "fsexemplar", target: "127.0.0.1:\(agent.port)", flags: ["--enable-feature=exemplar-storage"])
        defer { prometheus.stop() }
        let kernel = try run(["ip", "netns", "exec", network.client, "ss", "-tnH"]).stdout
        let ours = Set(
            SocketStats.parse(kernel).map { "\($0.local) \($0.localPort) \($0.peer) \($0.peerPort)" })
        try #require(ours.count == 3, "ss -tn shows the client's flows: \(kernel)")

        var found: [[String: String]] = []
        var seen = ""
        let stored = try prometheus.wait(seconds: 30) {
            let now = Date().timeIntervalSince1970
            let answer = try prometheus.api(
                "/api/v1/query_exemplars",
                ["query": "tcp_rtt_seconds_bucket", "start": String(now - 60), "end": String(now + 1)])
            seen = String(describing: answer)
            found = []
            for series in answer as? [[String: Any]] ?? [] {
                let le = (series["seriesLabels"] as? [String: String])?["le"] ?? ""
                for exemplar in series["exemplars"] as? [[String: Any]] ?? [] {
                    guard var labels = exemplar["labels"] as? [String: String] else { continue }
                    labels["le"] = le
                    labels["value"] = exemplar["value"] as? String
                    found.append(labels)
                }
            }
            return found.contains {
                ours.contains("\($0["src"] ?? "") \($0["sport"] ?? "") \($0["dst"] ?? "") \($0["dport"] ?? "")")
            }
        }
        #expect(stored, "no exemplar names a flow of ss -tn \(ours.sorted()): \(seen)")
        for exemplar in found {
            // Each is a flow's smoothed RTT, inside the bucket it is attached to.
            let value = Double(exemplar["value"] ?? "") ?? -1
            let le = exemplar["le"] == "+Inf" ? Double.infinity : Double(exemplar["le"] ?? "") ?? -1
            #expect(value > 0 && value <= le, "\(exemplar)")
            #expect(Set(exemplar.keys) == ["src", "sport", "dst", "dport", "le", "value"], "\(exemplar)")
        }
        #expect(agent.stop() == 0)
    }
}
