// SPDX-License-Identifier: Apache-2.0

import Foundation
import Testing

/// The config's flow selection on real flows: two client processes with different names,
/// each with flows to two server ports; a config selecting one command and one remote port
/// range must export exactly that process's flows to that port.
///
/// The BPF map has no owning process (its hooks run in softirq context), so this also
/// checks the /proc attribution that `cmds` needs. Root only, serialized (it loads BPF).
@Suite(.serialized, .enabled(if: isRoot, "needs root: loads BPF programs and creates network namespaces"))
struct SelectionTests {
    @Test(
        "only the flows of the selected command to the selected remote port are exported; the config's other settings apply and flags win over them"
    )
    func selectByCommandAndPort() throws {
        let network = try TestNetwork(tag: "cfg")
        defer { network.remove() }

        // A name longer than the kernel's 15-byte comm, so the config's cmd matches the
        // truncated comm ("fscfg-client-lo"). A symlink: comm is the name exec was given,
        // while Python still finds its library through the resolved path.
        let python = try run(["python3", "-c", "import os, sys; print(os.path.realpath(sys.executable))"])
            .stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let selectedName = "fscfg-client-long-name"
        let selectedPath = "/tmp/\(selectedName)-\(getpid())"
        unlink(selectedPath)
        #expect(symlink(python, selectedPath) == 0)
        defer { unlink(selectedPath) }

        let configPath = "/tmp/fscfg-\(getpid()).yml"
        try """
        # comm of the client is its first 15 bytes: fscfg-client-lo
        logic:
          metrics:
            histograms: {rtt: {bucketBounds: [0.5, 5, 50]}}
            gauges: {cwnd: {active: false}}
          selection:
            process:
              cmds: ["\(selectedName)-\(getpid())"]
            portRanges:
              - {lower: 5101, upper: 5101}
        flowstat:
          web: {listenAddress: "127.0.0.1:1"}   # the test's --web.listen-address wins
          bpf: {mapEntries: 4096}
        """.write(toFile: configPath, atomically: true, encoding: .utf8)
        defer { unlink(configPath) }

        let agent = try Agent(["-c", configPath])
        defer { agent.stop() }

        let servers = try [5101, 5202].map { port in
            try network.peer(in: network.server, ["serve", network.serverIPv4, String(port)])
        }
        defer { servers.forEach { $0.stop() } }
        for server in servers { #expect(server.readLine() == "ready") }

        let script = packageRoot.appendingPathComponent("Tests/Support/tcp_peer.py").path
        func client(_ executable: String, _ port: Int) throws -> Child {
            try Child([
                "ip", "netns", "exec", network.client, executable, script,
                "connect", network.serverIPv4, String(port), "2", "20000",
            ])
        }
        let clients = try [
            (selected: true, client(selectedPath, 5101)),
            (selected: false, client(selectedPath, 5202)),
            (selected: false, client(python, 5101)),
            (selected: false, client(python, 5202)),
        ]
        defer { clients.forEach { $0.1.stop() } }
        var wanted: Set<String> = []
        var unwanted: Set<String> = []
        for (selected, child) in clients {
            for flow in try EndToEndTests.readFlows(child) {
                let id = "\(flow.local):\(flow.localPort)->\(flow.remote):\(flow.remotePort)"
                if selected { wanted.insert(id) } else { unwanted.insert(id) }
                // The server's end belongs to the server process: never selected.
                unwanted.insert("\(flow.remote):\(flow.remotePort)->\(flow.local):\(flow.localPort)")
            }
        }
        #expect(wanted.count == 2 && unwanted.count == 14)
        // The kernel has every one of them.
        let kernel = try network.socketStats(in: network.client)
        #expect(kernel.filter { $0.peerPort == 5101 || $0.peerPort == 5202 }.count == 8)

        func exported(_ metrics: Exposition) -> Set<String> {
            Set(
                metrics.samples("tcp_flow_rtt_seconds").map {
                    "\($0.labels["src"]!):\($0.labels["sport"]!)->\($0.labels["dst"]!):\($0.labels["dport"]!)"
                })
        }
        var metrics = try agent.scrape()
        for _ in 0..<50 where exported(metrics) != wanted {
            usleep(100_000)
            metrics = try agent.scrape()
        }
        #expect(exported(metrics) == wanted)
        #expect(exported(metrics).isDisjoint(with: unwanted))
        #expect(metrics.samples("tcp_flows").first?.value == 2)
        // Every per-flow family follows the selection, not only RTT.
        #expect(metrics.samples("tcp_flow_bytes_acked_total").count == 2)
        // The config's other settings reach the kernel and the encoder.
        #expect(!metrics.text.contains("tcp_flow_cwnd_segments"))
        #expect(metrics.samples("flowstat_map_capacity").first?.value == 4096)
        #expect(
            metrics.samples("tcp_rtt_seconds_bucket").map { $0.labels["le"]! } == ["0.0005", "0.005", "0.05", "+Inf"])

        // Closed flows pass the same selection before they reach the aggregates: once every
        // client has closed its flows, the only closed flows counted are the selected
        // process's two to port 5101 (not the other clients', nor the servers' ends).
        clients.forEach { $0.1.stop() }
        func closed(_ metrics: Exposition) -> [String: Double] {
            Dictionary(
                uniqueKeysWithValues: metrics.samples("tcp_peer_flows_closed_total").map {
                    ("\($0.labels["peer"]!):\($0.labels["port"]!)", $0.value)
                })
        }
        var closedFlows = closed(try agent.scrape())
        _ = waitUntil(seconds: 10) {
            if let scraped = try? agent.scrape() { closedFlows.merge(closed(scraped)) { max($0, $1) } }
            return closedFlows["\(network.serverIPv4):5101"] == 2
        }
        usleep(500_000)  // anything else that closed would have arrived by now
        closedFlows.merge(closed(try agent.scrape())) { max($0, $1) }
        #expect(closedFlows.filter { $0.value > 0 } == ["\(network.serverIPv4):5101": 2])
        #expect(agent.stop() == 0)
    }
}
