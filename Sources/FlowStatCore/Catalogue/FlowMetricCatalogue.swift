// SPDX-License-Identifier: Apache-2.0

/// One per-flow metric family: everything the outputs need to know about it, in one place.
///
/// The catalogue (`FlowMetricCatalogue.all`) drives the encoder (both formats, flowstat's
/// names and the seed's), the config switches and the sample config, the JSON of `dump` and
/// the landing page, `dump`'s columns and `pid_condensed` folding. Adding a per-flow metric
/// is: fill its field in the kernel record (`bpf/flowstat.h`, the BPF program and
/// `inet_diag.c`), carry it into `FlowSample`, and add one entry below.
public struct FlowMetricDefinition: Sendable {
    /// The metric's identity, as config switches and `Set<FlowMetric>` name it.
    public let metric: FlowMetric
    /// The exposition's sample name (counters end in `_total`).
    public let name: StaticString
    /// `# HELP` text: a constant without backslashes, quotes or line feeds.
    public let help: StaticString
    public let type: FlowMetricType
    /// Where the kernel keeps it: the `struct tcp_info` field `ss -ti` prints it from.
    public let tcpInfoField: String
    /// The seed exporter's family for it (`--compat ss-exporter`), if the seed had one.
    public let seed: SeedFamily?
    /// Its switch under `logic.metrics`.
    public let configSwitch: ConfigSwitch
    /// The field name in the flows' JSON (`dump --json`, `/api/flows`): base units, named
    /// like the metric.
    public let jsonName: StaticString
    /// `dump`'s column for it; nil when another metric's column shows it.
    public let column: FlowColumn?
    /// How to read and write it on a sample.
    public let value: FlowValue
    /// How `pid_condensed` combines the flows of one process and peer into one value.
    public let folding: FlowFolding
    /// Values from this one up mean the kernel has not set it yet (`ssthresh`'s "infinite"):
    /// JSON writes `null` and tables `-` for them; the exposition writes the number, as
    /// `tcp_info` has it.
    public let unsetFrom: UInt64?
    /// The landing page's column for it, if the page shows it.
    public var pageColumn: PageColumn? = nil

    /// The family name OpenMetrics uses: the sample name without `_total`.
    public var familyName: String {
        let name = name.description
        return type == .counter && name.hasSuffix("_total") ? String(name.dropLast(6)) : name
    }
}

public enum FlowMetricType: Sendable, Hashable {
    case gauge
    case counter
    /// Prometheus' `untyped`: only the seed's counters, whose names lack `_total`.
    case untyped
}

/// A family of the seed exporter: its name, HELP and type, and whether its value is in
/// milliseconds where flowstat's is in seconds.
public struct SeedFamily: Sendable {
    public let name: StaticString
    public let help: StaticString
    public let type: FlowMetricType
    public let milliseconds: Bool
}

/// Where a metric is switched on and off: `logic.metrics.<group>.<key>.active`.
public struct ConfigSwitch: Sendable, Hashable {
    public enum Group: String, Sendable, Hashable, CaseIterable {
        case gauges
        case counters
    }

    public let group: Group
    /// The seed's 3.x key (camelCase).
    public let key: String
    /// Other spellings the seed's 2.x schema used.
    public let aliases: [String]
}

/// A column of a flow table: its heading and how a flow's cell reads.
public struct FlowColumn: Sendable {
    public let title: String
    public let cell: @Sendable (borrowing FlowSample) -> String
}

/// A column of the landing page's flow table: its heading and how the page's script formats
/// the metric's JSON value.
public struct PageColumn: Sendable {
    public enum Format: String, Sendable {
        /// Seconds shown as milliseconds, three decimals.
        case milliseconds
        /// Bytes per second shown as Mbit/s, two decimals.
        case megabitsPerSecond
        /// As it is.
        case integer
    }

    public let title: String
    public let format: Format
}

/// A metric's value on a `FlowSample`: a real number (seconds, bytes per second) or an
/// integer (segments, bytes, counts). Pointers, because samples are large and the encoder
/// reads hundreds of thousands of values per scrape.
public enum FlowValue: Sendable {
    case real(
        get: @Sendable (UnsafePointer<FlowSample>) -> Double,
        set: @Sendable (UnsafeMutablePointer<FlowSample>, Double) -> Void)
    case integer(
        get: @Sendable (UnsafePointer<FlowSample>) -> UInt64,
        set: @Sendable (UnsafeMutablePointer<FlowSample>, UInt64) -> Void)

    /// The value as the encoder stores it in a column: integers as they are, reals as
    /// their bit pattern.
    @inline(__always)
    func bits(of flow: UnsafePointer<FlowSample>) -> UInt64 {
        switch self {
        case .real(let get, _): get(flow).bitPattern
        case .integer(let get, _): get(flow)
        }
    }

    var isReal: Bool {
        if case .real = self { return true }
        return false
    }
}

/// How the flows of one group (`pid_condensed`) combine into one value.
public enum FlowFolding: Sendable, Hashable {
    /// Added up (counters, windows, rates); integers wrap, as counters do.
    case sum
    /// Averaged over the group (RTTs).
    case mean
    /// The least (thresholds).
    case least
    /// The least of the values that are not 0 (0 means "not measured yet").
    case leastNonZero
}

/// One per-flow metric family; each can be switched off in the config. Each case has one
/// entry in `FlowMetricCatalogue.all` (a test checks).
public enum FlowMetric: String, Sendable, Hashable, CaseIterable, Comparable {
    case rtt
    case rttVariance
    case minRTT
    case cwnd
    case ssthresh
    case deliveryRate
    case dataSegmentsIn
    case dataSegmentsOut
    case bytesAcked
    case bytesReceived
    case retransmits

    public static func < (lhs: FlowMetric, rhs: FlowMetric) -> Bool {
        allCases.firstIndex(of: lhs)! < allCases.firstIndex(of: rhs)!
    }
}

/// The per-flow metrics, in output order.
public enum FlowMetricCatalogue {
    public static let all: [FlowMetricDefinition] = [
        .init(
            metric: .rtt, name: "tcp_flow_rtt_seconds", help: "Smoothed round-trip time of the TCP flow.",
            type: .gauge, tcpInfoField: "tcpi_rtt",
            seed: SeedFamily(
                name: "tcp_rtt", help: "Smoothed round-trip time of the TCP flow, milliseconds.", type: .gauge,
                milliseconds: true),
            configSwitch: ConfigSwitch(group: .gauges, key: "rtt", aliases: []),
            jsonName: "rtt_seconds",
            // ss prints RTT and its variance together: "rtt:0.123/0.05".
            column: FlowColumn(title: "rtt/rttvar ms") {
                FlowFormat.milliseconds($0.rtt) + "/" + FlowFormat.milliseconds($0.rttVariance)
            },
            value: .real(get: { $0.pointee.rtt }, set: { $0.pointee.rtt = $1 }), folding: .mean, unsetFrom: nil,
            pageColumn: PageColumn(title: "RTT ms", format: .milliseconds)),
        .init(
            metric: .rttVariance, name: "tcp_flow_rtt_variance_seconds",
            help: "Round-trip time variance (mean deviation) of the TCP flow.", type: .gauge,
            tcpInfoField: "tcpi_rttvar", seed: nil,
            configSwitch: ConfigSwitch(group: .gauges, key: "rttVariance", aliases: ["rttvar"]),
            jsonName: "rtt_variance_seconds", column: nil,  // in the rtt column
            value: .real(get: { $0.pointee.rttVariance }, set: { $0.pointee.rttVariance = $1 }), folding: .mean,
            unsetFrom: nil, pageColumn: PageColumn(title: "RTT var ms", format: .milliseconds)),
        .init(
            metric: .minRTT, name: "tcp_flow_min_rtt_seconds", help: "Minimum round-trip time seen on the TCP flow.",
            type: .gauge, tcpInfoField: "tcpi_min_rtt", seed: nil,
            configSwitch: ConfigSwitch(group: .gauges, key: "minRtt", aliases: []),
            jsonName: "min_rtt_seconds",
            column: FlowColumn(title: "minrtt ms") { FlowFormat.milliseconds($0.minRTT) },
            value: .real(get: { $0.pointee.minRTT }, set: { $0.pointee.minRTT = $1 }), folding: .leastNonZero,
            unsetFrom: nil),
        .init(
            metric: .cwnd, name: "tcp_flow_cwnd_segments", help: "Congestion window of the TCP flow.", type: .gauge,
            tcpInfoField: "tcpi_snd_cwnd",
            seed: SeedFamily(
                name: "tcp_cwnd", help: "Congestion window of the TCP flow, segments.", type: .gauge,
                milliseconds: false),
            configSwitch: ConfigSwitch(group: .gauges, key: "cwnd", aliases: []),
            jsonName: "cwnd_segments",
            column: FlowColumn(title: "cwnd") { String($0.cwnd) },
            value: .integer(
                get: { UInt64($0.pointee.cwnd) }, set: { $0.pointee.cwnd = UInt32(truncatingIfNeeded: $1) }),
            folding: .sum, unsetFrom: nil, pageColumn: PageColumn(title: "cwnd", format: .integer)),
        .init(
            metric: .ssthresh, name: "tcp_flow_ssthresh_segments", help: "Slow-start threshold of the TCP flow.",
            type: .gauge, tcpInfoField: "tcpi_snd_ssthresh", seed: nil,
            configSwitch: ConfigSwitch(group: .gauges, key: "ssthresh", aliases: []),
            jsonName: "ssthresh_segments",
            column: FlowColumn(title: "ssthresh") { FlowFormat.ssthresh($0.ssthresh) },
            value: .integer(
                get: { UInt64($0.pointee.ssthresh) }, set: { $0.pointee.ssthresh = UInt32(truncatingIfNeeded: $1) }),
            folding: .least, unsetFrom: 0x7fff_ffff),
        .init(
            metric: .deliveryRate, name: "tcp_flow_delivery_rate_bytes_per_second",
            help: "Most recent delivery rate estimate of the TCP flow.", type: .gauge,
            tcpInfoField: "tcpi_delivery_rate",
            seed: SeedFamily(
                name: "tcp_delivery_rate",
                help: "Most recent delivery rate estimate of the TCP flow, bytes per second.",
                type: .gauge, milliseconds: false),
            configSwitch: ConfigSwitch(group: .gauges, key: "deliveryRate", aliases: []),
            jsonName: "delivery_rate_bytes_per_second",
            column: FlowColumn(title: "delivery") { FlowFormat.scaled($0.deliveryRate * 8, unit: "bps") },
            value: .real(get: { $0.pointee.deliveryRate }, set: { $0.pointee.deliveryRate = $1 }), folding: .sum,
            unsetFrom: nil, pageColumn: PageColumn(title: "delivery Mbit/s", format: .megabitsPerSecond)),
        .init(
            metric: .dataSegmentsIn, name: "tcp_flow_data_segments_in_total",
            help: "Segments carrying data received on the TCP flow.", type: .counter,
            tcpInfoField: "tcpi_data_segs_in",
            seed: SeedFamily(
                name: "tcp_data_segs_in", help: "Segments carrying data received on the TCP flow (a counter).",
                type: .untyped, milliseconds: false),
            configSwitch: ConfigSwitch(group: .counters, key: "dataSegsIn", aliases: []),
            jsonName: "data_segments_in",
            column: FlowColumn(title: "segs_in") { String($0.dataSegmentsIn) },
            value: .integer(get: { $0.pointee.dataSegmentsIn }, set: { $0.pointee.dataSegmentsIn = $1 }),
            folding: .sum, unsetFrom: nil),
        .init(
            metric: .dataSegmentsOut, name: "tcp_flow_data_segments_out_total",
            help: "Segments carrying data sent on the TCP flow.", type: .counter, tcpInfoField: "tcpi_data_segs_out",
            seed: SeedFamily(
                name: "tcp_data_segs_out", help: "Segments carrying data sent on the TCP flow (a counter).",
                type: .untyped, milliseconds: false),
            configSwitch: ConfigSwitch(group: .counters, key: "dataSegsOut", aliases: []),
            jsonName: "data_segments_out",
            column: FlowColumn(title: "segs_out") { String($0.dataSegmentsOut) },
            value: .integer(get: { $0.pointee.dataSegmentsOut }, set: { $0.pointee.dataSegmentsOut = $1 }),
            folding: .sum, unsetFrom: nil),
        .init(
            metric: .bytesAcked, name: "tcp_flow_bytes_acked_total",
            help: "Bytes sent on the TCP flow and acknowledged by the peer.", type: .counter,
            tcpInfoField: "tcpi_bytes_acked", seed: nil,
            configSwitch: ConfigSwitch(group: .counters, key: "bytesAcked", aliases: []),
            jsonName: "bytes_acked",
            column: FlowColumn(title: "bytes_acked") { String($0.bytesAcked) },
            value: .integer(get: { $0.pointee.bytesAcked }, set: { $0.pointee.bytesAcked = $1 }), folding: .sum,
            unsetFrom: nil, pageColumn: PageColumn(title: "bytes acked", format: .integer)),
        .init(
            metric: .bytesReceived, name: "tcp_flow_bytes_received_total", help: "Bytes received on the TCP flow.",
            type: .counter, tcpInfoField: "tcpi_bytes_received", seed: nil,
            configSwitch: ConfigSwitch(group: .counters, key: "bytesReceived", aliases: []),
            jsonName: "bytes_received",
            column: FlowColumn(title: "bytes_received") { String($0.bytesReceived) },
            value: .integer(get: { $0.pointee.bytesReceived }, set: { $0.pointee.bytesReceived = $1 }),
            folding: .sum, unsetFrom: nil, pageColumn: PageColumn(title: "bytes received", format: .integer)),
        .init(
            metric: .retransmits, name: "tcp_flow_retransmits_total", help: "Segments retransmitted on the TCP flow.",
            type: .counter, tcpInfoField: "tcpi_total_retrans", seed: nil,
            configSwitch: ConfigSwitch(group: .counters, key: "retransmits", aliases: []),
            jsonName: "retransmits",
            column: FlowColumn(title: "retrans") { String($0.retransmits) },
            value: .integer(get: { $0.pointee.retransmits }, set: { $0.pointee.retransmits = $1 }), folding: .sum,
            unsetFrom: nil, pageColumn: PageColumn(title: "retrans", format: .integer)),
    ]

    /// The entry of `metric`.
    public static func definition(of metric: FlowMetric) -> FlowMetricDefinition {
        all[index(of: metric)]
    }

    /// `metric`'s position in `all` (and in the encoder's columns).
    static func index(of metric: FlowMetric) -> Int {
        indices[metric]!
    }

    private static let indices: [FlowMetric: Int] = Dictionary(
        uniqueKeysWithValues: all.enumerated().map { ($0.element.metric, $0.offset) })
}
