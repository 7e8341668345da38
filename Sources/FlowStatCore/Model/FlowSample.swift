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

    // Where the flow's time goes and how it recovers from loss (`tcp_info`'s later fields).
    // Sources set them after `init`; `fields` says which optional ones they could fill.

    /// When flowstat first saw the flow established (or seeded it), monotonic clock,
    /// nanoseconds; 0 when unknown. With `lastUpdate`, the flow's age as flowstat knows it.
    public var firstSeen: UInt64 = 0
    /// Which optional fields below the source filled: the kernel or its `tcp_info` may lack
    /// them, and a field it lacks is left out of every output rather than shown as 0.
    /// (`detail` by default: every kernel has those fields, and only a lean snapshot leaves them out.)
    public var fields: FlowFields = .detail
    /// Time busy sending data, seconds, including the two limited times (`tcpi_busy_time`).
    public var busyTime: Double = 0
    /// Time sending was limited by the peer's receive window, seconds (`tcpi_rwnd_limited`).
    public var receiverLimitedTime: Double = 0
    /// Time sending was limited by the send buffer, seconds (`tcpi_sndbuf_limited`).
    public var senderBufferLimitedTime: Double = 0
    /// Whether the last delivery rate sample was limited by the application, not the network.
    public var deliveryRateAppLimited: Bool = false
    /// Zero-window probes sent and not answered yet (`tcpi_probes`).
    public var zeroWindowProbes: UInt8 = 0
    /// Bytes written by the application and not sent yet (`tcpi_notsent_bytes`).
    public var notsentBytes: UInt32 = 0
    /// The peer's advertised receive window, bytes (`tcpi_snd_wnd`; `fields.lossDetail`).
    public var sendWindow: UInt32 = 0
    /// Receive-side RTT estimate, seconds (`tcpi_rcv_rtt`); 0 before the first estimate.
    public var receiveRTT: Double = 0
    /// Segments presumed lost now (`tcpi_lost`).
    public var lostSegments: UInt32 = 0
    /// Retransmitted segments in flight now (`tcpi_retrans`).
    public var retransmitsInFlight: UInt32 = 0
    /// Reordering events seen (`tcpi_reord_seen`; `fields.lossDetail`).
    public var reorderingEvents: UInt32 = 0
    /// Segments the peer reported received twice, i.e. spurious retransmits (`tcpi_dsack_dups`).
    public var dsackDuplicates: UInt32 = 0
    /// Out-of-order packets received (`tcpi_rcv_ooopack`; `fields.lossDetail`).
    public var outOfOrderPackets: UInt32 = 0
    /// Retransmission timeouts (`tcpi_total_rto`; `fields.rtoTotals`).
    public var rtoTimeouts: UInt32 = 0
    /// Recoveries from retransmission timeouts (`tcpi_total_rto_recoveries`; `fields.rtoTotals`).
    public var rtoRecoveries: UInt32 = 0
    /// Time spent in RTO recovery, seconds (`tcpi_total_rto_time`; `fields.rtoTotals`).
    public var rtoTime: Double = 0

    /// The flow's age as flowstat knows it, seconds: from when it saw the flow established
    /// (or seeded it at start-up: then the flow is older) to the sample; 0 when unknown.
    public var observedAge: Double {
        firstSeen == 0 || lastUpdate <= firstSeen ? 0 : Double(lastUpdate - firstSeen) / 1e9
    }

    /// Time not busy sending, seconds: the flow's observed age less `busyTime`, at least 0,
    /// never falling from one snapshot to the next (the BPF program counts it in jiffies;
    /// the inet_diag source keeps each flow's highest).
    public var applicationTime: Double = 0

    /// Sets `applicationTime` from the observed age and the busy time (that may fall by a
    /// tick between two samples: the age is in nanoseconds, the busy time in jiffies).
    /// Rounded back to whole nanoseconds, as its parts are: the difference of two doubles
    /// would print as a 17-digit shortest double, the encoder's slow path, on every flow.
    public mutating func deriveApplicationTime() {
        applicationTime = Swift.max(0, (observedAge - busyTime) * 1e9).nearestInteger() / 1e9
    }

    /// Seconds of the flow's observed life per reason it was limited, as `tcp_info` splits its
    /// busy time: `network` (busy, neither limit), `receiver`, `senderBuffer`, and
    /// `application` (the rest of its age: idle or application-limited). They sum to
    /// `max(observedAge, busyTime)`.
    public func limitedTime(_ reason: LimitReason) -> Double {
        switch reason {
        // The sources' times are whole microseconds: the difference is rounded back to one, or
        // a counter that stayed put could read 1e-15 lower as the parts grew (Prometheus would
        // take that for a reset).
        case .network:
            Swift.max(0, (busyTime - receiverLimitedTime - senderBufferLimitedTime) * 1e6).nearestInteger() / 1e6
        case .receiver: receiverLimitedTime
        case .senderBuffer: senderBufferLimitedTime
        case .application: applicationTime
        }
    }

    /// Sets one reason's seconds, keeping the others' (`busyTime` follows its parts).
    public mutating func setLimitedTime(_ reason: LimitReason, _ seconds: Double) {
        switch reason {
        case .network: busyTime += seconds - limitedTime(.network)
        case .receiver:
            busyTime += seconds - receiverLimitedTime
            receiverLimitedTime = seconds
        case .senderBuffer:
            busyTime += seconds - senderBufferLimitedTime
            senderBufferLimitedTime = seconds
        case .application: applicationTime = seconds
        }
    }

    /// What limited the flow most over its observed life, and how much of it; nil when the
    /// source does not know the times or none has any.
    public var limitShare: LimitShare? {
        guard fields.contains(.timeLimits) else { return nil }
        return LimitShare(seconds: LimitReason.allCases.map(limitedTime))
    }

    /// The reason with the most seconds over the flow's observed life.
    public var mostlyLimitedBy: LimitReason? { limitShare?.reason }

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

/// Optional fields of a `FlowSample`, as the kernel record's `fs_has` bits.
public struct FlowFields: OptionSet, Sendable, Hashable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// Busy, receiver-limited and send-buffer-limited times (the kernel's HZ is known).
    public static let timeLimits = FlowFields(rawValue: 1 << 0)
    /// Reordering events, duplicate SACKs, out-of-order packets, send window (Linux 5.4).
    public static let lossDetail = FlowFields(rawValue: 1 << 1)
    /// RTO timeouts, recoveries and time (Linux 6.7).
    public static let rtoTotals = FlowFields(rawValue: 1 << 2)
    /// Unsent bytes, receive RTT, lost and retransmitted segments in flight, zero-window probes
    /// and the delivery rate's app-limited flag: every kernel has them, but a snapshot for a
    /// reader that needs none of them may leave them out (with `lossDetail` and `rtoTotals`).
    public static let detail = FlowFields(rawValue: 1 << 3)
}

/// What limited a flow while it had time to spend: the `reason` label of
/// `tcp_flow_limited_seconds_total`.
public enum LimitReason: String, Sendable, Hashable, CaseIterable {
    /// Busy sending and bound by neither window nor buffer: the congestion window, i.e. the path.
    case network
    /// The peer's receive window was full.
    case receiver
    /// The send buffer was full.
    case senderBuffer = "sender_buffer"
    /// Not sending: nothing to send, or the application wrote too little.
    case application
}

/// The reason with the largest share of some seconds (a flow's life, or `top`'s interval):
/// the "limited by" column of `dump`, `top` and the page.
public struct LimitShare: Sendable, Hashable {
    public var reason: LimitReason
    /// Its part of all the seconds, 0 to 1.
    public var share: Double

    /// From seconds per reason in `LimitReason.allCases` order; nil when all are 0. Ties go to
    /// the first reason in that order.
    public init?(seconds: [Double]) {
        let total = seconds.reduce(0) { $0 + Swift.max($1, 0) }
        guard total > 0,
            let top = seconds.indices.max(by: { seconds[$0] < seconds[$1] || (seconds[$0] == seconds[$1] && $0 > $1) })
        else { return nil }
        reason = LimitReason.allCases[top]
        share = seconds[top] / total
    }

    /// `receiver 90%`.
    public var description: String { "\(reason.rawValue) \(Int((share * 100).rounded()))%" }

    /// What sorting by it ranks by: flows grouped by reason, the limits outside the
    /// application first (receiver, send buffer, network), then each group by share.
    public var rank: Double {
        let group: Double =
            switch reason {
            case .receiver: 3
            case .senderBuffer: 2
            case .network: 1
            case .application: 0
            }
        return group * 2 + share
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
