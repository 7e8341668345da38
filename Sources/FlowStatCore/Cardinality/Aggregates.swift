// SPDX-License-Identifier: Apache-2.0

#if canImport(Glibc)
import Glibc
#endif

/// Where an aggregate series puts a flow: its peer and its service port, either of which
/// may be folded further when there are too many of them.
///
/// The service port is the port that names what the flow is for: the local port of a
/// flow this host accepted (its server port), the remote port of one it opened. Client
/// ports are ephemeral and would give one aggregate per flow, so they never appear.
public struct AggregateKey: Hashable, Sendable, Comparable, CustomStringConvertible {
    public enum Peer: Hashable, Sendable, Comparable {
        case address(IPAddress)
        /// Peers folded together because there were too many.
        case other
    }

    public enum Port: Hashable, Sendable, Comparable {
        case port(UInt16)
        /// Both ends of the flow used ports from the ephemeral range: no service port.
        case ephemeral
        /// Ports folded together because there were too many.
        case other
    }

    public var peer: Peer
    public var port: Port
    /// The flows' namespace, pod and container, where `flowstat.cardinality.aggregateBy`
    /// asks for them; empty otherwise, and in folded keys.
    public var workload: AggregateWorkload

    public init(peer: Peer, port: Port, workload: AggregateWorkload = AggregateWorkload()) {
        self.peer = peer
        self.port = port
        self.workload = workload
    }

    /// The key everything folds into last.
    public static let other = AggregateKey(peer: .other, port: .other)

    /// The `peer` label value: the address as `ss` prints it, or `other`.
    public var peerLabel: String {
        switch peer {
        case .address(let address): address.description
        case .other: "other"
        }
    }

    /// The `port` label value: a number, `ephemeral` or `other`.
    public var portLabel: String {
        switch port {
        case .port(let number): String(number)
        case .ephemeral: "ephemeral"
        case .other: "other"
        }
    }

    public var description: String {
        "peer=\(peerLabel) port=\(portLabel)" + (workload.isEmpty ? "" : " \(workload)")
    }

    public static func < (lhs: AggregateKey, rhs: AggregateKey) -> Bool {
        (lhs.peer, lhs.port, lhs.workload) < (rhs.peer, rhs.port, rhs.workload)
    }
}

/// A workload label that may key the `tcp_peer_*` aggregates (`flowstat.cardinality.aggregateBy`).
public enum AggregateLabel: String, Sendable, Hashable, CaseIterable {
    case namespace, pod, container
}

/// The workload part of an aggregate key: the values of the labels the config keys
/// aggregates by, as the per-flow labels write them (cut at 253 bytes); "" for the others.
public struct AggregateWorkload: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var namespace = ""
    public var pod = ""
    public var container = ""

    public init(namespace: String = "", pod: String = "", container: String = "") {
        self.namespace = namespace
        self.pod = pod
        self.container = container
    }

    /// The values of `labels` for a flow run by `workload` (nil: unknown, all empty).
    public init(_ workload: Workload?, labels: Set<AggregateLabel>) {
        guard let workload, !labels.isEmpty else { return }
        func cut(_ value: String) -> String {
            var text = Substring(value)
            while text.utf8.count > 253 { text = text.dropLast() }
            return String(text)
        }
        if labels.contains(.namespace) { namespace = cut(workload.namespaceLabel) }
        if labels.contains(.pod) { pod = cut(workload.podLabel) }
        if labels.contains(.container) { container = cut(workload.containerLabel) }
    }

    public var isEmpty: Bool { namespace.isEmpty && pod.isEmpty && container.isEmpty }

    public var description: String { "namespace=\(namespace) pod=\(pod) container=\(container)" }

    public static func < (lhs: AggregateWorkload, rhs: AggregateWorkload) -> Bool {
        (lhs.namespace, lhs.pod, lhs.container) < (rhs.namespace, rhs.pod, rhs.container)
    }
}

/// Sums over a set of flows: how many, and their counters.
public struct FlowTotals: Sendable, Hashable {
    public var flows: UInt64 = 0
    public var bytesAcked: UInt64 = 0
    public var bytesReceived: UInt64 = 0
    public var dataSegmentsIn: UInt64 = 0
    public var dataSegmentsOut: UInt64 = 0
    public var retransmits: UInt64 = 0
    /// Seconds per `LimitReason`, summed over the flows whose source knew them
    /// (`FlowFields.timeLimits`). Four fields, not an array: a total is made per closed flow.
    public var networkLimitedSeconds = 0.0
    public var receiverLimitedSeconds = 0.0
    public var senderBufferLimitedSeconds = 0.0
    public var applicationLimitedSeconds = 0.0
    /// Flows added that had limited times: none, and `tcp_peer_limited_seconds_total` is
    /// left out for this aggregate rather than written as 0.
    public var timedFlows: UInt64 = 0

    public init() {}

    /// The summed seconds of one reason.
    public func limitedSeconds(_ reason: LimitReason) -> Double {
        switch reason {
        case .network: networkLimitedSeconds
        case .receiver: receiverLimitedSeconds
        case .senderBuffer: senderBufferLimitedSeconds
        case .application: applicationLimitedSeconds
        }
    }

    public init(
        flows: UInt64, bytesAcked: UInt64, bytesReceived: UInt64, dataSegmentsIn: UInt64, dataSegmentsOut: UInt64,
        retransmits: UInt64
    ) {
        self.flows = flows
        self.bytesAcked = bytesAcked
        self.bytesReceived = bytesReceived
        self.dataSegmentsIn = dataSegmentsIn
        self.dataSegmentsOut = dataSegmentsOut
        self.retransmits = retransmits
    }

    /// Counts one more flow with these counters. Wrapping: counters are cumulative and a
    /// wrap is what Prometheus treats as a reset anyway.
    public mutating func add(_ flow: borrowing FlowSample) {
        flows &+= 1
        bytesAcked &+= flow.bytesAcked
        bytesReceived &+= flow.bytesReceived
        dataSegmentsIn &+= flow.dataSegmentsIn
        dataSegmentsOut &+= flow.dataSegmentsOut
        retransmits &+= flow.retransmits
        if flow.fields.contains(.timeLimits) {
            timedFlows &+= 1
            networkLimitedSeconds += flow.limitedTime(.network)
            receiverLimitedSeconds += flow.limitedTime(.receiver)
            senderBufferLimitedSeconds += flow.limitedTime(.senderBuffer)
            applicationLimitedSeconds += flow.limitedTime(.application)
        }
    }

    public mutating func add(_ other: FlowTotals) {
        flows &+= other.flows
        bytesAcked &+= other.bytesAcked
        bytesReceived &+= other.bytesReceived
        dataSegmentsIn &+= other.dataSegmentsIn
        dataSegmentsOut &+= other.dataSegmentsOut
        retransmits &+= other.retransmits
        timedFlows &+= other.timedFlows
        networkLimitedSeconds += other.networkLimitedSeconds
        receiverLimitedSeconds += other.receiverLimitedSeconds
        senderBufferLimitedSeconds += other.senderBufferLimitedSeconds
        applicationLimitedSeconds += other.applicationLimitedSeconds
    }
}

/// Decides a flow's service port from its direction and the host's ephemeral port range.
public struct ServicePorts: Sendable, Hashable {
    /// Ports the kernel hands out to connect() without bind(): never a service port.
    public var ephemeral: ClosedRange<UInt16>

    public init(ephemeral: ClosedRange<UInt16> = 32_768...60_999) {
        self.ephemeral = ephemeral
    }

    /// The range in /proc/sys/net/ipv4/ip_local_port_range, or the kernel's default.
    public static func system() -> ServicePorts {
        guard let text = try? SystemFile.readText("/proc/sys/net/ipv4/ip_local_port_range") else {
            return ServicePorts()
        }
        let numbers = text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).compactMap { Int($0) }
        guard numbers.count == 2, let low = numbers.first, let high = numbers.last, 0 < low, low <= high, high <= 65_535
        else { return ServicePorts() }
        return ServicePorts(ephemeral: UInt16(low)...UInt16(high))
    }

    /// The aggregate key of a flow, before any folding.
    public func key(local: UInt16, remote: UInt16, peer: IPAddress, direction: FlowDirection) -> AggregateKey {
        let port: AggregateKey.Port
        switch direction {
        case .passive: port = .port(local)
        case .active: port = .port(remote)
        case .unknown:
            // Not seen opening: the end outside the ephemeral range is the server's.
            if !ephemeral.contains(local) {
                port = .port(local)
            } else if !ephemeral.contains(remote) {
                port = .port(remote)
            } else {
                port = .ephemeral
            }
        }
        return AggregateKey(peer: .address(peer), port: port)
    }

    public func key(of flow: borrowing FlowSample, labels: Set<AggregateLabel> = []) -> AggregateKey {
        var key = key(
            local: flow.key.localPort, remote: flow.key.remotePort, peer: flow.key.remote, direction: flow.direction)
        if !labels.isEmpty { key.workload = AggregateWorkload(flow.workload, labels: labels) }
        return key
    }
}
