// SPDX-License-Identifier: Apache-2.0

import Foundation
import Testing

/// Pod, namespace and container names from the kubelet, end to end: real cgroups under the
/// cgroup2 mount shaped as containerd (systemd driver) and CRI-O make them for two pods of
/// the recorded `/pods` answer, real flows from processes inside them, and a kubelet
/// stand-in (`Tests/Support/kubelet_standin.py`: Kubernetes cannot run here) serving that
/// answer over HTTPS with a CA made by openssl in the test, requiring the bearer token. The
/// agent's exposition must name the flows as the answer does; a pod dropped from the answer
/// loses its names; a stopped kubelet keeps the last good names and counts the failure; a
/// kubelet whose certificate another CA signed is refused and reported, as are a stale token
/// (401) and a token without the RBAC grant (403); flows that close
/// are counted in `tcp_peer_*` under their pod's names (`aggregateBy`). Root only (BPF,
/// cgroups), serialized.
@Suite(.serialized, .enabled(if: isRoot, "needs root: loads BPF programs and creates cgroups"))
struct KubeletTests {
    // From the recorded answer (Tests/FlowStatCoreTests/Fixtures/kubelet/pods.json).
    static let webUID = "0b3c1f4e-8a8f-4c4b-9d4e-2f6c1b0a9e11"
    static let nginxID = "4e6f1c0b2a9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f"
    static let proxyUID = "a4b5c6d7-1111-4222-8333-944455556666"
    static let proxyID = "2222222222222222222222222222222222222222222222222222222222222222"
    static let recorded = packageRoot.appendingPathComponent("Tests/FlowStatCoreTests/Fixtures/kubelet/pods.json")

    /// Runs openssl; fails the test with its output if it fails.
    static func openssl(_ arguments: [String]) throws {
        _ = try run(["openssl"] + arguments)
    }

    /// A CA (`NAME.crt`, `NAME.key`) and a kubelet serving certificate it signs for
    /// 127.0.0.1 (`NAME-kubelet.crt`, `.key`), as `kubeadm`'s serverTLSBootstrap would give
    /// (IP SAN of the node's address).
    static func makeCA(_ name: String, in directory: String) throws {
        let ca = "\(directory)/\(name)"
        try openssl([
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
            ca + ".key", "-out", ca + ".crt", "-subj", "/CN=\(name)", "-days", "1",
        ])
        try openssl([
            "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
            ca + "-kubelet.key", "-out", ca + "-kubelet.csr", "-subj", "/O=system:nodes/CN=system:node:node-a",
        ])
        try "subjectAltName=IP:127.0.0.1,DNS:node-a\nextendedKeyUsage=serverAuth\n".write(
            toFile: ca + ".ext", atomically: true, encoding: .utf8)
        try openssl([
            "x509", "-req", "-in", ca + "-kubelet.csr", "-CA", ca + ".crt", "-CAkey", ca + ".key", "-CAcreateserial",
            "-out", ca + "-kubelet.crt", "-days", "1", "-extfile", ca + ".ext",
        ])
    }

    static func standIn(ca: String, directory: String, port: Int = 0) throws -> (Child, Int) {
        let script = packageRoot.appendingPathComponent("Tests/Support/kubelet_standin.py").path
        let child = try Child(
            [
                "python3", script, "\(directory)/\(ca)-kubelet.crt", "\(directory)/\(ca)-kubelet.key",
                "\(directory)/expected-token", "\(directory)/pods.json", String(port),
            ], stderr: FileHandle.nullDevice)
        let ready = try #require(child.readLine())
        let fields = ready.split(separator: " ")
        #expect(fields.first == "ready")
        return (child, try #require(Int(fields.last ?? "")))
    }

    /// The recorded answer without the pods whose UID is in `removing`.
    static func podList(removing: Set<String> = []) throws -> Data {
        var document = try #require(
            try JSONSerialization.jsonObject(with: Data(contentsOf: recorded)) as? [String: Any])
        let items = try #require(document["items"] as? [[String: Any]])
        document["items"] = items.filter { item in
            !removing.contains((item["metadata"] as? [String: Any])?["uid"] as? String ?? "")
        }
        return try JSONSerialization.data(withJSONObject: document)
    }

    @Test(
        "flows in containerd and CRI-O pod cgroups are named by the kubelet stand-in's answer over verified TLS with the token; a pod that leaves the answer loses its names; a stopped kubelet keeps the last names and counts failures; a wrong CA is refused and reported"
    )
    func podNamesFromTheKubelet() throws {
        let directory = NSTemporaryDirectory() + "fs-kubelet-\(getpid())"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try Self.makeCA("cluster-ca", in: directory)
        try Self.makeCA("other-ca", in: directory)
        try "token-one\n".write(toFile: directory + "/expected-token", atomically: true, encoding: .utf8)
        try "token-one\n".write(toFile: directory + "/token", atomically: true, encoding: .utf8)
        try Self.podList().write(to: URL(fileURLWithPath: directory + "/pods.json"))

        var (kubelet, kubeletPort) = try Self.standIn(ca: "cluster-ca", directory: directory)
        defer { kubelet.stop() }
        // The stand-in requires the token, as the kubelet does (curl is the independent client).
        let url = "https://127.0.0.1:\(kubeletPort)/pods"
        let anonymous = try run(
            ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", directory + "/cluster-ca.crt", url])
        #expect(anonymous.stdout == "401")
        let withToken = try run([
            "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", directory + "/cluster-ca.crt", "-H",
            "Authorization: Bearer token-one", url,
        ])
        #expect(withToken.stdout == "200")

        // Pod cgroups as the runtimes name them (systemd cgroup driver).
        let mount = try WorkloadTests.cgroup2Mount()
        let base = "/flowstat-kubelet-\(getpid())"
        let plain = base + "/plain"
        let web =
            base + "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod"
            + Self.webUID.replacingOccurrences(of: "-", with: "_") + ".slice/cri-containerd-\(Self.nginxID).scope"
        let proxy =
            base + "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod"
            + Self.proxyUID.replacingOccurrences(of: "-", with: "_") + ".slice/crio-\(Self.proxyID).scope"
        let cgroups = try TestCgroups(mount: mount, base: base, leaves: [plain, web, proxy])
        var children: [Child] = []
        defer {
            children.forEach { $0.stop() }
            cgroups.remove()
        }
        let port = try Agent.freePort()
        let server = try WorkloadTests.peer(in: mount + plain, ["serve", "127.0.0.1", String(port)])
        children.append(server)
        #expect(server.readLine() == "ready")
        var localPorts: [String: [Int]] = [:]
        var clients: [String: Child] = [:]
        for (name, cgroup) in [("web", web), ("proxy", proxy)] {
            let client = try WorkloadTests.peer(
                in: mount + cgroup, ["connect", "127.0.0.1", String(port), "2", "1000"])
            children.append(client)
            clients[name] = client
            let flows = try JSONDecoder().decode(
                [WorkloadTests.ClientFlow].self, from: Data(try #require(client.readLine()).utf8))
            localPorts[name] = flows.map(\.localPort)
            #expect(try WorkloadTests.cgroupOf(pid: client.process.processIdentifier) == cgroup)
        }

        let configPath = directory + "/config.yml"
        try """
        flowstat:
          cardinality: {maxFlows: 0, aggregateBy: [namespace, pod, container]}
          labels: {container: true, pod: true, namespace: true}
          kubelet:
            url: https://127.0.0.1:\(kubeletPort)/pods
            refreshInterval: 1
            tokenFile: \(directory)/token
            caFile: \(directory)/cluster-ca.crt
        """.write(toFile: configPath, atomically: true, encoding: .utf8)
        let agent = try Agent(["-c", configPath, "--source", "bpf"])
        var agentStopped = false
        defer { if !agentStopped { _ = agent.stop() } }

        /// The labels of the client ends of `name`'s flows.
        func labels(_ name: String) throws -> [[String: String]] {
            let exposition = try agent.scrape()
            return try #require(localPorts[name]).compactMap { localPort in
                exposition.flow(
                    "tcp_flow_rtt_seconds", src: "127.0.0.1", sport: UInt16(localPort), dst: "127.0.0.1",
                    dport: UInt16(port))?.labels
            }
        }
        func describe(_ name: String) -> String { (try? labels(name)).map { "\($0)" } ?? "no scrape" }
        func named(_ name: String, pod: String, namespace: String, container: String) throws -> Bool {
            let found = try labels(name)
            return found.count == 2
                && found.allSatisfy {
                    $0["pod"] == pod && $0["namespace"] == namespace && $0["container"] == container
                }
        }
        func metric(_ name: String) throws -> Double? { try agent.scrape().samples(name).first?.value }

        // Names from the answer: pod name, namespace, container name by the cgroup's ids.
        let webNamed = { try named("web", pod: "web-7d9f8c6b5-x2k4q", namespace: "shop", container: "nginx") }
        #expect(try waitUntil(seconds: 15, webNamed), "web flows: \(describe("web"))")
        #expect(
            try named("proxy", pod: "kube-proxy-8zq2m", namespace: "kube-system", container: "kube-proxy"),
            "proxy flows: \(describe("proxy"))")
        #expect(try metric("flowstat_kubelet_pods") == 3)
        #expect(try metric("flowstat_kubelet_refresh_failures_total") == 0)
        let firstSuccess = try #require(try metric("flowstat_kubelet_last_success_timestamp_seconds"))
        #expect(abs(firstSuccess - Date().timeIntervalSince1970) < 30)

        // The token rotates: the agent re-reads its file, so the next refreshes still succeed.
        try "token-two\n".write(toFile: directory + "/token", atomically: true, encoding: .utf8)
        try "token-two\n".write(toFile: directory + "/expected-token", atomically: true, encoding: .utf8)
        let rotated = try waitUntil(seconds: 10) {
            try metric("flowstat_kubelet_last_success_timestamp_seconds") ?? 0 > firstSuccess + 1.5
        }
        #expect(rotated)
        #expect(try metric("flowstat_kubelet_refresh_failures_total") == 0)

        // A token the kubelet does not accept (401), then one whose account lacks the RBAC
        // grant (403): each counted, each logged with its fix (checked in the log below).
        try "token-stale\n".write(toFile: directory + "/token", atomically: true, encoding: .utf8)
        #expect(try waitUntil(seconds: 10) { try metric("flowstat_kubelet_refresh_failures_total") ?? 0 >= 1 })
        try "token-no-rbac\n".write(toFile: directory + "/forbidden-token", atomically: true, encoding: .utf8)
        try "token-no-rbac\n".write(toFile: directory + "/token", atomically: true, encoding: .utf8)
        let denied = try #require(try metric("flowstat_kubelet_refresh_failures_total"))
        #expect(try waitUntil(seconds: 10) { try metric("flowstat_kubelet_refresh_failures_total") ?? 0 > denied })
        try "token-two\n".write(toFile: directory + "/token", atomically: true, encoding: .utf8)
        let recovered = try #require(try metric("flowstat_kubelet_last_success_timestamp_seconds"))
        #expect(
            try waitUntil(seconds: 10) {
                try metric("flowstat_kubelet_last_success_timestamp_seconds") ?? 0 > recovered
            })
        #expect(try webNamed(), "names kept through the refused refreshes: \(describe("web"))")

        // kube-proxy's pod leaves the answer: its flows keep the ids their cgroup names, no names.
        try Self.podList(removing: [Self.proxyUID]).write(to: URL(fileURLWithPath: directory + "/pods.json"))
        let left = try waitUntil(seconds: 10) {
            try named("proxy", pod: Self.proxyUID, namespace: "", container: Self.proxyID)
        }
        #expect(left, "proxy flows: \(describe("proxy"))")
        #expect(try metric("flowstat_kubelet_pods") == 2)
        #expect(try webNamed())

        // The kubelet stops: failures are counted, the last good names stay.
        kubelet.stop()
        let lastSuccess = try #require(try metric("flowstat_kubelet_last_success_timestamp_seconds"))
        let failed = try #require(try metric("flowstat_kubelet_refresh_failures_total"))
        #expect(try waitUntil(seconds: 10) { try metric("flowstat_kubelet_refresh_failures_total") ?? 0 >= failed + 2 })
        #expect(try webNamed(), "web flows: \(describe("web"))")
        #expect(try metric("flowstat_kubelet_pods") == 2)
        #expect(try metric("flowstat_kubelet_last_success_timestamp_seconds") == lastSuccess)

        // Back on the same port with a certificate another CA signed: refused, still counted.
        (kubelet, kubeletPort) = try Self.standIn(ca: "other-ca", directory: directory, port: kubeletPort)
        let before = try #require(try metric("flowstat_kubelet_refresh_failures_total"))
        #expect(try waitUntil(seconds: 10) { try metric("flowstat_kubelet_refresh_failures_total") ?? 0 >= before + 2 })
        #expect(try metric("flowstat_kubelet_last_success_timestamp_seconds") == lastSuccess)
        #expect(try webNamed())

        // Closed flows are named too: the web client closes its two flows; the aggregates of
        // closed flows count them under the pod's names (the server's ends, in no pod, apart).
        let webClient = try #require(clients["web"])
        webClient.send("close 2")
        #expect(webClient.readLine() == "closed")
        func closedTotal(_ labels: [String: String]) throws -> Double? {
            try agent.scrape().samples("tcp_peer_flows_closed_total").first { sample in
                sample.labels == labels
            }?.value
        }
        // The flows opened before the agent (no direction seen): the service port is the end
        // outside the kernel's ephemeral range, "ephemeral" when both are in it (the clients'
        // ends always are).
        let range = try String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8)
            .split(whereSeparator: \.isWhitespace).compactMap { Int($0) }
        let portLabel = range.count == 2 && (range[0]...range[1]).contains(port) ? "ephemeral" : String(port)
        let podKey = [
            "peer": "127.0.0.1", "port": portLabel, "namespace": "shop", "pod": "web-7d9f8c6b5-x2k4q",
            "container": "nginx",
        ]
        let hostKey = ["peer": "127.0.0.1", "port": portLabel, "namespace": "", "pod": "", "container": ""]
        // The host's key may also count other loopback flows closing on this machine: at least 2.
        #expect(try waitUntil(seconds: 10) { try closedTotal(podKey) == 2 && closedTotal(hostKey) ?? 0 >= 2 })
        #expect(try closedTotal(podKey) == 2, "\((try? agent.scrape().samples("tcp_peer_flows_closed_total")) ?? [])")
        #expect(try closedTotal(hostKey) ?? 0 >= 2)

        #expect(agent.stop() == 0)
        agentStopped = true
        let log = agent.stderrText
        #expect(log.contains("cannot connect to the kubelet at 127.0.0.1:\(kubeletPort)"), "\(log)")
        #expect(log.contains("is not signed by the CA in \(directory)/cluster-ca.crt"), "\(log)")
        #expect(log.contains("serverTLSBootstrap"), "\(log)")
        #expect(log.contains("refused the service account token (HTTP 401 Unauthorized)"), "\(log)")
        #expect(
            log.contains("forbids GET /pods (HTTP 403 Forbidden); fix: grant the service account get on nodes/proxy"),
            "\(log)")
        #expect(log.contains("keeping the last good list (2 pods)"), "\(log)")
    }
}
