// SPDX-License-Identifier: Apache-2.0

/// Text-format building blocks as standalone functions, for code that writes exposition
/// outside `MetricsEncoder` (compatibility output, tests) and wants the same spelling.
///
/// They return `String`s, so they allocate; the encoder uses the in-place `ByteWriter`
/// routines they wrap.
public enum PrometheusText {
    /// A sample value as the encoder writes it: integers without exponent or fraction,
    /// short decimals as decimals, anything else in shortest round-trip form, and `NaN`,
    /// `+Inf`, `-Inf`. Prometheus parses the text back to exactly `value`.
    public static func format(_ value: Double) -> String {
        withWriter(capacity: ByteWriter.maxDoubleLength) { $0.write(value) }
    }

    /// A label value with backslash, double quote and line feed escaped.
    public static func escapeLabelValue(_ value: String) -> String {
        withWriter(capacity: 2 * value.utf8.count) { $0.writeEscapedLabelValue(value) }
    }

    private static func withWriter(capacity: Int, _ body: (inout ByteWriter) -> Void) -> String {
        String(unsafeUninitializedCapacity: max(capacity, 1)) { buffer in
            var writer = ByteWriter(buffer.baseAddress!)
            body(&writer)
            return writer.count
        }
    }
}
