// SPDX-License-Identifier: Apache-2.0

import Foundation
import Testing

@testable import FlowStatCore

/// Bounded randomized testing of the config parser: the seed fixtures and the sample are
/// mutated (lines dropped, duplicated or swapped, bytes flipped, values replaced with
/// hostile ones, indentation shifted) and every result must either parse into a config
/// whose invariants hold, or be rejected with a `ConfigError` that names a line inside the
/// file (or none) and has a problem and a fix. A crash or a hang fails the run.
///
/// `make test` runs 3,000 inputs from a fixed seed. For a longer run:
/// `FLOWSTAT_CONFIG_FUZZ_ITERATIONS=200000 FLOWSTAT_CONFIG_FUZZ_SEED=$RANDOM swift test --filter ConfigFuzzTests`.
/// A failure prints the seed, the iteration and the input.
@Suite("Config parser fuzzing")
struct ConfigFuzzTests {
    static let environment = ProcessInfo.processInfo.environment
    static let iterations = environment["FLOWSTAT_CONFIG_FUZZ_ITERATIONS"].flatMap(Int.init) ?? 3_000
    static let seed = environment["FLOWSTAT_CONFIG_FUZZ_SEED"].flatMap(UInt64.init) ?? 20_261_125

    static func fixture(_ name: String) throws -> String {
        try String(contentsOfFile: "\(Fixtures.directory)/\(name)", encoding: .utf8)
    }

    /// Values that have broken parsers: wrong types, extremes, YAML oddities.
    static let hostileValues = [
        "", "~", "null", "-1", "0", "65536", "99999999999999999999999", "1e309", "-0.0", "nan", ".inf", "true", "[]",
        "{}", "[1, [2, [3]]]", "\"\\u0000\"", "'::ffff:999.1.1.1'", "10.0.0.0/33", "fd00::/129", "::/0", "0.0.0.0/0",
        "&anchor x", "*anchor", "!!binary aGk=", "{lower: 443, upper: 80}", "[0.5, 0.25]",
        "\"\(String(repeating: "a", count: 5000))\"",
        "|\n  multi\n  line", "- - -",
    ]

    @Test("mutated configs parse or fail with a located ConfigError; never crash")
    func mutatedConfigs() throws {
        let corpus = [try Self.fixture("seed-3.x.yml"), try Self.fixture("seed-2.x.yml"), FlowStatConfig.sampleYAML]
        var generator = SeededGenerator(seed: Self.seed)
        var accepted = 0
        var rejected = 0
        for iteration in 0..<Self.iterations {
            let input = Self.mutate(corpus[Int.random(in: 0..<corpus.count, using: &generator)], using: &generator)
            let lineCount = input.split(separator: "\n", omittingEmptySubsequences: false).count
            do {
                let config = try FlowStatConfig(yaml: input, file: "fuzz.yml")
                accepted += 1
                // Whatever parsed must be usable: bounds increasing and positive, ranges ordered.
                let bounds = config.rttBucketBounds
                #expect(
                    zip(bounds, bounds.dropFirst()).allSatisfy { $0 < $1 }, "seed \(Self.seed) #\(iteration): \(input)")
                #expect(bounds.allSatisfy { $0 > 0 && $0.isFinite }, "seed \(Self.seed) #\(iteration): \(input)")
                #expect(
                    config.cardinality.maxFlows >= 0 && config.cardinality.maxAggregates >= 1,
                    "seed \(Self.seed) #\(iteration): \(input)")
            } catch {
                rejected += 1
                #expect(error.file == "fuzz.yml")
                #expect(
                    error.line.map { (1...max(lineCount, 1) + 1).contains($0) } ?? true,
                    "line \(String(describing: error.line)) outside the input; seed \(Self.seed) #\(iteration): \(input)"
                )
                #expect(!error.problem.isEmpty && !error.fix.isEmpty, "seed \(Self.seed) #\(iteration): \(input)")
            }
        }
        // Both outcomes must be exercised, or the mutations are too weak or too strong.
        #expect(accepted > Self.iterations / 20, "accepted \(accepted), rejected \(rejected)")
        #expect(rejected > Self.iterations / 20, "accepted \(accepted), rejected \(rejected)")
    }

    static func mutate(_ text: String, using generator: inout SeededGenerator) -> String {
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        for _ in 0..<Int.random(in: 1...3, using: &generator) where !lines.isEmpty {
            let index = Int.random(in: 0..<lines.count, using: &generator)
            switch Int.random(in: 0..<7, using: &generator) {
            case 0:
                lines.remove(at: index)
            case 1:
                lines.insert(lines[index], at: index)
            case 2:
                lines.swapAt(index, Int.random(in: 0..<lines.count, using: &generator))
            case 3:
                // Replace a value with a hostile one.
                if let colon = lines[index].firstIndex(of: ":") {
                    let value = hostileValues[Int.random(in: 0..<hostileValues.count, using: &generator)]
                    lines[index] = String(lines[index][...colon]) + " " + value
                }
            case 4:
                lines[index] = " " + lines[index]
            case 5:
                var bytes = Array(lines[index].utf8)
                if !bytes.isEmpty {
                    bytes[Int.random(in: 0..<bytes.count, using: &generator)] = UInt8.random(
                        in: 0...127, using: &generator)
                }
                lines[index] = String(decoding: bytes, as: UTF8.self)
            default:
                // Rename a key to a near miss.
                if let colon = lines[index].firstIndex(of: ":"), colon > lines[index].startIndex {
                    lines[index].insert("x", at: colon)
                }
            }
        }
        return lines.joined(separator: "\n")
    }
}
