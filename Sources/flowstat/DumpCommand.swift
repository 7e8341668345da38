// SPDX-License-Identifier: Apache-2.0

import ArgumentParser
import FlowStatCore
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// `flowstat dump`: one snapshot of every flow, as an `ss -ti`-like table or as JSON, for
/// troubleshooting without Prometheus.
struct DumpCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dump",
        abstract: "Print one snapshot of every TCP flow as a table (like ss -ti) or as JSON.",
        discussion: """
            Opens the flow source once (loading the BPF programs takes a moment), reads every \
            flow, prints it and detaches. JSON fields are in base units: seconds, bytes, \
            segments, bytes per second.
            """
    )

    @OptionGroup var sourceFlags: SourceFlags

    @OptionGroup var filterFlags: FilterFlags

    @Option(help: "Sort by: \(FlowSortKey.spellings) (highest first).")
    var sort = FlowSortKey.rtt

    @Option(help: "Print at most this many flows (the top ones by --sort).")
    var limit: Int?

    @Flag(help: "Print one JSON document: an array of flows, with base-unit fields.")
    var json = false

    @Option(
        name: [.customLong("log.level"), .customLong("log-level")],
        help: "Least severe messages to log on stderr: debug, info, warning or error.")
    var logLevel = LogLevelOption.warning

    func validate() throws {
        if let limit, limit < 0 { throw ValidationError("--limit must be 0 or more") }
    }

    func run() throws {
        _ = bootstrapLogging(level: logLevel.level)
        do {
            let session = try TroubleshootingSession(filterFlags, sourceFlags)
            defer { session.close() }
            writeStandardOutput(Self.render(try session.flows(), sort: sort, limit: limit, json: json))
        } catch let error as StartupError {
            error.report()
            throw ExitCode.failure
        }
    }

    /// The output for `flows`: the table with a trailing newline, or one JSON line.
    static func render(_ flows: [FlowSample], sort: FlowSortKey, limit: Int?, json: Bool) -> String {
        let order = FlowRanking.top(flows, by: sort, limit: limit)
        if json {
            return FlowJSON.flowsDocument(flows, indices: order) + "\n"
        }
        return FlowDumpTable.render(flows, indices: order).joined(separator: "\n") + "\n"
    }
}
