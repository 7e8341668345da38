// SPDX-License-Identifier: Apache-2.0

import Foundation
import NIOCore
import Testing

@testable import FlowStatCore

/// Cgroup ids to paths (on a directory tree the test makes: `stat` is the oracle for the
/// inode numbers), the container/pod/namespace labels, selection by them, and their config.
@Suite("Workloads: cgroup paths, labels, selection")
struct WorkloadUnitTests {
    static let id = "4e6f1c0b2a9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f"
    static let uid = "0b3c1f4e-8a8f-4c4b-9d4e-2f6c1b0a9e11"

    static func inode(_ path: String) throws -> UInt64 {
        try #require((try FileManager.default.attributesOfItem(atPath: path))[.systemFileNumber] as? UInt64)
    }

    @Test("ids resolve to paths by the directories' inodes; an unknown id walks again only after the interval")
    func cgroupPaths() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("fs-cgpaths-\(getpid())").path
        try FileManager.default.createDirectory(atPath: root + "/a/b/c", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        var paths = CgroupPaths(mountPoint: root)
        #expect(paths.path(of: try Self.inode(root + "/a/b/c"), now: 1) == "/a/b/c")
        #expect(paths.path(of: try Self.inode(root + "/a"), now: 2) == "/a")
        #expect(paths.path(of: try Self.inode(root), now: 3) == "/")
        #expect(paths.walks == 1)
        try FileManager.default.createDirectory(atPath: root + "/a/new", withIntermediateDirectories: true)
        let new = try Self.inode(root + "/a/new")
        #expect(paths.path(of: new, now: 4) == nil, "within the interval: no walk")
        #expect(paths.walks == 1)
        #expect(paths.path(of: new, now: 4 + paths.minimumWalkInterval) == "/a/new")
        #expect(paths.walks == 2)
        var bounded = CgroupPaths(mountPoint: root)
        bounded.capacity = 2
        bounded.walk()
        #expect(bounded.paths.count == 2)
    }

    static func flow(_ remote: String, workload: Workload?) -> FlowSample {
        var sample = FlowSample(key: Fixtures.key(.ipv4, "10.0.0.1", 443, remote, 50_000), rtt: 0.001)
        sample.workload = workload
        return sample
    }

    static let kubeWorkload = Workload(
        cgroupID: 7, cgroupPath: "/kubepods/burstable/pod\(uid)/\(id)",
        identity: ContainerIdentity(cgroupPath: "/kubepods/burstable/pod\(uid)/\(id)"),
        pod: PodMetadata(uid: uid, name: "web-7d9f", namespace: "shop", containerNames: [id: "nginx"]))
    static let dockerWorkload = Workload(
        cgroupID: 8, cgroupPath: "/docker/\(id)", identity: ContainerIdentity(cgroupPath: "/docker/\(id)"))

    @Test("container, pod and namespace labels: kubelet names, else ids, empty outside containers")
    func labels() {
        let snapshot = FlowSnapshot(
            flows: [
                Self.flow("10.0.0.2", workload: Self.kubeWorkload),
                Self.flow("10.0.0.3", workload: Self.dockerWorkload),
                Self.flow("10.0.0.4", workload: nil),
            ], mapEntries: 3, mapCapacity: 8)
        var encoder = MetricsEncoder(
            options: MetricsEncoder.Options(containerLabel: true, podLabel: true, namespaceLabel: true))
        var buffer = ByteBuffer()
        encoder.encode(snapshot, context: Fixtures.context, into: &buffer)
        let output = String(buffer: buffer)
        #expect(
            output.contains(
                #"tcp_flow_rtt_seconds{src="10.0.0.1",sport="443",dst="10.0.0.2",dport="50000",container="nginx",pod="web-7d9f",namespace="shop"} 0.001"#
            ))
        #expect(
            output.contains(
                #"tcp_flow_rtt_seconds{src="10.0.0.1",sport="443",dst="10.0.0.3",dport="50000",container="\#(Self.id)",pod="",namespace=""} 0.001"#
            ))
        #expect(
            output.contains(
                #"tcp_flow_rtt_seconds{src="10.0.0.1",sport="443",dst="10.0.0.4",dport="50000",container="",pod="",namespace=""} 0.001"#
            ))
        // Off (the default): not a byte of it.
        var plain = MetricsEncoder()
        buffer.clear()
        plain.encode(snapshot, context: Fixtures.context, into: &buffer)
        #expect(!String(buffer: buffer).contains("container="))
    }

    @Test("a very long pod name is cut to 253 bytes and the label set still fits")
    func longValues() {
        let long = Workload(
            cgroupID: 9, cgroupPath: "/x", identity: ContainerIdentity(podUID: Self.uid),
            pod: PodMetadata(
                uid: Self.uid, name: String(repeating: "p", count: 600), namespace: String(repeating: "\"", count: 300))
        )
        var encoder = MetricsEncoder(
            options: MetricsEncoder.Options(containerLabel: true, podLabel: true, namespaceLabel: true))
        var buffer = ByteBuffer()
        encoder.encode(
            FlowSnapshot(flows: [Self.flow("10.0.0.2", workload: long)], mapEntries: 1, mapCapacity: 1),
            context: Fixtures.context, into: &buffer)
        let output = String(buffer: buffer)
        #expect(output.contains("pod=\"\(String(repeating: "p", count: 253))\","))
        #expect(output.contains("namespace=\"\(String(repeating: "\\\"", count: 253))\"}"))

        // Streamed, more rows than one reservation covers, all with the longest label set:
        // the pieces put together are the text held whole.
        let flows = (0..<2_100).map { Self.flow("10.0.\($0 / 250).\($0 % 250 + 1)", workload: long) }
        let snapshot = FlowSnapshot(flows: flows, mapEntries: flows.count, mapCapacity: flows.count)
        var whole = ByteBuffer()
        encoder.encode(snapshot, context: Fixtures.context, into: &whole)
        var pieces = ByteBuffer()
        var rest = ByteBuffer()
        encoder.encode(
            snapshot, context: Fixtures.context, into: &rest, flushThreshold: 64 << 10,
            flush: { piece in
                pieces.writeImmutableBuffer(piece)
                piece.clear()
            })
        pieces.writeImmutableBuffer(rest)
        #expect(pieces == whole)
        #expect(
            String(buffer: whole).components(separatedBy: "pod=\"\(String(repeating: "p", count: 253))\"").count > 2_100
        )
    }

    @Test("selection.kubernetes: namespaces and pods (name or UID) and containers (name, id or its first 12+ digits)")
    func selection() {
        let flows = [
            Self.flow("10.0.0.2", workload: Self.kubeWorkload), Self.flow("10.0.0.3", workload: Self.dockerWorkload),
            Self.flow("10.0.0.4", workload: nil),
        ]
        func selected(_ selection: FlowSelection) -> [String] {
            FlowFilter(selection: selection).apply(to: flows).map { $0.key.remote.description }
        }
        var byNamespace = FlowSelection()
        byNamespace.namespaces = ["shop"]
        #expect(selected(byNamespace) == ["10.0.0.2"])
        var byPod = FlowSelection()
        byPod.pods = [Self.uid]
        #expect(selected(byPod) == ["10.0.0.2"])
        byPod.pods = ["web-7d9f"]
        byPod.namespaces = ["other"]
        #expect(selected(byPod).isEmpty, "both lists must match")
        var byContainer = FlowSelection()
        byContainer.containers = [String(Self.id.prefix(12))]
        #expect(selected(byContainer) == ["10.0.0.2", "10.0.0.3"])
        byContainer.containers = ["nginx"]
        #expect(selected(byContainer) == ["10.0.0.2"])
        byContainer.containers = [String(Self.id.prefix(6))]
        #expect(selected(byContainer).isEmpty, "an id prefix under 12 digits is no id")
    }

    @Test("a kubelet /pods answer (v1.PodList, in the kubelet's shape) gives names by UID and container names by id")
    func podList() throws {
        let text = try String(contentsOfFile: Fixtures.directory + "/kubelet/pods.json", encoding: .utf8)
        let pods = try PodList.parse(text)
        #expect(pods.map(\.name) == ["web-7d9f8c6b5-x2k4q", "kube-proxy-8zq2m", "etcd-node-a"])
        let web = try #require(pods.first { $0.uid == Self.uid })
        #expect(web.namespace == "shop")
        #expect(web.containerNames[Self.id] == "nginx")
        #expect(web.containerNames[String(repeating: "1", count: 64)] == "init-config")
        #expect(web.containerNames.count == 3)
        #expect(pods[1].containerNames[String(repeating: "2", count: 64)] == "kube-proxy", "cri-o:// scheme dropped")
        #expect(pods[2].containerNames.isEmpty, "a container not yet created has no id")
        #expect(throws: PodList.Invalid.self) { try PodList.parse("{\"kind\":\"Status\"}") }

        // Through the directory: a flow in the web pod's nginx container gets its names.
        let directory = PodDirectory()
        directory.replace(with: pods)
        let path = "/kubepods/burstable/pod\(Self.uid)/\(Self.id)"
        let identity = ContainerIdentity(cgroupPath: path)
        let workload = Workload(
            cgroupID: 1, cgroupPath: path, identity: identity, pod: directory.current.pods[Self.uid])
        #expect(workload.containerLabel == "nginx" && workload.podLabel == "web-7d9f8c6b5-x2k4q")
        #expect(workload.namespaceLabel == "shop")
    }

    @Test("the config turns the labels and the selection on; both default off")
    func config() throws {
        let config = try FlowStatConfig(
            yaml: """
                logic:
                  selection:
                    kubernetes: {namespaces: [shop], pods: [web-7d9f], containers: [nginx]}
                flowstat:
                  labels: {container: true, pod: true, namespace: true}
                """)
        #expect(config.labels.container && config.labels.pod && config.labels.namespace)
        #expect(config.selection.namespaces == ["shop"] && config.selection.pods == ["web-7d9f"])
        #expect(config.selection.containers == ["nginx"])
        #expect(config.needsWorkloads && !config.selection.selectsEverything)
        let defaults = try FlowStatConfig(yaml: "flowstat: {}")
        #expect(!defaults.needsWorkloads && !defaults.labels.container)
    }
}
