// SPDX-License-Identifier: Apache-2.0

import NIOCore

/// The seed exporter's collector self-metrics, written in compat output (`--compat
/// ss-exporter`) for the dashboards and alerts that read them.
///
/// Their meaning is the seed's (prometheus_ss_exporter 3.x, `src/collector.nim`,
/// `preprocessMetricsWithConfig`): every scrape runs one collection;
/// `collector_data_status{status="success"}` is the number of flows collected (after
/// selection, the value of `tcp_flows_total`); when collecting fails, the status is a
/// failure name with value 1 instead. The seed had two failure names: `ss2_command_failed`
/// (its `ss2` run failed) and `json_parse_error` (its output could not be read). flowstat
/// reads flows without a subprocess or JSON, so a failed flow source is `ss2_command_failed`,
/// the seed's name for "the flow source failed"; `json_parse_error` never appears.
///
/// One deliberate difference: the seed rebuilt `collector_collection_runs_total` as the
/// constant 1 on every scrape; flowstat counts the runs since start, which is what the name
/// and the counter type promise (1 at the first scrape, as the seed's).
public enum CollectorMetrics {
    /// How the collection of one scrape went.
    public enum Status: Sendable, Hashable {
        /// Collected; the flows after selection.
        case success(flows: Double)
        /// The flow source failed.
        case sourceFailed

        /// The seed's `status` label value.
        public var label: String {
            switch self {
            case .success: "success"
            case .sourceFailed: "ss2_command_failed"
            }
        }
    }

    public static func write(
        runs: UInt64, status: Status, format: MetricsEncoder.Format, into buffer: inout ByteBuffer
    ) {
        let lines = FamilyWriter(format: format)
        lines.family(
            "collector_collection_runs_total", "Collections run since start, one per scrape.", .counter, Double(runs),
            into: &buffer)
        lines.header(
            "collector_data_status",
            "Outcome of this scrape's collection: flows collected under status success, or 1 under ss2_command_failed when the flow source failed.",
            .gauge, into: &buffer)
        let value: Double =
            switch status {
            case .success(let flows): flows
            case .sourceFailed: 1
            }
        lines.sample("collector_data_status", labels: [("status", status.label)], value: value, into: &buffer)
    }
}
