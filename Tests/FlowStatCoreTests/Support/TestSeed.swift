// SPDX-License-Identifier: Apache-2.0

import Foundation

/// Seeds for the tests that draw random inputs: `FLOWSTAT_TEST_SEED` when set, else a fresh
/// one. Either way it is printed, and the tests put it in their failure messages, so that a
/// failing run can be replayed exactly with `FLOWSTAT_TEST_SEED=<seed> swift test --filter …`.
enum TestSeed {
    static func make(for test: String) -> UInt64 {
        let seed =
            ProcessInfo.processInfo.environment["FLOWSTAT_TEST_SEED"].flatMap(UInt64.init)
            ?? UInt64.random(in: .min ... .max)
        print("\(test): seed \(seed) (replay with FLOWSTAT_TEST_SEED=\(seed))")
        return seed
    }
}
