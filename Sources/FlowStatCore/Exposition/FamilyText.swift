import NIOCore

/// Writes the few small families that live outside `MetricsEncoder`'s per-scrape tables
/// (process metrics, the seed's collector status), in both formats, by the encoder's rules:
///
/// - Prometheus text: `# HELP` and `# TYPE` with the sample name.
/// - OpenMetrics: `# TYPE`, `# UNIT` (when the family name ends in `_seconds` or `_bytes`)
///   and `# HELP`, with the family name (a counter's without `_total`); `untyped` is
///   `unknown`.
///
/// Kept apart from the encoder so that these families do not depend on how the encoder
/// organizes its own; they are a handful of lines per scrape, so plain `String`s suffice.
enum FamilyText {
    enum Kind {
        case gauge
        case counter
        /// For the seed's names that break the naming rules of the type they would have.
        case untyped
    }

    static func header(
        _ name: String, help: String, kind: Kind, format: MetricsEncoder.Format, into buffer: inout ByteBuffer
    ) {
        switch format {
        case .prometheusText:
            let type = switch kind {
            case .gauge: "gauge"
            case .counter: "counter"
            case .untyped: "untyped"
            }
            buffer.writeString("# HELP \(name) \(help)\n# TYPE \(name) \(type)\n")
        case .openMetrics:
            var family = Substring(name)
            let type: String
            switch kind {
            case .gauge: type = "gauge"
            case .untyped: type = "unknown"
            case .counter:
                type = "counter"
                if family.hasSuffix("_total") { family = family.dropLast("_total".count) }
            }
            buffer.writeString("# TYPE \(family) \(type)\n")
            for unit in ["seconds", "bytes"] where family.hasSuffix("_\(unit)") {
                buffer.writeString("# UNIT \(family) \(unit)\n")
            }
            buffer.writeString("# HELP \(family) \(help)\n")
        }
    }

    /// One sample line; label values are escaped.
    static func sample(_ name: String, labels: [(String, String)] = [], value: Double, into buffer: inout ByteBuffer) {
        var line = name
        if !labels.isEmpty {
            line += "{" + labels.map { "\($0.0)=\"\(PrometheusText.escapeLabelValue($0.1))\"" }.joined(separator: ",") + "}"
        }
        line += " " + PrometheusText.format(value) + "\n"
        buffer.writeString(line)
    }
}
