// SPDX-License-Identifier: Apache-2.0

import Foundation
import Testing

/// Least privilege: `serve --run-as` drops root after start-up on every thread and keeps
/// serving real flows; a non-root agent starts with exactly CAP_BPF, CAP_PERFMON and
/// CAP_NET_ADMIN and with no fewer; an agent killed with SIGKILL leaves nothing attached and
/// a new one starts cleanly.
///
/// Needs root (BPF, network namespaces, setpriv). Serialized: the tests count flowstat
/// programs in the kernel. Namespaces carry the tag `ra` and this process's pid.
@Suite(.serialized, .enabled(if: isRoot, "needs root: loads BPF programs, creates network namespaces, switches users"))
struct RunAsTests {
    /// nobody and its primary group, as the host's user database has them.
    static let nobody: (uid: UInt32, gid: UInt32) = {
        let entry = getpwnam("nobody")!.pointee
        return (entry.pw_uid, entry.pw_gid)
    }()

    /// The capabilities a non-root agent gets, in setpriv's syntax.
    static let minimalCapabilities = ["bpf", "perfmon", "net_admin"]

    /// setpriv as nobody with exactly these capabilities (inheritable, ambient, bounding).
    static func setpriv(capabilities: [String]) -> [String] {
        let set = (["-all"] + capabilities.map { "+\($0)" }).joined(separator: ",")
        return [
            "setpriv", "--reuid=nobody", "--regid=\(nobody.gid)", "--clear-groups",
            "--inh-caps=\(set)", "--ambient-caps=\(set)", "--bounding-set=\(set)",
        ]
    }

    struct ThreadStatus {
        var tid: String
        var fields: [String: String]
    }

    /// /proc/PID/task/*/status of every thread of a process, as key → value text.
    static func threads(of pid: Int32) throws -> [ThreadStatus] {
        let directory = "/proc/\(pid)/task"
        return try FileManager.default.contentsOfDirectory(atPath: directory).map { tid in
            let text = try String(contentsOfFile: "\(directory)/\(tid)/status", encoding: .utf8)
            var fields: [String: String] = [:]
            for line in text.split(separator: "\n") {
                guard let colon = line.firstIndex(of: ":") else { continue }
                fields[String(line[..<colon])] = line[line.index(after: colon)...]
                    .trimmingCharacters(in: .whitespaces).replacingOccurrences(of: "\t", with: " ")
            }
            return ThreadStatus(tid: tid, fields: fields)
        }
    }

    static func value(_ metrics: Exposition, _ name: String) -> Double {
        metrics.samples(name).first?.value ?? -1
    }

    @Test(
        "--run-as nobody: every thread is nobody with no capability, and scrapes still show new, existing and closed flows"
    )
    func runAsNobody() throws {
        let programsBefore = try EndToEndTests.flowstatPrograms()
        let sockopsBefore = try EndToEndTests.flowstatCgroupAttachments()
        let network = try TestNetwork(tag: "ra")
        defer { network.remove() }
        let server = try EndToEndTests.startServer(network, network.serverIPv4, 5101)
        defer { server.stop() }
        // Flows from before start-up: seeded while the agent is still root.
        let early = try network.peer(in: network.client, ["connect", network.serverIPv4, "5101", "2", "100000"])
        defer { early.stop() }
        let earlyFlows = try EndToEndTests.readFlows(early)

        // In the server's namespace: the server ends are in the agent's own namespace (refreshed
        // by iter/tcp after the switch), the client ends in another (event hooks only).
        let agent = try Agent(["--run-as", "nobody", "--log.level", "debug"], namespace: network.server)
        defer { agent.stop() }
        let pid = agent.process.processIdentifier
        let expectedUid = "\(Self.nobody.uid) \(Self.nobody.uid) \(Self.nobody.uid) \(Self.nobody.uid)"
        let expectedGid = "\(Self.nobody.gid) \(Self.nobody.gid) \(Self.nobody.gid) \(Self.nobody.gid)"
        let threads = try Self.threads(of: pid)
        #expect(threads.count >= 3, "the agent runs NIO and collector threads: \(threads.map(\.tid))")
        for thread in threads {
            #expect(thread.fields["Uid"] == expectedUid, "thread \(thread.tid) Uid \(thread.fields["Uid"] ?? "?")")
            #expect(thread.fields["Gid"] == expectedGid, "thread \(thread.tid) Gid \(thread.fields["Gid"] ?? "?")")
            #expect(thread.fields["Groups"] == "\(Self.nobody.gid)", "thread \(thread.tid) Groups")
            for set in ["CapEff", "CapPrm", "CapAmb"] {
                #expect(
                    thread.fields[set] == "0000000000000000", "thread \(thread.tid) \(set) \(thread.fields[set] ?? "?")"
                )
            }
            #expect(thread.fields["NoNewPrivs"] == "1", "thread \(thread.tid) NoNewPrivs")
        }

        var metrics = try agent.scrape()
        for flow in earlyFlows {
            #expect(EndToEndTests.isExported(metrics, flow), "flow from before start-up \(flow) missing")
        }
        // The refresh still runs unprivileged (bpf_iter_create on the link opened as root):
        // after new data the server ends read exactly as ss reads them now. From events alone
        // the bytes of the last segment would be missing (the hook runs before they count).
        early.send("send 300000")
        #expect(early.readLine() == "sent")
        metrics = try agent.scrape()
        let serverKernel = try network.socketStats(in: network.server)
        for flow in earlyFlows {
            let socket = try #require(
                serverKernel.first { $0.localPort == flow.remotePort && $0.peerPort == flow.localPort })
            let received = metrics.flow(
                "tcp_flow_bytes_received_total", src: flow.remote, sport: flow.remotePort,
                dst: flow.local, dport: flow.localPort)
            #expect(
                received?.value == socket.bytesReceived.map { Double($0) },
                "server end of \(flow): flowstat \(received?.value ?? -1), ss \(socket.bytesReceived ?? 0)")
        }
        let closedBefore = Self.value(metrics, "tcp_flows_closed_total")
        #expect(closedBefore >= 0, "tcp_flows_closed_total missing")

        // New flows after the switch: only the event hooks can have recorded them.
        let late = try network.peer(in: network.client, ["connect", network.serverIPv4, "5101", "3", "200000"])
        defer { late.stop() }
        let lateFlows = try EndToEndTests.readFlows(late)
        metrics = try agent.scrape()
        for flow in lateFlows {
            #expect(EndToEndTests.isExported(metrics, flow), "flow opened after the switch \(flow) missing")
            let acked = metrics.flow(
                "tcp_flow_bytes_acked_total", src: flow.local, sport: flow.localPort,
                dst: flow.remote, dport: flow.remotePort)
            #expect((acked?.value ?? 0) >= 100_000, "bytes acked of \(flow): \(acked?.value ?? -1)")
        }

        // Closed flows leave and are counted (4 socket ends: both sides of 2 connections).
        late.send("close 2")
        #expect(late.readLine() == "closed")
        let closed = lateFlows.prefix(2)
        for _ in 0..<50 {
            metrics = try agent.scrape()
            if !closed.contains(where: { EndToEndTests.isExported(metrics, $0) }),
                Self.value(metrics, "tcp_flows_closed_total") >= closedBefore + 4
            {
                break
            }
            usleep(100_000)
        }
        for flow in closed {
            #expect(!EndToEndTests.isExported(metrics, flow), "closed flow \(flow) still exported")
        }
        // Their final state came through the ring buffer (mapped at start-up) into the aggregates.
        let peerClosed = metrics.samples("tcp_peer_flows_closed_total").reduce(0) { $0 + $1.value }
        #expect(peerClosed >= 4, "tcp_peer_flows_closed_total \(peerClosed)")
        for flow in lateFlows.dropFirst(2) + earlyFlows {
            #expect(EndToEndTests.isExported(metrics, flow), "open flow \(flow) missing")
        }
        #expect(Self.value(metrics, "tcp_flows_closed_total") >= closedBefore + 4)
        let lint = try run(["promtool", "check", "metrics"], check: false, input: metrics.text)
        #expect(lint.status == 0, "promtool: \(lint.stdout)\(lint.stderr)")

        #expect(agent.stop() == 0, "agent did not exit cleanly: \(agent.stderrText)")
        let log = agent.stderrText
        #expect(log.contains("now running as nobody"), "log: \(log)")
        #expect(!log.contains("refresh of netns"), "a refresh failed after the switch: \(log)")
        // Where the refresh must enter namespaces it cannot any more: said at most once, not per scrape.
        #expect(log.components(separatedBy: "refreshing only this network namespace").count <= 2, "log: \(log)")
        #expect(try EndToEndTests.programsLeft(since: programsBefore).isEmpty, "BPF programs left after SIGTERM")
        // Dropping privileges must not keep the agent from detaching sockops from the cgroup.
        #expect(
            try EndToEndTests.flowstatCgroupAttachments() == sockopsBefore,
            "sockops attachments before: \(sockopsBefore) (programs \(programsBefore.sorted()))")
    }

    @Test("--run-as errors are one line naming the problem and the fix, before any BPF program loads")
    func runAsErrors() throws {
        let programsBefore = try EndToEndTests.flowstatPrograms()
        let serve = [flowstatBinary, "serve", "--source", "bpf", "--web.listen-address", "127.0.0.1:0"]

        let unknown = try run(serve + ["--run-as", "fsrunas-nosuchuser"], check: false)
        #expect(unknown.status == 1)
        #expect(unknown.stderr.contains("no user \"fsrunas-nosuchuser\""), "stderr: \(unknown.stderr)")
        #expect(!unknown.stderr.contains("attached"), "BPF loaded before the user was checked: \(unknown.stderr)")

        let badGroup = try run(serve + ["--run-as", "nobody:fsrunas-nosuchgroup"], check: false)
        #expect(badGroup.status == 1)
        #expect(badGroup.stderr.contains("no group \"fsrunas-nosuchgroup\""), "stderr: \(badGroup.stderr)")

        let notRoot = try run(
            Self.setpriv(capabilities: Self.minimalCapabilities) + serve + ["--run-as", "nobody"],
            check: false)
        #expect(notRoot.status == 1)
        #expect(notRoot.stderr.contains("needs the agent to start as root"), "stderr: \(notRoot.stderr)")
        #expect(notRoot.stderr.components(separatedBy: "flowstat: error:").count == 2, "stderr: \(notRoot.stderr)")
        #expect(try EndToEndTests.programsLeft(since: programsBefore).isEmpty)
    }

    @Test("without root, CAP_BPF + CAP_PERFMON + CAP_NET_ADMIN load every hook and serve flows")
    func nonRootWithMinimalCapabilities() throws {
        let programsBefore = try EndToEndTests.flowstatPrograms()
        let network = try TestNetwork(tag: "rc")
        defer { network.remove() }
        let server = try EndToEndTests.startServer(network, network.serverIPv4, 5102)
        defer { server.stop() }

        let agent = try Agent(["--source", "bpf"], launcher: Self.setpriv(capabilities: Self.minimalCapabilities))
        defer { agent.stop() }
        let status = try #require(
            try Self.threads(of: agent.process.processIdentifier).first {
                $0.tid == "\(agent.process.processIdentifier)"
            })
        #expect(status.fields["Uid"]?.hasPrefix("\(Self.nobody.uid) ") == true)
        #expect(status.fields["CapEff"] == "000000c000001000", "CapEff \(status.fields["CapEff"] ?? "?")")

        let client = try network.peer(in: network.client, ["connect", network.serverIPv4, "5102", "2", "100000"])
        defer { client.stop() }
        let flows = try EndToEndTests.readFlows(client)
        let metrics = try agent.scrape()
        let hooks = Set(metrics.samples("flowstat_source_info").compactMap { $0.labels["hook"] })
        #expect(
            hooks.isSuperset(of: ["sockops", "tcp_rcv_established", "inet_sock_set_state", "iter_tcp"]),
            "hooks: \(hooks)")
        for flow in flows {
            #expect(EndToEndTests.isExported(metrics, flow), "flow \(flow) missing")
        }
        #expect(agent.stop() == 0, "agent did not exit cleanly: \(agent.stderrText)")
        // Without CAP_SYS_ADMIN the start-up seeding cannot enter the test's namespaces: said once.
        let log = agent.stderrText
        #expect(log.components(separatedBy: "refreshing only this network namespace").count == 2, "log: \(log)")
        #expect(try EndToEndTests.programsLeft(since: programsBefore).isEmpty)
    }

    @Test(
        "each of CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN is needed: without it --source bpf fails and says so",
        arguments: minimalCapabilities)
    func everyMinimalCapabilityIsNeeded(missing: String) throws {
        let programsBefore = try EndToEndTests.flowstatPrograms()
        let capabilities = Self.minimalCapabilities.filter { $0 != missing }
        let result = try run(
            Self.setpriv(capabilities: capabilities)
                + [flowstatBinary, "serve", "--source", "bpf", "--web.listen-address", "127.0.0.1:0"],
            check: false)
        #expect(result.status == 1, "started without cap_\(missing): \(result.stderr)")
        #expect(result.stderr.contains("cannot start the BPF flow source"), "stderr: \(result.stderr)")
        #expect(try EndToEndTests.programsLeft(since: programsBefore).isEmpty)
    }

    @Test("after kill -9 nothing of flowstat stays attached, and a new agent starts cleanly and serves")
    func restartAfterKillNine() throws {
        let programsBefore = try EndToEndTests.flowstatPrograms()
        let network = try TestNetwork(tag: "rk")
        defer { network.remove() }
        let server = try EndToEndTests.startServer(network, network.serverIPv4, 5103)
        defer { server.stop() }
        let client = try network.peer(in: network.client, ["connect", network.serverIPv4, "5103", "2", "100000"])
        defer { client.stop() }
        let flows = try EndToEndTests.readFlows(client)

        let first = try Agent(["--source", "bpf", "--run-as", "nobody"])
        defer { first.stop() }
        #expect(try !EndToEndTests.flowstatPrograms().subtracting(programsBefore).isEmpty)
        kill(first.process.processIdentifier, SIGKILL)
        first.process.waitUntilExit()
        #expect(try EndToEndTests.programsLeft(since: programsBefore).isEmpty, "programs left after kill -9")
        if programsBefore.isEmpty {  // else another agent's sockops is legitimately there
            let cgroups = try run(["bpftool", "cgroup", "tree"]).stdout
            #expect(!cgroups.contains("flowstat"), "sockops left attached after kill -9: \(cgroups)")
        }

        let second = try Agent(["--source", "bpf"])
        defer { second.stop() }
        let metrics = try second.scrape()
        for flow in flows {
            #expect(EndToEndTests.isExported(metrics, flow), "flow \(flow) missing after the restart")
        }
        let hooks = Set(metrics.samples("flowstat_source_info").compactMap { $0.labels["hook"] })
        #expect(hooks.isSuperset(of: ["sockops", "tcp_rcv_established", "inet_sock_set_state"]), "hooks: \(hooks)")
        #expect(second.stop() == 0, "restarted agent did not exit cleanly: \(second.stderrText)")
        #expect(try EndToEndTests.programsLeft(since: programsBefore).isEmpty)
    }
}
