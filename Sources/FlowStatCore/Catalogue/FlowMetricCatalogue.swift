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
    /// `dump`'s column for it; nil when another metric's column shows it.
    public let column: FlowColumn?
    /// Its series per flow: one for most families; one per value of a label for a labelled
    /// family (`tcp_flow_limited_seconds_total{reason}`). Each has its own value and JSON
    /// field; the encoder writes them all under one HELP and TYPE.
    public let series: [FlowSeries]
    /// How `pid_condensed` combines the flows of one process and peer into one value.
    public let folding: FlowFolding
    /// Values from this one up mean the kernel has not set it yet (`ssthresh`'s "infinite"):
    /// JSON writes `null` and tables `-` for them; the exposition writes the number, as
    /// `tcp_info` has it.
    public let unsetFrom: UInt64?
    /// The landing page's column for it, if the page shows it.
    public var pageColumn: PageColumn? = nil
    /// The optional sample fields it needs: a flow whose source could not fill them (an older
    /// kernel, an unknown HZ) has no series in this family, `null` in JSON and `-` in tables.
    public var requires: FlowFields = []
    /// Whether it is exported when the config does not mention it. Off for the detail
    /// families, so that the default series count per flow stays modest.
    public var defaultOn = true

    /// The field name in the flows' JSON of its first (usually only) series.
    public var jsonName: StaticString { series[0].jsonName }
    /// How to read and write its first (usually only) series on a sample.
    public var value: FlowValue { series[0].value }

    /// A family with one series per flow.
    public init(
        metric: FlowMetric, name: StaticString, help: StaticString, type: FlowMetricType, tcpInfoField: String,
        seed: SeedFamily?, configSwitch: ConfigSwitch, jsonName: StaticString, column: FlowColumn?,
        value: FlowValue, folding: FlowFolding, unsetFrom: UInt64?, pageColumn: PageColumn? = nil,
        requires: FlowFields = [], defaultOn: Bool = true
    ) {
        self.init(
            metric: metric, name: name, help: help, type: type, tcpInfoField: tcpInfoField, seed: seed,
            configSwitch: configSwitch, column: column,
            series: [FlowSeries(label: "", jsonName: jsonName, value: value)], folding: folding, unsetFrom: unsetFrom,
            pageColumn: pageColumn, requires: requires, defaultOn: defaultOn)
    }

    /// A family with the given series per flow (a labelled family).
    public init(
        metric: FlowMetric, name: StaticString, help: StaticString, type: FlowMetricType, tcpInfoField: String,
        seed: SeedFamily?, configSwitch: ConfigSwitch, column: FlowColumn?, series: [FlowSeries],
        folding: FlowFolding, unsetFrom: UInt64?, pageColumn: PageColumn? = nil, requires: FlowFields = [],
        defaultOn: Bool = true
    ) {
        precondition(!series.isEmpty, "a family has at least one series")
        self.metric = metric
        self.name = name
        self.help = help
        self.type = type
        self.tcpInfoField = tcpInfoField
        self.seed = seed
        self.configSwitch = configSwitch
        self.column = column
        self.series = series
        self.folding = folding
        self.unsetFrom = unsetFrom
        self.pageColumn = pageColumn
        self.requires = requires
        self.defaultOn = defaultOn
    }

    /// Whether the source filled the fields this family needs for `flow`.
    @inline(__always)
    func isPresent(on flow: UnsafePointer<FlowSample>) -> Bool {
        requires.isEmpty || flow.pointee.fields.isSuperset(of: requires)
    }

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

/// One series of a per-flow family, per flow.
public struct FlowSeries: Sendable {
    /// Its extra label, as the exposition writes it after the flow's labels:
    /// `,reason="network"`; empty for a family's only series.
    public let label: StaticString
    /// Its field in the flows' JSON.
    public let jsonName: StaticString
    /// How to read and write it on a sample.
    public let value: FlowValue

    public init(label: StaticString, jsonName: StaticString, value: FlowValue) {
        self.label = label
        self.jsonName = jsonName
        self.value = value
    }
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
        /// The reason with the largest share of the four `limited_*_seconds` fields:
        /// "receiver 90%" (the column of `tcp_flow_limited_seconds_total`).
        case limitedBy
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
    case limitedSeconds
    case deliveryRateAppLimited
    case notsentBytes
    case sendWindow
    case receiveRTT
    case lostSegments
    case retransmitsInFlight
    case reorderingEvents
    case dsackDuplicates
    case outOfOrderPackets
    case rtoTimeouts
    case rtoRecoveries
    case rtoTime
    case zeroWindowProbes

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
        // Where the flow's time goes: on by default (4 series per flow), the question flowstat answers.
        .init(
            metric: .limitedSeconds, name: "tcp_flow_limited_seconds_total",
            help:
                "Seconds of the TCP flow's observed life by what limited it: network (busy, cwnd-bound), receiver (peer window), sender_buffer (send buffer), application (idle or app-limited).",
            type: .counter, tcpInfoField: "tcpi_busy_time", seed: nil,  // with tcpi_rwnd_limited, tcpi_sndbuf_limited
            configSwitch: ConfigSwitch(group: .counters, key: "limitedSeconds", aliases: []),
            // The reason with the largest share of the flow's life: "receiver 90%".
            column: FlowColumn(title: "limited by") { $0.limitShare?.description ?? "-" },
            series: [
                limitedSeries(.network, label: ",reason=\"network\"", json: "limited_network_seconds"),
                limitedSeries(.receiver, label: ",reason=\"receiver\"", json: "limited_receiver_seconds"),
                limitedSeries(
                    .senderBuffer, label: ",reason=\"sender_buffer\"", json: "limited_sender_buffer_seconds"),
                limitedSeries(
                    .application, label: ",reason=\"application\"", json: "limited_application_seconds"),
            ],
            folding: .sum, unsetFrom: nil, pageColumn: PageColumn(title: "limited by", format: .limitedBy),
            requires: .timeLimits),
        // The detail below is off by default: one series per flow each, for when a flow needs a closer look.
        .init(
            metric: .deliveryRateAppLimited, name: "tcp_flow_delivery_rate_app_limited",
            help: "1 if the TCP flow's last delivery rate sample was limited by the application, else 0.",
            type: .gauge, tcpInfoField: "tcpi_delivery_rate_app_limited", seed: nil,
            configSwitch: ConfigSwitch(group: .gauges, key: "deliveryRateAppLimited", aliases: []),
            jsonName: "delivery_rate_app_limited", column: nil,
            value: .integer(
                get: { $0.pointee.deliveryRateAppLimited ? 1 : 0 }, set: { $0.pointee.deliveryRateAppLimited = $1 != 0 }
            ),
            folding: .least, unsetFrom: nil, requires: .detail, defaultOn: false),
        .init(
            metric: .notsentBytes, name: "tcp_flow_notsent_bytes",
            help: "Bytes written to the TCP flow by the application and not sent yet.", type: .gauge,
            tcpInfoField: "tcpi_notsent_bytes", seed: nil,
            configSwitch: ConfigSwitch(group: .gauges, key: "notsentBytes", aliases: []),
            jsonName: "notsent_bytes", column: nil,
            value: .integer(
                get: { UInt64($0.pointee.notsentBytes) },
                set: { $0.pointee.notsentBytes = UInt32(truncatingIfNeeded: $1) }),
            folding: .sum, unsetFrom: nil, requires: .detail, defaultOn: false),
        .init(
            metric: .sendWindow, name: "tcp_flow_send_window_bytes",
            help: "Receive window the peer of the TCP flow advertised, after scaling.", type: .gauge,
            tcpInfoField: "tcpi_snd_wnd", seed: nil,
            configSwitch: ConfigSwitch(group: .gauges, key: "sendWindow", aliases: []),
            jsonName: "send_window_bytes", column: nil,
            value: .integer(
                get: { UInt64($0.pointee.sendWindow) }, set: { $0.pointee.sendWindow = UInt32(truncatingIfNeeded: $1) }),
            folding: .sum, unsetFrom: nil, requires: .lossDetail, defaultOn: false),
        .init(
            metric: .receiveRTT, name: "tcp_flow_receive_rtt_seconds",
            help: "Receive-side round-trip time estimate of the TCP flow (0 before the first).", type: .gauge,
            tcpInfoField: "tcpi_rcv_rtt", seed: nil,
            configSwitch: ConfigSwitch(group: .gauges, key: "receiveRtt", aliases: []),
            jsonName: "receive_rtt_seconds", column: nil,
            value: .real(get: { $0.pointee.receiveRTT }, set: { $0.pointee.receiveRTT = $1 }), folding: .mean,
            unsetFrom: nil, requires: .detail, defaultOn: false),
        .init(
            metric: .lostSegments, name: "tcp_flow_lost_segments",
            help: "Segments of the TCP flow presumed lost now.", type: .gauge, tcpInfoField: "tcpi_lost", seed: nil,
            configSwitch: ConfigSwitch(group: .gauges, key: "lostSegments", aliases: []),
            jsonName: "lost_segments", column: nil,
            value: .integer(
                get: { UInt64($0.pointee.lostSegments) },
                set: { $0.pointee.lostSegments = UInt32(truncatingIfNeeded: $1) }),
            folding: .sum, unsetFrom: nil, requires: .detail, defaultOn: false),
        .init(
            metric: .retransmitsInFlight, name: "tcp_flow_retransmits_in_flight_segments",
            help: "Retransmitted segments of the TCP flow in flight now.", type: .gauge, tcpInfoField: "tcpi_retrans",
            seed: nil, configSwitch: ConfigSwitch(group: .gauges, key: "retransmitsInFlight", aliases: []),
            jsonName: "retransmits_in_flight_segments", column: nil,
            value: .integer(
                get: { UInt64($0.pointee.retransmitsInFlight) },
                set: { $0.pointee.retransmitsInFlight = UInt32(truncatingIfNeeded: $1) }),
            folding: .sum, unsetFrom: nil, requires: .detail, defaultOn: false),
        .init(
            metric: .reorderingEvents, name: "tcp_flow_reordering_events_total",
            help: "Reordering events the TCP flow's sender detected.", type: .counter, tcpInfoField: "tcpi_reord_seen",
            seed: nil, configSwitch: ConfigSwitch(group: .counters, key: "reorderingEvents", aliases: []),
            jsonName: "reordering_events", column: nil,
            value: .integer(
                get: { UInt64($0.pointee.reorderingEvents) },
                set: { $0.pointee.reorderingEvents = UInt32(truncatingIfNeeded: $1) }),
            folding: .sum, unsetFrom: nil, requires: .lossDetail, defaultOn: false),
        .init(
            metric: .dsackDuplicates, name: "tcp_flow_dsack_duplicates_total",
            help: "Segments of the TCP flow the peer reported receiving twice (D-SACK): spurious retransmits.",
            type: .counter, tcpInfoField: "tcpi_dsack_dups", seed: nil,
            configSwitch: ConfigSwitch(group: .counters, key: "dsackDuplicates", aliases: []),
            jsonName: "dsack_duplicates", column: nil,
            value: .integer(
                get: { UInt64($0.pointee.dsackDuplicates) },
                set: { $0.pointee.dsackDuplicates = UInt32(truncatingIfNeeded: $1) }),
            folding: .sum, unsetFrom: nil, requires: .lossDetail, defaultOn: false),
        .init(
            metric: .outOfOrderPackets, name: "tcp_flow_out_of_order_packets_total",
            help: "Packets the TCP flow received out of order.", type: .counter, tcpInfoField: "tcpi_rcv_ooopack",
            seed: nil, configSwitch: ConfigSwitch(group: .counters, key: "outOfOrderPackets", aliases: []),
            jsonName: "out_of_order_packets", column: nil,
            value: .integer(
                get: { UInt64($0.pointee.outOfOrderPackets) },
                set: { $0.pointee.outOfOrderPackets = UInt32(truncatingIfNeeded: $1) }),
            folding: .sum, unsetFrom: nil, requires: .lossDetail, defaultOn: false),
        .init(
            metric: .rtoTimeouts, name: "tcp_flow_rto_timeouts_total",
            help: "Retransmission timeouts of the TCP flow (Linux 6.7 and later).", type: .counter,
            tcpInfoField: "tcpi_total_rto", seed: nil,
            configSwitch: ConfigSwitch(group: .counters, key: "rtoTimeouts", aliases: []),
            jsonName: "rto_timeouts", column: nil,
            value: .integer(
                get: { UInt64($0.pointee.rtoTimeouts) },
                set: { $0.pointee.rtoTimeouts = UInt32(truncatingIfNeeded: $1) }),
            folding: .sum, unsetFrom: nil, requires: .rtoTotals, defaultOn: false),
        .init(
            metric: .rtoRecoveries, name: "tcp_flow_rto_recoveries_total",
            help: "Recoveries from retransmission timeouts of the TCP flow (Linux 6.7 and later).", type: .counter,
            tcpInfoField: "tcpi_total_rto_recoveries", seed: nil,
            configSwitch: ConfigSwitch(group: .counters, key: "rtoRecoveries", aliases: []),
            jsonName: "rto_recoveries", column: nil,
            value: .integer(
                get: { UInt64($0.pointee.rtoRecoveries) },
                set: { $0.pointee.rtoRecoveries = UInt32(truncatingIfNeeded: $1) }),
            folding: .sum, unsetFrom: nil, requires: .rtoTotals, defaultOn: false),
        .init(
            metric: .rtoTime, name: "tcp_flow_rto_seconds_total",
            help: "Time the TCP flow spent recovering from retransmission timeouts (Linux 6.7 and later).",
            type: .counter, tcpInfoField: "tcpi_total_rto_time", seed: nil,
            configSwitch: ConfigSwitch(group: .counters, key: "rtoSeconds", aliases: []),
            jsonName: "rto_seconds", column: nil,
            value: .real(get: { $0.pointee.rtoTime }, set: { $0.pointee.rtoTime = $1 }), folding: .sum,
            unsetFrom: nil, requires: .rtoTotals, defaultOn: false),
        .init(
            metric: .zeroWindowProbes, name: "tcp_flow_zero_window_probes",
            help: "Zero-window probes the TCP flow sent that the peer has not answered yet.", type: .gauge,
            tcpInfoField: "tcpi_probes", seed: nil,
            configSwitch: ConfigSwitch(group: .gauges, key: "zeroWindowProbes", aliases: []),
            jsonName: "zero_window_probes", column: nil,
            value: .integer(
                get: { UInt64($0.pointee.zeroWindowProbes) },
                set: { $0.pointee.zeroWindowProbes = UInt8(truncatingIfNeeded: $1) }),
            folding: .sum, unsetFrom: nil, requires: .detail, defaultOn: false),
    ]

    /// Series a flow gets with `metrics` on (at most: a family whose fields a flow lacks
    /// has none for it).
    public static func seriesPerFlow(_ metrics: Set<FlowMetric>) -> Int {
        all.reduce(0) { $0 + (metrics.contains($1.metric) ? $1.series.count : 0) }
    }

    /// The optional fields `metrics` read: what a scrape asks its source for.
    public static func fieldsNeeded(by metrics: Set<FlowMetric>) -> FlowFields {
        all.reduce(into: FlowFields()) { if metrics.contains($1.metric) { $0.formUnion($1.requires) } }
    }

    /// The metrics exported when the config does not say (`defaultOn`).
    public static let defaultMetrics: Set<FlowMetric> = Set(all.filter(\.defaultOn).map(\.metric))

    /// One reason's series of `tcp_flow_limited_seconds_total`. Folded (`pid_condensed`)
    /// flows add up each reason's seconds; the setter is for that sum.
    private static func limitedSeries(_ reason: LimitReason, label: StaticString, json: StaticString) -> FlowSeries {
        FlowSeries(
            label: label, jsonName: json,
            value: .real(
                get: { $0.pointee.limitedTime(reason) },
                set: { $0.pointee.setLimitedTime(reason, $1) }))
    }

    /// Every series of every entry, in output order: the encoder's columns.
    static let slots: [(entry: Int, series: Int)] = all.indices.flatMap { entry in
        all[entry].series.indices.map { (entry: entry, series: $0) }
    }

    /// The position in `slots` of each entry's first series.
    static let firstSlot: [Int] = {
        var positions: [Int] = []
        var next = 0
        for entry in all {
            positions.append(next)
            next += entry.series.count
        }
        return positions
    }()

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
