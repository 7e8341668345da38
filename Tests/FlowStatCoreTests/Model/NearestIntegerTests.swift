// SPDX-License-Identifier: Apache-2.0

import Testing

@testable import FlowStatCore

@Suite("Nearest integer without libm")
struct NearestIntegerTests {
    @Test(
        "agrees with the standard library's ties-to-even rounding, at the edges and at random",
        arguments: [
            0, 0.4, 0.5, 0.6, 1.5, 2.5, 123.49999999999999, 4_503_599_627_370_495.5, 0x1p52, 0x1p52 + 1, 0x1p53 - 1,
            0x1p53, 1e300, .infinity,
        ] as [Double])
    func edges(value: Double) {
        #expect(value.nearestInteger() == value.rounded(.toNearestOrEven))
    }

    @Test("at random over the range the encoder scales into (below 2^53)")
    func random() {
        let seed = TestSeed.make(for: "NearestIntegerTests.random")
        var generator = SeededGenerator(seed: seed)
        for _ in 0..<100_000 {
            let value =
                Double.random(in: 0..<0x1p53, using: &generator)
                / Double(1 << Int.random(in: 0...40, using: &generator))
            #expect(value.nearestInteger() == value.rounded(.toNearestOrEven), "seed \(seed): \(value)")
        }
    }
}
