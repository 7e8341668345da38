// SPDX-License-Identifier: Apache-2.0

import FlowStatCore
import Testing

@Suite("Prometheus text building blocks")
struct PrometheusTextTests {
    @Test(
        "sample values",
        arguments: [
            (0.0, "0"), (-0.0, "0"), (1, "1"), (10, "10"), (-5, "-5"), (65_536, "65536"),
            (1e15, "1000000000000000"), (1e18, "1000000000000000000"),
            (0x1p63, "9.223372036854776e+18"),  // beyond Int64: exponent form
            (0.5, "0.5"), (-0.25, "-0.25"), (123e-6, "0.000123"), (0.0042, "0.0042"), (123.456, "123.456"),
            (1e-9, "0.000000001"), (8_400_000.5, "8400000.5"),
            (1e-10, "1e-10"), (0.1 + 0.2, "0.30000000000000004"), (1.5e300, "1.5e+300"),
            (Double.leastNonzeroMagnitude, "5e-324"), (-Double.greatestFiniteMagnitude, "-1.7976931348623157e+308"),
            (.nan, "NaN"), (.infinity, "+Inf"), (-.infinity, "-Inf"),
        ] as [(Double, String)])
    func format(value: Double, text: String) {
        #expect(PrometheusText.format(value) == text)
    }

    @Test("every formatted value parses back to the same double")
    func formatRoundTrips() {
        let seed = TestSeed.make(for: "PrometheusTextTests.formatRoundTrips")
        var generator = SeededGenerator(seed: seed)
        var values: [Double] = []
        for _ in 0..<20_000 {
            // Kernel-like values (microseconds, bytes per second) and arbitrary bit patterns.
            values.append(Double(UInt32.random(in: 0...10_000_000, using: &generator)) / 1e6)
            values.append(Double(UInt64.random(in: 0...UInt64(1) << 40, using: &generator)) / 1e3)
            let bits = Double(bitPattern: generator.next())
            if bits.isFinite { values.append(bits) }
        }
        for value in values {
            let text = PrometheusText.format(value)
            #expect(Double(text) == value, "seed \(seed): \(value) formatted as \(text)")
            #expect(!text.contains(" "), "seed \(seed): \(value) formatted as \(text)")
        }
    }

    @Test(
        "label value escaping",
        arguments: [
            ("plain", "plain"), ("", ""), (#"say "hi""#, #"say \"hi\""#), (#"C:\path"#, #"C:\\path"#),
            ("two\nlines", #"two\nlines"#), ("tab\tand é", "tab\tand é"), (#"\""#, #"\\\""#),
        ] as [(String, String)])
    func escapeLabelValue(raw: String, escaped: String) {
        #expect(PrometheusText.escapeLabelValue(raw) == escaped)
    }
}
