// SPDX-License-Identifier: Apache-2.0

import Foundation
import Testing

/// Flows named by their cgroup, container and pod, on real cgroups and real flows: the test
/// makes cgroup v2 directories under the unified mount, shaped exactly as Docker and
/// containerd (Kubernetes, systemd driver) name theirs, moves peer processes into them
/// before they open sockets, and checks what the agent reports against the kernel's own
/// answer (`/proc/PID/cgroup`, the directory's inode) and against the ids it wrote into the
/// paths. One client opens its flows before the agent starts (seen first by the iterator),
/// one after (sockops). Root only, serialized (it loads BPF).
@Suite(.serialized, .enabled(if: isRoot, "needs root: loads BPF programs and creates cgroups"))
struct WorkloadTests {
    static let dockerID = "4e6f1c0b2a9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f"
    static let containerdID = "9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b"
    static let podUID = "0b3c1f4e-8a8f-4c4b-9d4e-2f6c1b0a9e11"

    /// The cgroup2 mount, read from /proc/mounts here rather than through the agent's code.
    static func cgroup2Mount() throws -> String {
        let mounts = try String(contentsOfFile: "/proc/self/mounts", encoding: .utf8)
        let line = try #require(mounts.split(separator: "\n").first { $0.split(separator: " ")[2] == "cgroup2" })
        return String(line.split(separator: " ")[1])
    }

    /// The process's cgroup v2 path, as the kernel reports it ("0::/path").
    static func cgroupOf(pid: Int32) throws -> String {
        let text = try String(contentsOfFile: "/proc/\(pid)/cgroup", encoding: .utf8)
        let line = try #require(text.split(separator: "\n").first { $0.hasPrefix("0::") })
        return String(line.dropFirst(3))
    }

    /// A peer started inside `cgroup` (its own shell moves itself there, then execs Python).
    static func peer(in cgroup: String, _ arguments: [String]) throws -> Child {
        let script = packageRoot.appendingPathComponent("Tests/Support/tcp_peer.py").path
        let command = "echo $$ > '\(cgroup)/cgroup.procs' && exec python3 \(script) \(arguments.joined(separator: " "))"
        return try Child(["sh", "-c", command])
    }

    struct ClientFlow: Decodable {
        var local: [JSONValue]
        var remote: [JSONValue]
        var localPort: Int { if case .number(let port) = local[1] { Int(port) } else { -1 } }
    }

    enum JSONValue: Decodable {
        case number(Double)
        case text(String)
        init(from decoder: Decoder) throws {
            let container = try decoder.singleValueContainer()
            if let number = try? container.decode(Double.self) {
                self = .number(number)
            } else {
                self = .text(try container.decode(String.self))
            }
        }
    }

    @Test(
        "each flow carries its socket's cgroup path (as /proc/PID/cgroup says), cgroup id (the directory's inode), and the container and pod its path names; labels container and pod follow"
    )
    func flowsNamedByCgroup() throws {
        let mount = try Self.cgroup2Mount()
        let base = "/flowstat-cg-\(getpid())"
        let plain = base + "/plain"
        let docker = base + "/system.slice/docker-\(Self.dockerID).scope"
        let kube =
            base + "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod"
            + Self.podUID.replacingOccurrences(of: "-", with: "_") + ".slice/cri-containerd-\(Self.containerdID).scope"
        let cgroups = try TestCgroups(mount: mount, base: base, leaves: [plain, docker, kube])
        var children: [Child] = []
        defer {
            children.forEach { $0.stop() }
            cgroups.remove()
        }

        let port = try Agent.freePort()
        let server = try Self.peer(in: mount + plain, ["serve", "127.0.0.1", String(port)])
        children.append(server)
        #expect(server.readLine() == "ready")
        #expect(try Self.cgroupOf(pid: server.process.processIdentifier) == plain)

        // Before the agent: these flows are found by its start-up iterator.
        let early = try Self.peer(in: mount + docker, ["connect", "127.0.0.1", String(port), "2", "1000"])
        children.append(early)
        let earlyFlows = try JSONDecoder().decode([ClientFlow].self, from: Data(try #require(early.readLine()).utf8))
        #expect(try Self.cgroupOf(pid: early.process.processIdentifier) == docker)

        let configPath = "/tmp/fscg-\(getpid()).yml"
        try """
        flowstat:
          cardinality: {maxFlows: 0}
          labels: {container: true, pod: true, namespace: true}
        """.write(toFile: configPath, atomically: true, encoding: .utf8)
        defer { unlink(configPath) }
        let agent = try Agent(["-c", configPath, "--source", "bpf"])
        defer { _ = agent.stop() }

        let late = try Self.peer(in: mount + kube, ["connect", "127.0.0.1", String(port), "2", "1000"])
        children.append(late)
        let lateFlows = try JSONDecoder().decode([ClientFlow].self, from: Data(try #require(late.readLine()).utf8))
        #expect(try Self.cgroupOf(pid: late.process.processIdentifier) == kube)

        // What the kernel says, independently of the agent: the inode of each directory.
        func inode(_ path: String) throws -> UInt64 {
            try #require((try FileManager.default.attributesOfItem(atPath: mount + path))[.systemFileNumber] as? UInt64)
        }
        let expected: [(ports: [Int], path: String, container: String?, pod: String?)] = [
            (earlyFlows.map(\.localPort), docker, Self.dockerID, nil),
            (lateFlows.map(\.localPort), kube, Self.containerdID, Self.podUID),
        ]

        var flows: [[String: Any]] = []
        let complete = try waitUntil(seconds: 10) {
            let body = try agent.get("/api/flows?top=1000").body
            let document = try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]
            flows = document?["flows"] as? [[String: Any]] ?? []
            return expected.allSatisfy { group in
                group.ports.allSatisfy { port in
                    flows.contains { $0["sport"] as? Int == port && $0["cgroup"] as? String == group.path }
                }
            }
        }
        #expect(complete, "flows: \(flows.filter { ($0["dport"] as? Int) == port || ($0["sport"] as? Int) == port })")
        for group in expected {
            for localPort in group.ports {
                let flow = try #require(flows.first { $0["sport"] as? Int == localPort && $0["dport"] as? Int == port })
                #expect(flow["cgroup"] as? String == group.path)
                #expect((flow["cgroup_id"] as? NSNumber)?.uint64Value == (try inode(group.path)))
                #expect(flow["container_id"] as? String == group.container)
                #expect(flow["pod_uid"] as? String == group.pod)
                // The server's end of the same flow: accepted by a process in "plain".
                let accepted = try #require(
                    flows.first { $0["sport"] as? Int == port && $0["dport"] as? Int == localPort })
                #expect(accepted["cgroup"] as? String == plain)
                #expect((accepted["cgroup_id"] as? NSNumber)?.uint64Value == (try inode(plain)))
                #expect(accepted["container_id"] is NSNull)
            }
        }

        // The labels, opt-in by the config: the container id and pod UID (no kubelet here),
        // empty outside containers and pods; namespace empty without the kubelet's names.
        let exposition = try agent.scrape()
        for group in expected {
            for localPort in group.ports {
                let sample = try #require(
                    exposition.flow(
                        "tcp_flow_rtt_seconds", src: "127.0.0.1", sport: UInt16(localPort), dst: "127.0.0.1",
                        dport: UInt16(port)))
                #expect(sample.labels["container"] == group.container)
                #expect(sample.labels["pod"] == (group.pod ?? ""))
                #expect(sample.labels["namespace"] == "")
                let accepted = try #require(
                    exposition.flow(
                        "tcp_flow_rtt_seconds", src: "127.0.0.1", sport: UInt16(port), dst: "127.0.0.1",
                        dport: UInt16(localPort)))
                #expect(accepted.labels["container"] == "" && accepted.labels["pod"] == "")
            }
        }
    }
}
