// SPDX-License-Identifier: Apache-2.0

/// The TCP state of one flow at the moment a source read it: the `tcp_info`-like fields the
/// agent exports, in base units.
///
/// Sources convert from kernel units (microseconds, segments, bytes) when they build a
/// sample, so everything downstream of `FlowSource` works in seconds and bytes.
public struct FlowSample: Sendable {
    /// Which flow this is.
    public var key: FlowKey
    /// Kernel TCP state number (`TCP_ESTABLISHED` = 1 … `TCP_CLOSING` = 11).
    public var state: UInt8
    /// Smoothed round-trip time, seconds.
    public var rtt: Double
    /// Round-trip time variance (mean deviation), seconds.
    public var rttVariance: Double
    /// Minimum round-trip time seen, seconds.
    public var minRTT: Double
    /// Congestion window, segments.
    public var cwnd: UInt32
    /// Slow-start threshold, segments (`0x7fffffff` while the kernel still has it "infinite").
    public var ssthresh: UInt32
    /// Most recent delivery rate estimate, bytes per second.
    public var deliveryRate: Double
    /// Segments carrying data received.
    public var dataSegmentsIn: UInt64
    /// Segments carrying data sent.
    public var dataSegmentsOut: UInt64
    /// Bytes sent and acknowledged by the peer.
    public var bytesAcked: UInt64
    /// Bytes received.
    public var bytesReceived: UInt64
    /// Segments retransmitted over the flow's lifetime.
    public var retransmits: UInt64
    /// Who opened the flow, when flowstat saw it open.
    public var direction: FlowDirection
    /// Owning process id, 0 when unknown.
    public var pid: UInt32
    /// Owning process command name (up to 15 bytes in the kernel), empty when unknown.
    public var comm: String
    /// When the source last updated the sample, monotonic clock, nanoseconds.
    public var lastUpdate: UInt64
    /// The socket's cgroup v2 id (the inode of its cgroup directory); 0 when the source does
    /// not know it (inet_diag, kernels before 5.15).
    public var cgroupID: UInt64
    /// Who runs the flow (cgroup path, container, pod), once `WorkloadResolver` has looked
    /// its cgroup up; nil before, and for flows whose cgroup is unknown.
    public var workload: Workload?

    public init(
        key: FlowKey,
        state: UInt8 = 1,
        rtt: Double = 0,
        rttVariance: Double = 0,
        minRTT: Double = 0,
        cwnd: UInt32 = 0,
        ssthresh: UInt32 = 0,
        deliveryRate: Double = 0,
        dataSegmentsIn: UInt64 = 0,
        dataSegmentsOut: UInt64 = 0,
        bytesAcked: UInt64 = 0,
        bytesReceived: UInt64 = 0,
        retransmits: UInt64 = 0,
        direction: FlowDirection = .unknown,
        pid: UInt32 = 0,
        comm: String = "",
        lastUpdate: UInt64 = 0,
        cgroupID: UInt64 = 0
    ) {
        self.key = key
        self.state = state
        self.rtt = rtt
        self.rttVariance = rttVariance
        self.minRTT = minRTT
        self.cwnd = cwnd
        self.ssthresh = ssthresh
        self.deliveryRate = deliveryRate
        self.dataSegmentsIn = dataSegmentsIn
        self.dataSegmentsOut = dataSegmentsOut
        self.bytesAcked = bytesAcked
        self.bytesReceived = bytesReceived
        self.retransmits = retransmits
        self.direction = direction
        self.pid = pid
        self.comm = comm
        self.lastUpdate = lastUpdate
        self.cgroupID = cgroupID
        self.workload = nil
    }
}

/// Who opened a flow: this host (connect) or the peer (accept).
public enum FlowDirection: UInt8, Sendable, Hashable, CustomStringConvertible {
    /// Opened before flowstat attached, or seen only by a per-packet hook or a dump.
    case unknown = 0
    /// This host connected.
    case active = 1
    /// This host accepted.
    case passive = 2

    public var description: String {
        switch self {
        case .unknown: "unknown"
        case .active: "active"
        case .passive: "passive"
        }
    }
}

/// Every flow a source knows about at one instant, plus the state of its flow map.
public struct FlowSnapshot: Sendable {
    /// The flows, in no particular order (the encoder sorts).
    public var flows: [FlowSample]
    /// Entries in the source's flow map when it was read (for sources without a map: the
    /// number of flows).
    public var mapEntries: Int
    /// Capacity of the source's flow map (for sources without a map: 0).
    public var mapCapacity: Int

    /// The BPF programs' own event counts; nil for sources without them.
    public var kernelEvents: KernelEventCounts?
    /// Every RTT sample the kernel took since the agent started; nil for sources without it.
    public var rttHistogram: Histogram?
    /// Lifetimes of the flows that closed since the agent started (those it saw open), in
    /// seconds; nil for sources without closed-flow events.
    public var flowDurationHistogram: Histogram?
    /// Bytes (acked plus received) of every flow that closed since the agent started; nil
    /// for sources without closed-flow events.
    public var flowBytesHistogram: Histogram?
    /// What the flows that closed since the previous snapshot carried, summed per peer and
    /// service port; nil for sources without closed-flow events. Each closed flow is in
    /// exactly one snapshot's batch.
    public var closedSinceLastSnapshot: [AggregateKey: FlowTotals]?
    /// The RTT histogram per service port (the local port of accepted flows, the remote port
    /// of opened ones), for the first ports seen up to the configured limit; key 0 holds the
    /// samples of every later port ("other"). Nil when off or without in-kernel histograms.
    public var serviceRTTHistograms: [UInt16: Histogram]?
    /// The RTT histogram per configured peer group, by group name; nil without groups.
    public var peerGroupRTTHistograms: [String: Histogram]?

    public init(
        flows: [FlowSample], mapEntries: Int, mapCapacity: Int, kernelEvents: KernelEventCounts? = nil,
        rttHistogram: Histogram? = nil, flowDurationHistogram: Histogram? = nil, flowBytesHistogram: Histogram? = nil,
        closedSinceLastSnapshot: [AggregateKey: FlowTotals]? = nil, serviceRTTHistograms: [UInt16: Histogram]? = nil,
        peerGroupRTTHistograms: [String: Histogram]? = nil
    ) {
        self.serviceRTTHistograms = serviceRTTHistograms
        self.peerGroupRTTHistograms = peerGroupRTTHistograms
        self.flows = flows
        self.mapEntries = mapEntries
        self.mapCapacity = mapCapacity
        self.kernelEvents = kernelEvents
        self.rttHistogram = rttHistogram
        self.flowDurationHistogram = flowDurationHistogram
        self.flowBytesHistogram = flowBytesHistogram
        self.closedSinceLastSnapshot = closedSinceLastSnapshot
    }
}

/// A histogram as the kernel counts it: one count per bucket, not cumulative.
public struct Histogram: Sendable, Hashable {
    /// Increasing upper bounds (inclusive), in the metric's base unit.
    public var bounds: [Double]
    /// `bounds.count + 1` counts: samples in (previous bound, bound], then above the last.
    public var counts: [UInt64]
    /// Sum of all samples, in the base unit.
    public var sum: Double

    public init(bounds: [Double], counts: [UInt64], sum: Double) {
        precondition(counts.count == bounds.count + 1, "one count per bound plus +Inf")
        self.bounds = bounds
        self.counts = counts
        self.sum = sum
    }
}

/// Counters the BPF programs keep about their own work, summed over CPUs; all only grow.
public struct KernelEventCounts: Sendable, Hashable {
    /// Flow entries written (inserted or rewritten).
    public var updates: UInt64
    /// Per-packet and RTT-sample updates skipped by the per-flow minimum update interval.
    public var updatesSkipped: UInt64
    /// New flows the map refused to store.
    public var insertFailures: UInt64
    /// Entries the LRU map dropped to make room: flows that were live but are no longer
    /// tracked, a sign the map is too small for the host.
    public var evictions: UInt64

    /// Flows this host opened with connect(), counted as they were established.
    public var openedActive: UInt64
    /// Flows this host accepted, counted as they were established.
    public var openedPassive: UInt64
    /// Established flows that closed.
    public var closed: UInt64
    /// Closed-flow records the ring buffer had no room for (the counts and histograms
    /// above stay exact; per-peer aggregates miss these flows).
    public var eventsLost: UInt64
    /// Host-wide retransmissions, counted at the event; nil when no variant of the
    /// retransmit hook attached.
    public var retransmits: RetransmitCounts?

    public init(
        updates: UInt64, updatesSkipped: UInt64, insertFailures: UInt64, evictions: UInt64,
        openedActive: UInt64 = 0, openedPassive: UInt64 = 0, closed: UInt64 = 0, eventsLost: UInt64 = 0,
        retransmits: RetransmitCounts? = nil
    ) {
        self.retransmits = retransmits
        self.eventsLost = eventsLost
        self.updates = updates
        self.updatesSkipped = updatesSkipped
        self.insertFailures = insertFailures
        self.evictions = evictions
        self.openedActive = openedActive
        self.openedPassive = openedPassive
        self.closed = closed
    }
}

/// Segments retransmitted on the whole host (every network namespace, tracked flows or not),
/// by the kernel's reason, and retransmission-timer expiries; all only grow. Their sum is the
/// kernel's `TcpRetransSegs` minus `TCPRetransFail` (attempts that sent nothing) and minus
/// SYN-ACKs resent for connections not yet accepted.
public struct RetransmitCounts: Sendable, Hashable {
    /// Sent during SACK, duplicate-ACK or RACK recovery (not in the Loss state).
    public var fast: UInt64
    /// Sent in the Loss state: by the retransmission timer and the slow start after it.
    public var rto: UInt64
    /// Tail-loss probes that resent the last segment.
    public var lossProbe: UInt64
    /// Retransmission-timer expiries that sent a segment.
    public var rtoTimeouts: UInt64

    public init(fast: UInt64, rto: UInt64, lossProbe: UInt64, rtoTimeouts: UInt64) {
        self.fast = fast
        self.rto = rto
        self.lossProbe = lossProbe
        self.rtoTimeouts = rtoTimeouts
    }
}
