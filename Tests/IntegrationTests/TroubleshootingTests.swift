// SPDX-License-Identifier: Apache-2.0

import Foundation
import Testing

/// Loads a page in Debian's headless Chromium and returns the DOM after its scripts ran
/// (`--virtual-time-budget` lets the page's fetches and timers complete first).
func renderedDOM(_ url: String) throws -> String {
    let profile = FileManager.default.temporaryDirectory.appendingPathComponent("fskit-chromium-\(getpid())")
    defer { try? FileManager.default.removeItem(at: profile) }
    let result = try run([
        "timeout", "60", "chromium", "--headless", "--no-sandbox", "--disable-gpu",
        "--user-data-dir=\(profile.path)", "--dump-dom", "--virtual-time-budget=5000", url,
    ])
    return result.stdout
}

/// A tmux server of its own (socket named after this process), for driving `flowstat top`
/// through a real pseudo-terminal; `kill()` (also on deinit) ends that server only.
final class TerminalSession {
    let socket = "fskit\(getpid())"
    private var killed = false

    init(width: Int = 200, height: Int = 40, command: String) throws {
        // Through Python, which closes every other descriptor in the child (close_fds): the
        // tmux server the client forks would otherwise inherit this process's pipes, and the
        // descriptors Foundation watches to learn that a child exited, and hold them open.
        let launch =
            "import subprocess, sys; d = subprocess.DEVNULL; "
            + "sys.exit(subprocess.run(sys.argv[1:], stdin=d, stdout=d, stderr=d).returncode)"
        try run([
            "python3", "-c", launch, "tmux", "-L", socket, "-f", "/dev/null", "new-session", "-d", "-s", "t",
            "-x", String(width), "-y", String(height), command,
        ])
    }

    func screen() throws -> String {
        try run(["tmux", "-L", socket, "capture-pane", "-p", "-t", "t"]).stdout
    }

    func send(_ keys: String...) throws {
        try run(["tmux", "-L", socket, "send-keys", "-t", "t"] + keys)
    }

    /// Polls the screen every 100 ms for up to `seconds` until `condition` holds; returns the
    /// last screen seen.
    func waitFor(seconds: Double = 30, _ condition: (String) -> Bool) throws -> String {
        let deadline = Date().addingTimeInterval(seconds)
        var text = try screen()
        while !condition(text), Date() < deadline {
            usleep(100_000)
            text = try screen()
        }
        return text
    }

    func kill() {
        guard !killed else { return }
        killed = true
        _ = try? run(["tmux", "-L", socket, "kill-server"], check: false)  // the client exits with the server
    }

    deinit { kill() }
}

/// The first table row of a `top` frame (the line after the column headings).
func firstTopRow(_ screen: String) -> String? {
    let lines = screen.split(separator: "\n", omittingEmptySubsequences: false)
    guard let heading = lines.firstIndex(where: { $0.hasPrefix("Local ") }), heading + 1 < lines.count else {
        return nil
    }
    return String(lines[heading + 1])
}

/// `dump`, `top` and the landing page with the demo source: no privileges needed.
@Suite("Troubleshooting views with the demo source")
struct TroubleshootingDemoTests {
    @Test("the landing page renders the demo flows and the RTT chart in a real browser")
    func landingPageInBrowser() throws {
        let agent = try Agent(["--source", "fake"])
        defer { agent.stop() }
        let dom = try renderedDOM("http://127.0.0.1:\(agent.port)/")
        #expect(dom.contains("<td>192.168.10.99:51234</td>"), "\(dom.prefix(3000))")
        #expect(dom.contains("<td>[2001:db8:0:1::2a]:40112</td>"))
        #expect(dom.contains("postgres/987"))
        // The catalogue's page columns, filled by the page's script from /api/flows: the
        // postgres flow's RTT (12.5 ms), delivery rate (8,400,000.5 B/s) and bytes acked.
        #expect(
            dom.contains(#"<td class="n">12.500</td>"#) && dom.contains(#"<td class="n">67.20</td>"#)
                && dom.contains(#"<td class="n">88123456</td>"#), "\(dom.prefix(3000))")
        #expect(dom.contains("showing 3 of 3 flows, by rtt"))
        #expect(dom.contains(#"<svg id="rtt-chart""#))
        // One bar per bucket (19 bounds and the overflow); the tallest is the 1 ms bucket.
        #expect(dom.components(separatedBy: #"<rect class="bar""#).count - 1 == 20)
        #expect(dom.contains("≤ 1ms: 2400 samples"))
        #expect(dom.contains(#"<a href="/metrics">"#))
    }

    @Test("dump --json and top --once print the demo flows; bad flags are refused with the fix")
    func dumpAndTopOnce() throws {
        let json = try run([flowstatBinary, "dump", "--source", "fake", "--json", "--sort", "retrans"]).stdout
        let flows = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [[String: Any]])
        #expect(flows.count == 3)
        #expect(flows.first?["comm"] as? String == "postgres" && flows.first?["retransmits"] as? Int == 17)

        let table = try run([flowstatBinary, "dump", "--source", "fake", "--sort", "bytes", "--limit", "1"]).stdout
        let lines = table.split(separator: "\n")
        #expect(lines.count == 2 && lines[0].hasPrefix("State") && lines[1].contains("postgres/987"), "\(table)")

        // Standard output is a pipe here: one frame, then exit.
        let frame = try run([flowstatBinary, "top", "--source", "fake", "--interval", "0.2", "--sort", "cwnd"]).stdout
        #expect(frame.contains("sort: cwnd") && frame.contains("flows: 3"))
        #expect(firstTopRow(frame)?.contains("[2001:db8::10]:5432") == true, "\(frame)")

        let bad = try run([flowstatBinary, "dump", "--source", "fake", "--sort", "size"], check: false)
        #expect(bad.status != 0 && bad.stderr.contains("size"))
    }

    @Test("dump and top read the config file as serve does: its source and selection, with flags over them")
    func configFile() throws {
        let all = try run([flowstatBinary, "dump", "--source", "fake", "--json"]).stdout
        let allFlows = try #require(try JSONSerialization.jsonObject(with: Data(all.utf8)) as? [[String: Any]])
        let postgres = allFlows.filter { $0["comm"] as? String == "postgres" }
        #expect(!postgres.isEmpty && postgres.count < allFlows.count)

        let path = "/tmp/fs-dump-config-\(getpid()).yml"
        try "flowstat: {source: fake}\nlogic: {selection: {process: {cmds: [postgres]}}}\n"
            .write(toFile: path, atomically: true, encoding: .utf8)
        defer { unlink(path) }
        let selected = try run([flowstatBinary, "dump", "-c", path, "--json"]).stdout
        let flows = try #require(try JSONSerialization.jsonObject(with: Data(selected.utf8)) as? [[String: Any]])
        #expect(flows.count == postgres.count && flows.allSatisfy { $0["comm"] as? String == "postgres" })
        let frame = try run([flowstatBinary, "top", "-c", path, "--interval", "0.2"]).stdout
        #expect(frame.contains("flows: \(postgres.count)"), "\(frame)")

        // A flag wins over the file: this host's flows, not the demo's.
        let real = try run([flowstatBinary, "dump", "-c", path, "--source", "inet_diag", "--json"]).stdout
        #expect(!real.contains("2001:db8::10"))

        try "flowstat: {bpf: {mapEntries: 0}}\n".write(toFile: path, atomically: true, encoding: .utf8)
        let broken = try run([flowstatBinary, "dump", "-c", path], check: false)
        #expect(
            broken.status == 1 && broken.stderr.contains("flowstat.bpf.mapEntries: 0 is out of range"),
            "\(broken.stderr)")
    }
}

/// `dump`, `top` and the landing page on real flows between network namespaces.
///
/// Needs root (BPF, network namespaces); serialized, names carry "kit" and the process id.
@Suite(.serialized, .enabled(if: isRoot, "needs root: loads BPF programs and creates network namespaces"))
struct TroubleshootingLiveTests {
    /// A server, a flow that carried 300 kB and one that carried 20 kB.
    struct Flows {
        let network: TestNetwork
        let server: Child
        let big: Child, small: Child
        let bigFlow: EndToEndTests.Flow, smallFlow: EndToEndTests.Flow

        /// `shaped`: a token bucket on the client's data path, so that these flows' RTTs
        /// (milliseconds) rank above the host's other flows in views sorted by RTT.
        init(tag: String, shaped: Bool = false) throws {
            network = try TestNetwork(tag: tag)
            if shaped {
                try run([
                    "ip", "netns", "exec", network.client, "tc", "qdisc", "add", "dev", network.clientLink, "root",
                    "tbf", "rate", "4mbit", "burst", "16kbit", "latency", "200ms",
                ])
            }
            server = try EndToEndTests.startServer(network, network.serverIPv4, 5001)
            big = try network.peer(in: network.client, ["connect", network.serverIPv4, "5001", "1", "300000"])
            small = try network.peer(in: network.client, ["connect", network.serverIPv4, "5001", "1", "20000"])
            bigFlow = try #require(try EndToEndTests.readFlows(big).first)
            smallFlow = try #require(try EndToEndTests.readFlows(small).first)
        }

        func stop() {
            big.stop()
            small.stop()
            server.stop()
            network.remove()
        }
    }

    @Test("dump: both ends of every flow, values as ss shows them, sorted by the key")
    func dumpOnRealFlows() throws {
        let flows = try Flows(tag: "kd")
        defer { flows.stop() }
        // Only the test's namespaces: the host may have any number of other flows.
        let json = try run([
            flowstatBinary, "dump", "--source", "bpf", "--json", "--sort", "bytes",
            "--netns", flows.network.client, "--netns", flows.network.server,
        ])
        let dumped = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [[String: Any]])
        let kernel = try flows.network.socketStats(in: flows.network.client)
        for flow in [flows.bigFlow, flows.smallFlow] {
            let clientEnd = try #require(
                dumped.first {
                    $0["src"] as? String == flow.local && $0["sport"] as? Int == Int(flow.localPort)
                        && $0["dst"] as? String == flow.remote && $0["dport"] as? Int == Int(flow.remotePort)
                }, "dump lacks \(flow)")
            #expect(
                dumped.contains {
                    $0["src"] as? String == flow.remote && $0["sport"] as? Int == Int(flow.remotePort)
                        && $0["dport"] as? Int == Int(flow.localPort)
                }, "dump lacks the server end of \(flow)")
            let socket = try #require(kernel.first { $0.localPort == flow.localPort })
            #expect(clientEnd["bytes_acked"] as? UInt64 == socket.bytesAcked, "bytes acked vs ss for \(flow)")
            let rtt = try #require(clientEnd["rtt_seconds"] as? Double)
            let kernelRTT = try #require(socket.rttMilliseconds) / 1000
            #expect(abs(rtt - kernelRTT) <= max(0.1 * kernelRTT, 2e-6), "rtt \(rtt) vs ss \(kernelRTT)")
            #expect(clientEnd["state"] as? String == "ESTAB")
        }
        // Sorted by bytes: the two ends of the 300 kB flow come before anything of the 20 kB one.
        let ports = dumped.map { [$0["sport"] as? Int, $0["dport"] as? Int] }
        let bigPort = Int(flows.bigFlow.localPort)
        let smallPort = Int(flows.smallFlow.localPort)
        let firstSmall = try #require(ports.firstIndex { $0.contains(smallPort) })
        #expect(ports.prefix(firstSmall).filter { $0.contains(bigPort) }.count == 2)
        #expect(dumped.count == 4, "--netns keeps the test's two flows, both ends: \(dumped)")

        let table = try run([flowstatBinary, "dump", "--source", "bpf"]).stdout
        #expect(table.hasPrefix("State  Local"))
        #expect(
            table.contains("\(flows.bigFlow.local):\(flows.bigFlow.localPort)")
                && table.contains("\(flows.bigFlow.remote):\(flows.bigFlow.remotePort)"))
    }

    @Test("top in a pseudo-terminal: flows appear, keys switch the sort, q quits and the terminal is restored")
    func topInTerminal() throws {
        let flows = try Flows(tag: "kt")
        defer { flows.stop() }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("fskit-top-\(getpid())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let before = directory.appendingPathComponent("before").path
        let after = directory.appendingPathComponent("after").path
        // Only the client namespace: the host may have more flows than the screen shows.
        let command =
            "stty -g > \(before); \(flowstatBinary) top --source bpf --interval 0.5 --netns \(flows.network.client); "
            + "echo flowstat-exited-$?; stty -g > \(after); sleep 120"
        let terminal = try TerminalSession(command: command)
        defer { terminal.kill() }

        let bigClient = "\(flows.bigFlow.local):\(flows.bigFlow.localPort)"
        let smallClient = "\(flows.smallFlow.local):\(flows.smallFlow.localPort)"
        var screen = try terminal.waitFor { $0.contains(bigClient) && $0.contains(smallClient) }
        #expect(screen.contains("sort: rtt"), "\(screen)")
        #expect(screen.contains(bigClient) && screen.contains(smallClient), "\(screen)")

        // c: by congestion window; the 300 kB flow's sender grew its window, nothing else sent.
        try terminal.send("c")
        screen = try terminal.waitFor { $0.contains("sort: cwnd") }
        #expect(screen.contains("sort: cwnd"), "\(screen)")
        #expect(firstTopRow(screen)?.hasPrefix(bigClient) == true, "\(screen)")

        // b: by bytes per second; only the 300 kB flow moves data while the screen is read.
        try terminal.send("b")
        screen = try terminal.waitFor { $0.contains("sort: bytes") }
        #expect(screen.contains("sort: bytes"), "\(screen)")
        // A burst on the big flow: the frame after it shows its ends with a byte rate, first.
        func leadsWithTraffic(_ screen: String) -> Bool {
            guard let row = firstTopRow(screen) else { return false }
            let columns = row.split(separator: " ")
            guard columns.count > 7, row.contains(":\(flows.bigFlow.localPort)") else { return false }
            return columns[6] != "0B" || columns[7] != "0B"  // tx/s, rx/s
        }
        flows.big.send("send 3000000")
        #expect(flows.big.readLine() == "sent")
        screen = try terminal.waitFor(seconds: 10, leadsWithTraffic)
        #expect(leadsWithTraffic(screen), "the 300 kB flow should lead by bytes/s after its burst: \(screen)")

        try terminal.send("q")
        screen = try terminal.waitFor { $0.contains("flowstat-exited-") }
        #expect(screen.contains("flowstat-exited-0"), "\(screen)")
        #expect(!screen.contains("sort: bytes"), "the alternate screen was not left: \(screen)")
        let saved = try String(contentsOfFile: before, encoding: .utf8)
        let restored = try String(contentsOfFile: after, encoding: .utf8)
        #expect(!saved.isEmpty && saved == restored, "terminal settings before \(saved) after \(restored)")
    }

    @Test("top: Ctrl-C also restores the terminal and exits with 130")
    func topInterrupted() throws {
        let flows = try Flows(tag: "ki")
        defer { flows.stop() }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("fskit-int-\(getpid())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let before = directory.appendingPathComponent("before").path
        let after = directory.appendingPathComponent("after").path
        let terminal = try TerminalSession(
            command:
                "stty -g > \(before); \(flowstatBinary) top --source bpf; echo flowstat-exited-$?; stty -g > \(after); sleep 120"
        )
        defer { terminal.kill() }
        var screen = try terminal.waitFor { $0.contains("sort: rtt") }
        try #require(screen.contains("sort: rtt"), "top did not start: \(screen)")
        try terminal.send("C-c")
        screen = try terminal.waitFor { $0.contains("flowstat-exited-") }
        #expect(screen.contains("flowstat-exited-130"), "\(screen)")
        let saved = try String(contentsOfFile: before, encoding: .utf8)
        let restored = try String(contentsOfFile: after, encoding: .utf8)
        #expect(!saved.isEmpty && saved == restored)
    }

    @Test("the landing page in a real browser shows the real flows and the kernel's RTT histogram")
    func landingPageOnRealFlows() throws {
        // The agent first, so that sockops sees the flows open; the page shows the top 50 by
        // RTT of every flow on the host, so the test's flows queue behind a token bucket.
        let agent = try Agent()
        defer { agent.stop() }
        let flows = try Flows(tag: "kb", shaped: true)
        defer { flows.stop() }
        let dom = try renderedDOM("http://127.0.0.1:\(agent.port)/")
        for flow in [flows.bigFlow, flows.smallFlow] {
            #expect(dom.contains("<td>\(flow.local):\(flow.localPort)</td>"), "\(flow) missing: \(dom.prefix(4000))")
            #expect(dom.contains("<td>\(flow.remote):\(flow.remotePort)</td>"))
        }
        #expect(dom.contains(#"<svg id="rtt-chart""#) && dom.contains(#"<rect class="bar""#))
        #expect(dom.contains("Source: bpf"))
        #expect(agent.stop() == 0)
    }
}
