// SPDX-License-Identifier: Apache-2.0

import Foundation
import Testing

/// Where each flow's time goes, and its loss and recovery fields, on real flows between two
/// network namespaces: a slow reader with a tiny receive buffer (`receiver`), a bulk sender
/// behind a token bucket (`network`), a request-like trickle (`application`), and a sender
/// with a tiny send buffer (`sender_buffer`); each flow's values checked against `ss -tin` read just before and
/// just after the scrape, in the BPF live mode and with the inet_diag source.
///
/// Needs root (namespaces, BPF); run under the BPF lock like the other privileged tests.
/// Names carry "lim".
@Suite(.serialized, .enabled(if: isRoot, "needs root: creates network namespaces and loads BPF programs"))
struct LimitedByTests {
    /// Every detail family on, so that each is compared with ss.
    static let config = """
        logic:
          metrics:
            gauges:
              deliveryRateAppLimited: {active: true}
              notsentBytes: {active: true}
              sendWindow: {active: true}
              receiveRtt: {active: true}
              lostSegments: {active: true}
              retransmitsInFlight: {active: true}
              zeroWindowProbes: {active: true}
            counters:
              reorderingEvents: {active: true}
              dsackDuplicates: {active: true}
              outOfOrderPackets: {active: true}
              rtoTimeouts: {active: true}
              rtoRecoveries: {active: true}
              rtoSeconds: {active: true}
        """

    /// One socket's `ss -tin` fields, by name (`busy:123ms` → "busy": "123ms").
    struct KernelSocket {
        var localPort: UInt16
        var peerPort: UInt16
        var fields: [String: String]

        /// A duration field (`busy`, `rwnd_limited`, `sndbuf_limited`) in seconds; ss prints
        /// whole milliseconds (tcp_info's microseconds divided down) and leaves out zeros.
        func milliseconds(_ name: String) -> Double {
            guard let text = fields[name] else { return 0 }
            return Double(text.prefix { $0.isNumber }).map { $0 / 1000 } ?? 0
        }

        /// A count field ss leaves out when 0.
        func count(_ name: String) -> Double { fields[name].flatMap(Double.init) ?? 0 }

        /// `retrans:a/b`: segments retransmitted now in flight (`tcpi_retrans`).
        var retransInFlight: Double {
            guard let text = fields["retrans"], let slash = text.firstIndex(of: "/") else { return 0 }
            return Double(text[..<slash]) ?? 0
        }

        static func parse(_ text: String) -> [KernelSocket] {
            var sockets: [KernelSocket] = []
            for line in text.split(separator: "\n") {
                if line.first == "\t" || line.first == " " {
                    guard var last = sockets.popLast() else { continue }
                    for token in line.split(whereSeparator: { $0 == " " || $0 == "\t" }) {
                        guard let colon = token.firstIndex(of: ":") else { continue }
                        last.fields[String(token[..<colon])] = String(token[token.index(after: colon)...])
                    }
                    sockets.append(last)
                } else {
                    let columns = line.split(separator: " ", omittingEmptySubsequences: true)
                    guard columns.count >= 5, let local = port(columns[3]), let peer = port(columns[4]) else {
                        continue
                    }
                    sockets.append(KernelSocket(localPort: local, peerPort: peer, fields: [:]))
                }
            }
            return sockets
        }

        private static func port(_ endpoint: Substring) -> UInt16? {
            endpoint.lastIndex(of: ":").flatMap { UInt16(endpoint[endpoint.index(after: $0)...]) }
        }
    }

    static func kernelSockets(_ network: TestNetwork, in namespace: String) throws -> [KernelSocket] {
        KernelSocket.parse(try run(["ip", "netns", "exec", namespace, "ss", "-tinH"]).stdout)
    }

    /// The flow's sample of `name` (with `reason` for the labelled family).
    static func value(
        _ metrics: Exposition, _ name: String, _ flow: EndToEndTests.Flow, reason: String? = nil
    ) -> Double? {
        metrics.samples(name).first {
            $0.labels["src"] == flow.local && $0.labels["sport"] == String(flow.localPort)
                && $0.labels["dst"] == flow.remote && $0.labels["dport"] == String(flow.remotePort)
                && $0.labels["reason"] == reason
        }?.value
    }

    static let reasons = ["network", "receiver", "sender_buffer", "application"]

    /// The reason with the most seconds for the flow, and every reason's seconds.
    static func limitedBy(_ metrics: Exposition, _ flow: EndToEndTests.Flow) throws -> (String, [String: Double]) {
        var seconds: [String: Double] = [:]
        for reason in reasons {
            seconds[reason] = try #require(
                value(metrics, "tcp_flow_limited_seconds_total", flow, reason: reason), "\(reason) of \(flow)")
        }
        let top = reasons.max { seconds[$0]! < seconds[$1]! }!
        return (top, seconds)
    }

    /// flowstat's values for one flow against ss before and after the scrape: counters and
    /// busy times must lie between the two reads (they only grow); gauges must equal ss's for
    /// a `quiescent` flow when both reads agree (a flow moving data changes them between, and
    /// even during, the reads).
    static func expectAgreement(
        _ metrics: Exposition, _ flow: EndToEndTests.Flow, before: KernelSocket, after: KernelSocket,
        timeLimits: Bool, quiescent: Bool
    ) throws {
        func between(_ value: Double?, _ low: Double, _ high: Double, slack: Double, _ what: String) {
            guard let value else {
                Issue.record("\(what) of \(flow) missing")
                return
            }
            #expect(value >= low - slack && value <= high + slack, "\(what) \(value) not in ss [\(low), \(high)]")
        }
        if timeLimits {
            let seconds = try limitedBy(metrics, flow).1
            let busy = seconds["network"]! + seconds["receiver"]! + seconds["sender_buffer"]!
            // ss prints whole milliseconds, cut down: allow one on top of the later read.
            between(busy, before.milliseconds("busy"), after.milliseconds("busy"), slack: 0.001, "busy")
            between(
                seconds["receiver"], before.milliseconds("rwnd_limited"), after.milliseconds("rwnd_limited"),
                slack: 0.001, "rwnd_limited")
            between(
                seconds["sender_buffer"], before.milliseconds("sndbuf_limited"), after.milliseconds("sndbuf_limited"),
                slack: 0.001, "sndbuf_limited")
        }
        for (name, field) in [
            ("tcp_flow_reordering_events_total", "reord_seen"), ("tcp_flow_dsack_duplicates_total", "dsack_dups"),
            ("tcp_flow_out_of_order_packets_total", "rcv_ooopack"),
        ] {
            between(value(metrics, name, flow), before.count(field), after.count(field), slack: 0, field)
        }
        guard quiescent else { return }
        for (name, field) in [
            ("tcp_flow_notsent_bytes", "notsent"), ("tcp_flow_send_window_bytes", "snd_wnd"),
            ("tcp_flow_lost_segments", "lost"),
        ] where before.count(field) == after.count(field) {
            #expect(value(metrics, name, flow) == after.count(field), "\(field) of \(flow)")
        }
        if before.retransInFlight == after.retransInFlight {
            #expect(value(metrics, "tcp_flow_retransmits_in_flight_segments", flow) == after.retransInFlight)
        }
        if before.fields["rcv_rtt"] == after.fields["rcv_rtt"] {
            let kernel = (after.fields["rcv_rtt"].flatMap(Double.init) ?? 0) / 1000
            let exported = value(metrics, "tcp_flow_receive_rtt_seconds", flow) ?? -1
            #expect(abs(exported - kernel) < 1e-6, "rcv_rtt \(exported) vs ss \(kernel)")
        }
    }

    /// Runs the four flows with an agent started first (so it sees them established and knows
    /// their age), scrapes, and checks classification and values. `agentArguments` pick the
    /// source; `inClient`: run the agent in the client's namespace (inet_diag reads its own).
    func scenario(_ tag: String, agentArguments: [String], inClient: Bool, closesAreSeen: Bool) throws {
        let network = try TestNetwork(tag: tag)
        defer { network.remove() }
        let configFile = FileManager.default.temporaryDirectory.appendingPathComponent(
            "flowstat-\(tag)-\(getpid()).yml")
        try Self.config.write(to: configFile, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: configFile) }

        let fast = try EndToEndTests.startServer(network, network.serverIPv4, 5201)
        // 4 KiB of receive buffer read 1000 bytes every 10 ms: the sender's window stays full.
        let slow = try network.peer(
            in: network.server, ["slow-serve", network.serverIPv4, "5202", "4096", "1000", "0.01"])
        #expect(slow.readLine() == "ready")
        let shaped = try EndToEndTests.startServer(network, network.serverIPv6, 5203)
        defer { [fast, slow, shaped].forEach { $0.stop() } }
        // A token bucket on the client's IPv6 route only would need filters; shaping the link
        // is simpler and only slows the bulk flow: the others move a few kB per second.
        try run([
            "ip", "netns", "exec", network.client, "tc", "qdisc", "add", "dev", network.clientLink, "root", "tbf",
            "rate", "20mbit", "burst", "16kb", "latency", "50ms",
        ])
        // The small send buffer gets a path of its own: a token bucket with room to queue (a
        // round trip of milliseconds) and one segment per packet. With the 64 KiB packets of
        // GSO a single packet outgrows a 4 KiB buffer and the window bounds the flow instead;
        // with one segment each, the data in flight stays within the buffer, not the window.
        let buffered = try TestNetwork(tag: tag + "s")
        defer { buffered.remove() }
        try run(["ip", "-n", buffered.client, "link", "set", "dev", buffered.clientLink, "gso_max_segs", "1"])
        try run([
            "ip", "netns", "exec", buffered.client, "tc", "qdisc", "add", "dev", buffered.clientLink, "root", "tbf",
            "rate", "50mbit", "burst", "64kb", "latency", "100ms",
        ])
        let bufferedServer = try EndToEndTests.startServer(buffered, buffered.serverIPv4, 5204)
        defer { bufferedServer.stop() }

        let agent = try Agent(
            agentArguments + ["-c", configFile.path], namespace: inClient ? network.client : nil)
        defer { agent.stop() }

        let peers = try [
            ("receiver", network.peer(in: network.client, ["stream", network.serverIPv4, "5202", "0"])),
            ("network", network.peer(in: network.client, ["stream", network.serverIPv6, "5203", "0"])),
            ("application", network.peer(in: network.client, ["trickle", network.serverIPv4, "5201", "100", "0.2"])),
            ("sndbuf", buffered.peer(in: buffered.client, ["stream", buffered.serverIPv4, "5204", "4096"])),
        ]
        defer { peers.forEach { $0.1.stop() } }
        var flows: [String: EndToEndTests.Flow] = [:]
        for (name, peer) in peers { flows[name] = try #require(EndToEndTests.readFlows(peer).first) }
        // inet_diag learns a flow's age from the first dump that has it.
        _ = try agent.scrape()
        Thread.sleep(forTimeInterval: 3)

        let before =
            try Self.kernelSockets(network, in: network.client) + Self.kernelSockets(buffered, in: buffered.client)
        let metrics = try agent.scrape()
        let after =
            try Self.kernelSockets(network, in: network.client) + Self.kernelSockets(buffered, in: buffered.client)
        // HZ from the coarse clock: this kernel tells it, so the times must be there.
        #expect(!metrics.samples("tcp_flow_limited_seconds_total").isEmpty, "no limited seconds at all")

        // The small send buffer limits its flow only where the path is faster than the
        // writer: ss says whether it did (under emulation the writer itself is the bottleneck).
        var cases = [("receiver", "receiver"), ("network", "network"), ("application", "application")]
        if let buffered = after.first(where: { $0.localPort == flows["sndbuf"]!.localPort }) {
            if buffered.milliseconds("sndbuf_limited") >= buffered.milliseconds("busy") / 2 {
                cases.append(("sndbuf", "sender_buffer"))
            } else {
                print(
                    "lim: not checking the small-send-buffer flow's class: ss shows it sndbuf-limited "
                        + "\(buffered.fields["sndbuf_limited"] ?? "0") of busy \(buffered.fields["busy"] ?? "0")")
            }
        }
        for (name, expected) in cases {
            let flow = flows[name]!
            let (top, seconds) = try Self.limitedBy(metrics, flow)
            #expect(top == expected, "\(name) flow limited by \(top): \(seconds)")
            // The four add up to the flow's age as flowstat knows it: about the 3 s it ran.
            let total = seconds.values.reduce(0, +)
            #expect(total > 2.5 && total < 30, "\(name) flow's seconds sum to \(total)")
        }

        for (name, flow) in flows {
            let match: (KernelSocket) -> Bool = { $0.localPort == flow.localPort && $0.peerPort == flow.remotePort }
            let kernelBefore = try #require(before.first(where: match), "\(name) flow not in ss")
            let kernelAfter = try #require(after.first(where: match), "\(name) flow not in ss after")
            try Self.expectAgreement(
                metrics, flow, before: kernelBefore, after: kernelAfter, timeLimits: true,
                quiescent: name == "application")
        }
        // Loss through the token bucket's queue: retransmissions on the bulk flow, as ss counts them.
        let bulk = flows["network"]!
        let retransmits = try #require(
            metrics.flow(
                "tcp_flow_retransmits_total", src: bulk.local, sport: bulk.localPort, dst: bulk.remote,
                dport: bulk.remotePort)
        ).value
        print(
            "lim: bulk flow retransmits \(retransmits), ss \(after.first { $0.localPort == bulk.localPort }?.fields["retrans"] ?? "-")"
        )
        // Sorted by what limited them, the slow reader's sender comes first, its share shown.
        // (The host may have other flows: only this test's client ends are compared.)
        let api = try agent.get("/api/flows?top=1000&sort=limited")
        let document = try #require(try JSONSerialization.jsonObject(with: Data(api.body.utf8)) as? [String: Any])
        let ours = Set(flows.values.map { "\($0.localPort)-\($0.remotePort)" })
        let first = try #require(
            (document["flows"] as? [[String: Any]])?.first {
                ours.contains("\($0["sport"] as? Int ?? 0)-\($0["dport"] as? Int ?? 0)")
            })
        let receiver = flows["receiver"]!
        #expect(
            first["sport"] as? Int == Int(receiver.localPort) && first["dport"] as? Int == Int(receiver.remotePort),
            "first by limited: \(first)")
        #expect(first["limited_receiver_seconds"] as? Double ?? 0 > 1)

        // Families of fields this kernel lacks are absent, not 0: total_rto* came with 6.7.
        let hasRTO = try kernelHasTotalRTO()
        #expect(!metrics.samples("tcp_flow_rto_timeouts_total").isEmpty == hasRTO, "RTO totals present: \(hasRTO)")

        // Counters never go back (Prometheus would read a reset): the busy flows' application
        // seconds hover at the boundary of age and busy time, where a tick decides.
        var previous: [String: [String: Double]] = [:]
        for _ in 0..<20 {
            let scraped = try agent.scrape()
            for (name, flow) in flows {
                let seconds = try Self.limitedBy(scraped, flow).1
                for reason in Self.reasons {
                    let last = previous[name]?[reason] ?? 0
                    #expect(
                        seconds[reason]! >= last,
                        "\(name) flow's \(reason) seconds fell from \(last) to \(seconds[reason]!)")
                }
                previous[name] = seconds
            }
            Thread.sleep(forTimeInterval: 0.03)
        }

        guard closesAreSeen else { return }
        // A closed flow's seconds stay in its peer's aggregate, so the counters keep growing.
        let trickle = flows["application"]!
        let live = try Self.limitedBy(metrics, trickle).1
        peers[2].1.stop()
        var aggregate: [String: Double] = [:]
        _ = try waitUntil(seconds: 10) {
            let scraped = try agent.scrape()
            for sample in scraped.samples("tcp_peer_limited_seconds_total")
            where sample.labels["peer"] == trickle.remote && sample.labels["port"] == String(trickle.remotePort) {
                aggregate[sample.labels["reason"] ?? ""] = sample.value
            }
            return aggregate.count == 4
        }
        #expect(aggregate.count == 4, "no tcp_peer_limited_seconds_total for the closed flow's peer")
        for reason in Self.reasons {
            let closed = aggregate[reason] ?? -1
            #expect(closed >= live[reason]!, "\(reason): \(closed) < \(live[reason]!) while it lived")
        }
    }

    /// Whether the agent's last live snapshot left the detail fields out: its BPF object's
    /// `snapshot_lean`, read from the kernel with bpftool (the agent's own `.bss` map).
    static func lastSnapshotLean(_ agent: Agent) throws -> Bool {
        // The agent's maps are the map_id lines of its file descriptors' fdinfo.
        let pid = agent.process.processIdentifier
        let fds = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fdinfo")
        let owned = Set(
            fds.compactMap { fd -> Int? in
                let info = (try? String(contentsOfFile: "/proc/\(pid)/fdinfo/\(fd)", encoding: .utf8)) ?? ""
                return info.split(separator: "\n").first { $0.hasPrefix("map_id:") }
                    .flatMap { Int($0.dropFirst("map_id:".count).trimmingCharacters(in: .whitespaces)) }
            })
        let shown = try run(["bpftool", "-j", "map", "show"]).stdout
        let maps = try JSONSerialization.jsonObject(with: Data(shown.utf8)) as? [[String: Any]] ?? []
        let bss = try #require(
            maps.first { map in
                (map["name"] as? String)?.hasSuffix(".bss") == true && owned.contains(map["id"] as? Int ?? -1)
            }, "no .bss map among the agent's maps \(owned.sorted()) (pid \(pid))")
        let id = try #require(bss["id"] as? Int)
        let dump = try run(["bpftool", "-j", "map", "dump", "id", String(id)]).stdout
        let found = try #require(
            dump.range(of: #""snapshot_lean":\s*[0-9]+"#, options: .regularExpression), "no snapshot_lean in \(dump)")
        return dump[found].last == "1"
    }

    @Test(
        "default metrics: a scrape leaves the detail fields out in the kernel (no family of them is on); the page's flows still carry them"
    )
    func leanScrapes() throws {
        let network = try TestNetwork(tag: "limn")
        defer { network.remove() }
        let server = try EndToEndTests.startServer(network, network.serverIPv4, 5201)
        defer { server.stop() }
        let agent = try Agent(["--source", "bpf"])
        defer { agent.stop() }
        let peer = try network.peer(in: network.client, ["stream", network.serverIPv4, "5201", "0"])
        defer { peer.stop() }
        let flow = try #require(EndToEndTests.readFlows(peer).first)
        Thread.sleep(forTimeInterval: 1)
        let metrics = try agent.scrape()
        guard metrics.samples("flowstat_source_info").first?.labels["mode"]?.hasPrefix("live") ?? false else {
            print("lim: lean scrapes are for live modes; this agent runs \(metrics.samples("flowstat_source_info"))")
            return
        }
        #expect(try Self.lastSnapshotLean(agent), "a scrape with the default metrics read the detail fields")
        // The time limits are read all the same: the flow has its four reasons, busy time in them.
        let seconds = try Self.limitedBy(metrics, flow).1
        #expect(seconds["network"]! + seconds["receiver"]! > 0, "\(seconds)")
        #expect(metrics.samples("tcp_flow_lost_segments").isEmpty)

        let api = try agent.get("/api/flows?top=1000")
        #expect(try !Self.lastSnapshotLean(agent), "the page's snapshot was lean")
        let document = try #require(try JSONSerialization.jsonObject(with: Data(api.body.utf8)) as? [String: Any])
        let entry = try #require(
            (document["flows"] as? [[String: Any]])?.first {
                $0["sport"] as? Int == Int(flow.localPort) && $0["dport"] as? Int == Int(flow.remotePort)
            }, "the flow is not on the page")
        #expect(entry["lost_segments"] is NSNumber && entry["notsent_bytes"] is NSNumber, "\(entry)")
    }

    /// Whether the running kernel's tcp_info has tcpi_total_rto (Linux 6.7): asked of its BTF.
    func kernelHasTotalRTO() throws -> Bool {
        let result = try run(
            ["bpftool", "btf", "dump", "file", "/sys/kernel/btf/vmlinux", "format", "raw"], check: false)
        return result.stdout.contains("'tcpi_total_rto'")
    }

    @Test(
        "BPF live mode: receiver, network, application and send-buffer flows classified so; values as ss -tin has them; a closed flow's seconds stay in its peer's aggregate"
    )
    func bpfLive() throws {
        try scenario("limb", agentArguments: ["--source", "bpf"], inClient: false, closesAreSeen: true)
    }

    @Test("BPF event mode: the same flows, the same classification and values")
    func bpfEvent() throws {
        try scenario(
            "lime", agentArguments: ["--source", "bpf", "--bpf.mode", "event"], inClient: false, closesAreSeen: true)
    }

    @Test("inet_diag source: the same flows, the same classification and values")
    func inetDiag() throws {
        try scenario("limd", agentArguments: ["--source", "inet_diag"], inClient: true, closesAreSeen: false)
    }
}
