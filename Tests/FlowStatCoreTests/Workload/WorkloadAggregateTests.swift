// SPDX-License-Identifier: Apache-2.0

import Foundation
import NIOCore
import Testing

@testable import FlowStatCore

/// Closed flows resolved to their container and pod (on a cgroup tree the test makes; `stat`
/// gives the ids), so selection by workload keeps them and `aggregateBy` keys the
/// `tcp_peer_*` aggregates by namespace, pod and container.
@Suite("Workloads of closed flows, and as aggregate keys")
struct WorkloadAggregateTests {
    static let uid = WorkloadUnitTests.uid
    static let id = WorkloadUnitTests.id
    static let pod =
        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod"
        + uid.replacingOccurrences(of: "-", with: "_") + ".slice/cri-containerd-\(id).scope"

    static func closed(_ remote: String, cgroupID: UInt64, bytes: UInt64 = 100) -> FlowSample {
        FlowSample(
            key: Fixtures.key(.ipv4, "10.0.0.1", 40_000, remote, 443), bytesAcked: bytes, direction: .active,
            cgroupID: cgroupID)
    }

    @Test("closed flows get their cgroup's container and pod: selected by them, keyed by them when asked")
    func closedFlows() throws {
        let root = NSTemporaryDirectory() + "fs-closed-cg-\(getpid())"
        try FileManager.default.createDirectory(atPath: root + Self.pod, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(
            atPath: root + "/system.slice/sshd.service", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let podID = try WorkloadUnitTests.inode(root + Self.pod)
        let plainID = try WorkloadUnitTests.inode(root + "/system.slice/sshd.service")
        let pods = PodDirectory()
        pods.replace(with: [
            PodMetadata(uid: Self.uid, name: "web-7d9f", namespace: "shop", containerNames: [Self.id: "nginx"])
        ])
        let resolver = WorkloadResolver(mountPoint: root, pods: pods)
        let flows = [
            Self.closed("10.0.0.2", cgroupID: podID), Self.closed("10.0.0.2", cgroupID: podID, bytes: 5),
            Self.closed("10.0.0.2", cgroupID: plainID), Self.closed("10.0.0.3", cgroupID: 0),
        ]
        let peer = AggregateKey.Peer.address(IPAddress("10.0.0.2")!)

        // Selected by namespace: only the pod's two flows count.
        var selection = FlowSelection()
        selection.namespaces = ["shop"]
        let aggregates = ClosedFlowAggregates(servicePorts: ServicePorts())
        aggregates.configure(selection: FlowFilter(selection: selection), labels: [], workloads: resolver)
        aggregates.add(flows)
        let selected = aggregates.drain()
        #expect(selected.count == 1)
        #expect(selected[AggregateKey(peer: peer, port: .port(443))]?.flows == 2)
        #expect(selected[AggregateKey(peer: peer, port: .port(443))]?.bytesAcked == 105)

        // Without the resolver (the state before): the selection can see no workload.
        aggregates.configure(selection: FlowFilter(selection: selection), labels: [], workloads: nil)
        aggregates.add(flows)
        #expect(aggregates.drain().isEmpty)

        // Keyed by namespace, pod and container: the pod's flows apart from the host's.
        aggregates.configure(selection: nil, labels: Set(AggregateLabel.allCases), workloads: resolver)
        aggregates.add(flows)
        let keyed = aggregates.drain()
        let web = AggregateWorkload(namespace: "shop", pod: "web-7d9f", container: "nginx")
        #expect(keyed[AggregateKey(peer: peer, port: .port(443), workload: web)]?.flows == 2)
        #expect(keyed[AggregateKey(peer: peer, port: .port(443))]?.flows == 1, "outside pods: empty labels")
        #expect(keyed[AggregateKey(peer: .address(IPAddress("10.0.0.3")!), port: .port(443))]?.flows == 1)
        #expect(keyed.count == 3)

        // Only the pod asked for: the same pod's flows share a key whatever the container.
        aggregates.configure(selection: nil, labels: [.pod], workloads: resolver)
        aggregates.add(flows)
        #expect(
            aggregates.drain()[AggregateKey(peer: peer, port: .port(443), workload: .init(pod: "web-7d9f"))]?.flows == 2
        )
    }

    @Test("live flows folded by the cap are keyed by their workload too; folding past the bound drops it")
    func foldedLiveFlows() throws {
        let kube = WorkloadUnitTests.kubeWorkload
        var flows: [FlowSample] = []
        for (index, workload) in [kube, kube, nil, WorkloadUnitTests.dockerWorkload].enumerated() {
            var flow = FlowSample(
                key: Fixtures.key(.ipv4, "10.0.0.1", 40_000 + UInt16(index), "10.0.0.2", 443), bytesAcked: 1,
                direction: .active)
            flow.workload = workload
            flows.append(flow)
        }
        var limiter = CardinalityLimiter(servicePorts: ServicePorts())
        limiter.limits = CardinalityLimits(maxFlows: 1, maxAggregates: 8, aggregateLabels: [.namespace, .pod])
        let limited = limiter.apply(to: flows, closed: nil, perFlowFamilies: 1, now: 0)
        let byWorkload = Dictionary(
            limited.aggregates.map { ($0.key.workload, $0.live.flows) }, uniquingKeysWith: +)
        #expect(limited.kept.count == 1)
        #expect(byWorkload.values.reduce(0, +) == 3)
        #expect(byWorkload[AggregateWorkload(namespace: "shop", pod: "web-7d9f")] ?? 0 >= 1)
        // Docker's container is in no pod: its namespace and pod are empty, like a host flow's.
        #expect(
            Set(byWorkload.keys).isSubset(of: [
                AggregateWorkload(namespace: "shop", pod: "web-7d9f"), AggregateWorkload(),
            ]))

        var tight = CardinalityLimiter(servicePorts: ServicePorts())
        tight.limits = CardinalityLimits(maxFlows: 1, maxAggregates: 1, aggregateLabels: [.pod])
        let folded = tight.apply(to: flows, closed: nil, perFlowFamilies: 1, now: 0)
        // The first key takes the one slot; the rest fold into `other`, which has no workload.
        #expect(folded.aggregates.contains { $0.key == .other })
        #expect(folded.aggregates.filter { $0.key.peer == .other }.allSatisfy { $0.key.workload.isEmpty })
        #expect(folded.aggregates.count == 2)
        #expect(folded.aggregates.reduce(0) { $0 + $1.live.flows } == 3)
    }

    @Test("the tcp_peer_* series carry the asked workload labels after peer and port")
    func exposition() {
        var context = Fixtures.context
        context.aggregates = [
            Aggregate(
                key: AggregateKey(
                    peer: .address(IPAddress("10.0.0.2")!), port: .port(443),
                    workload: AggregateWorkload(namespace: "shop", pod: "web-7d9f", container: "")),
                live: FlowTotals(),
                closed: FlowTotals(
                    flows: 2, bytesAcked: 10, bytesReceived: 0, dataSegmentsIn: 0, dataSegmentsOut: 0, retransmits: 0))
        ]
        var encoder = MetricsEncoder()
        encoder.options.aggregateLabels = [.namespace, .pod]
        var buffer = ByteBuffer()
        encoder.encode(Fixtures.snapshot, context: context, into: &buffer)
        let text = String(buffer: buffer)
        #expect(
            text.contains(
                "\ntcp_peer_flows_closed_total{peer=\"10.0.0.2\",port=\"443\",namespace=\"shop\",pod=\"web-7d9f\"} 2\n"),
            "\(text)")
        encoder.options.aggregateLabels = []
        buffer.clear()
        encoder.encode(Fixtures.snapshot, context: context, into: &buffer)
        #expect(String(buffer: buffer).contains("\ntcp_peer_flows_closed_total{peer=\"10.0.0.2\",port=\"443\"} 2\n"))
    }

    @Test(
        "flowstat.cardinality.aggregateBy: a list of namespace, pod, container; it needs workloads, and names for pod/namespace"
    )
    func config() throws {
        let config = try FlowStatConfig(yaml: "flowstat: {cardinality: {aggregateBy: [pod, container]}}")
        #expect(config.cardinality.aggregateBy == [.pod, .container])
        #expect(config.needsWorkloads && config.needsKubelet)
        let containers = try FlowStatConfig(yaml: "flowstat: {cardinality: {aggregateBy: [container]}}")
        #expect(containers.needsWorkloads && !containers.needsKubelet)
        #expect(FlowStatConfig().cardinality.aggregateBy.isEmpty)
        do {
            _ = try FlowStatConfig(yaml: "flowstat:\n  cardinality:\n    aggregateBy: [node]\n")
            Issue.record("node loaded")
        } catch {
            #expect(error.description.contains("flowstat.cardinality.aggregateBy"), "\(error)")
            #expect(error.description.contains("namespace, pod, container"), "\(error)")
        }
    }
}
