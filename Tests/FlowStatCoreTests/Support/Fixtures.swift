import FlowStatCore

/// Snapshots and contexts shared by the encoder and server tests.
enum Fixtures {
    static let hostNetns: UInt32 = 4_026_531_840
    static let containerNetns: UInt32 = 4_026_532_000

    static func key(
        _ family: AddressFamily, _ local: String, _ localPort: UInt16, _ remote: String, _ remotePort: UInt16,
        netns: UInt32 = hostNetns
    ) -> FlowKey {
        FlowKey(
            family: family, local: IPAddress(local)!, localPort: localPort, remote: IPAddress(remote)!,
            remotePort: remotePort, netns: netns)
    }

    /// IPv4, IPv6 and IPv4-mapped flows, two flows that share a 4-tuple in different
    /// namespaces, and values that take each float-formatting path. Deliberately not in
    /// output order.
    static let snapshot = FlowSnapshot(
        flows: [
            FlowSample(
                key: key(.ipv6, "2001:db8::1", 8080, "2001:db8::2", 40_000),
                rtt: 0.0125, rttVariance: 1e-10, minRTT: 0,
                cwnd: 20, ssthresh: 2_147_483_647, deliveryRate: 0.1 + 0.2,
                dataSegmentsIn: 0, dataSegmentsOut: 0, bytesAcked: .max, bytesReceived: 0, retransmits: 0,
                lastUpdate: 5),
            FlowSample(
                key: key(.ipv4, "10.0.0.1", 80, "10.0.0.3", 1_000, netns: containerNetns),
                rtt: 0.002, rttVariance: 0.001, minRTT: 0.0015,
                cwnd: 10, ssthresh: 8, deliveryRate: 2_500_000,
                dataSegmentsIn: 3, dataSegmentsOut: 4, bytesAcked: 300, bytesReceived: 400, retransmits: 0,
                pid: 42, comm: "nginx", lastUpdate: 4),
            FlowSample(
                key: key(.ipv6, "::ffff:192.168.1.5", 22, "::ffff:192.168.1.9", 50_000),
                rtt: 0.000031, rttVariance: 0.000015, minRTT: 0.000009,
                cwnd: 10, ssthresh: 2_147_483_647, deliveryRate: .nan,
                dataSegmentsIn: 1, dataSegmentsOut: 1, bytesAcked: 1_845, bytesReceived: 146, retransmits: 0,
                lastUpdate: 3),
            FlowSample(
                key: key(.ipv4, "10.0.0.1", 443, "10.0.0.2", 51_234),
                rtt: 123e-6, rttVariance: 50e-6, minRTT: 100e-6,
                cwnd: 10, ssthresh: 7, deliveryRate: 1_250_000,
                dataSegmentsIn: 5, dataSegmentsOut: 7, bytesAcked: 1_000, bytesReceived: 2_000, retransmits: 1,
                lastUpdate: 2),
            FlowSample(
                key: key(.ipv4, "10.0.0.1", 80, "10.0.0.3", 1_000),
                rtt: 0.001, rttVariance: 0.0005, minRTT: 0.0008,
                cwnd: 12, ssthresh: 9, deliveryRate: 1e6,
                dataSegmentsIn: 1, dataSegmentsOut: 2, bytesAcked: 100, bytesReceived: 200, retransmits: 0,
                lastUpdate: 1),
        ],
        mapEntries: 5,
        mapCapacity: 65_536)

    static let sourceInfo = SourceInfo(
        kind: .bpf,
        hooks: [
            HookStatus(name: "inet_sock_set_state", variant: "tracepoint", attached: true),
            HookStatus(name: "sockops", variant: "cgroup_sockops", attached: true),
            HookStatus(
                name: "tcp_rcv_established", variant: "fentry", attached: false, error: "Operation not supported"),
            HookStatus(name: "tcp_rcv_established", variant: "tp_btf", attached: true),
        ])

    static let build = BuildInfo(version: "1.2.3", swiftVersion: "6.3")

    static let context = ExpositionContext(build: build, source: sourceInfo, previousScrapeDuration: 0.0042)
}
