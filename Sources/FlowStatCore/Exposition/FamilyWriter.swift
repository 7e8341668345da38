// SPDX-License-Identifier: Apache-2.0

import NIOCore

/// Writes metric families line by line in one exposition format: the metadata lines by each
/// format's rules, and samples of the small families (self metrics, histograms,
/// aggregates). The encoder's per-flow families have a faster path of their own; everything
/// else, in the encoder or beside it (process and collector metrics), goes through here so
/// that every family is right in both formats.
struct FamilyWriter {
    let format: MetricsEncoder.Format

    enum MetricType {
        init(_ type: FlowMetricType) {
            switch type {
            case .gauge: self = .gauge
            case .counter: self = .counter
            case .untyped: self = .untyped
            }
        }

        case gauge
        case counter
        case histogram
        /// Prometheus' `untyped` (OpenMetrics' `unknown`): for the seed's names that break
        /// the naming rules of the types they would have.
        case untyped
        /// A gauge of constant 1 whose labels describe something (`*_info`): an OpenMetrics
        /// info family; a gauge in the Prometheus text format.
        case info
    }

    /// Writes a family of one unlabelled sample: header and value.
    func family(
        _ name: StaticString, _ help: StaticString, _ type: MetricType, _ value: Double, into buffer: inout ByteBuffer
    ) {
        header(name, help, type, into: &buffer)
        sample(name, value: value, into: &buffer)
    }

    /// Writes a family's metadata lines in the format being encoded. `name` is the sample
    /// name (with `_total` for counters, `_info` for info families); every family goes
    /// through here, so a new family is right in both formats.
    ///
    /// - Prometheus text: `# HELP` and `# TYPE` with the sample name; info is a gauge.
    /// - OpenMetrics: `# TYPE`, `# UNIT` (when the family name ends in `_seconds` or
    ///   `_bytes`) and `# HELP`, with the family name: the sample name without `_total`
    ///   (counters) or `_info` (info).
    ///
    /// Help texts are constants without backslashes, quotes or line feeds, so they need no
    /// escaping in either format.
    func header(_ name: StaticString, _ help: StaticString, _ type: MetricType, into buffer: inout ByteBuffer) {
        let sampleName = UnsafeRawBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount)
        switch format {
        case .prometheusText:
            let typeText: StaticString
            switch type {
            case .gauge, .info: typeText = "gauge"
            case .counter: typeText = "counter"
            case .histogram: typeText = "histogram"
            case .untyped: typeText = "untyped"
            }
            buffer.writeStaticString("# HELP ")
            buffer.writeBytes(sampleName)
            buffer.writeStaticString(" ")
            buffer.writeStaticString(help)
            buffer.writeStaticString("\n# TYPE ")
            buffer.writeBytes(sampleName)
            buffer.writeStaticString(" ")
            buffer.writeStaticString(typeText)
            buffer.writeStaticString("\n")
        case .openMetrics:
            let typeText: StaticString
            var family = sampleName
            switch type {
            case .gauge: typeText = "gauge"
            case .histogram: typeText = "histogram"
            case .untyped: typeText = "unknown"
            case .counter:
                typeText = "counter"
                family = Self.dropping("_total", from: family)
            case .info:
                typeText = "info"
                family = Self.dropping("_info", from: family)
            }
            buffer.writeStaticString("# TYPE ")
            buffer.writeBytes(family)
            buffer.writeStaticString(" ")
            buffer.writeStaticString(typeText)
            buffer.writeStaticString("\n")
            if let unit = Self.unit(ofFamily: family) {
                buffer.writeStaticString("# UNIT ")
                buffer.writeBytes(family)
                buffer.writeStaticString(" ")
                buffer.writeStaticString(unit)
                buffer.writeStaticString("\n")
            }
            buffer.writeStaticString("# HELP ")
            buffer.writeBytes(family)
            buffer.writeStaticString(" ")
            buffer.writeStaticString(help)
            buffer.writeStaticString("\n")
        }
    }

    /// `name` without `suffix` if it ends with it.
    private static func dropping(_ suffix: StaticString, from name: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer {
        let suffixBytes = UnsafeRawBufferPointer(start: suffix.utf8Start, count: suffix.utf8CodeUnitCount)
        guard name.count > suffixBytes.count, name.suffix(suffixBytes.count).elementsEqual(suffixBytes) else {
            return name
        }
        return UnsafeRawBufferPointer(rebasing: name.prefix(name.count - suffixBytes.count))
    }

    /// The OpenMetrics unit a family name declares by its suffix, if any. OpenMetrics
    /// requires a family with a unit to end in `_<unit>`, so only such names get one.
    private static func unit(ofFamily family: UnsafeRawBufferPointer) -> StaticString? {
        for unit: StaticString in ["seconds", "bytes"] {
            let unitBytes = UnsafeRawBufferPointer(start: unit.utf8Start, count: unit.utf8CodeUnitCount)
            if family.count > unitBytes.count + 1, family.suffix(unitBytes.count).elementsEqual(unitBytes),
                family[family.count - unitBytes.count - 1] == UInt8(ascii: "_")
            {
                return unit
            }
        }
        return nil
    }

    /// An OpenMetrics exemplar: the labels of one observation behind a sample, and its value.
    struct Exemplar {
        var labels: [(name: StaticString, value: String)]
        var value: Double
    }

    /// Writes one sample line of a self metric; label values are escaped. An exemplar is
    /// written in OpenMetrics only (the Prometheus text format has none), without a timestamp.
    func sample(
        _ name: StaticString,
        suffix: StaticString = "",
        labels: [(name: StaticString, value: String)] = [],
        value: Double,
        exemplar: Exemplar? = nil,
        into buffer: inout ByteBuffer
    ) {
        let exemplar = format == .openMetrics ? exemplar : nil
        var bound = name.utf8CodeUnitCount + suffix.utf8CodeUnitCount + ByteWriter.maxDoubleLength + 4
        for label in labels + (exemplar?.labels ?? []) {
            bound += label.name.utf8CodeUnitCount + 2 * label.value.utf8.count + 4
        }
        if exemplar != nil { bound += ByteWriter.maxDoubleLength + 6 }
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: bound) { destination in
            var writer = ByteWriter(destination)
            writer.write(name)
            writer.write(suffix)
            if !labels.isEmpty {
                writer.write(byte: UInt8(ascii: "{"))
                for (index, label) in labels.enumerated() {
                    if index > 0 { writer.write(byte: UInt8(ascii: ",")) }
                    writer.write(label.name)
                    writer.write("=\"")
                    writer.writeEscapedLabelValue(label.value)
                    writer.write(byte: UInt8(ascii: "\""))
                }
                writer.write(byte: UInt8(ascii: "}"))
            }
            writer.write(byte: UInt8(ascii: " "))
            writer.write(value)
            if let exemplar {
                writer.write(" # {")
                for (index, label) in exemplar.labels.enumerated() {
                    if index > 0 { writer.write(byte: UInt8(ascii: ",")) }
                    writer.write(label.name)
                    writer.write("=\"")
                    writer.writeEscapedLabelValue(label.value)
                    writer.write(byte: UInt8(ascii: "\""))
                }
                writer.write("} ")
                writer.write(exemplar.value)
            }
            writer.write(byte: UInt8(ascii: "\n"))
            return writer.count
        }
    }
}
