// SPDX-License-Identifier: Apache-2.0

import ArgumentParser
import FlowStatCore
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// `flowstat top`: a live view of the slowest or busiest flows, refreshed in place.
struct TopCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "top",
        abstract: "Live view of the slowest or busiest TCP flows, refreshed in place.",
        discussion: """
            Keys: r sorts by RTT, t by retransmits per second, b by bytes per second, c by \
            congestion window, d by delivery rate; q quits. Without a terminal on standard \
            input and output, or with --once, prints one frame (after one interval, so that \
            rates are known) and exits.
            """
    )

    @OptionGroup var sourceFlags: SourceFlags

    @OptionGroup var filterFlags: FilterFlags

    @Option(help: "Seconds between refreshes.")
    var interval = 1.0

    @Option(help: "Initial sort key: rtt, retrans, bytes, cwnd or delivery.")
    var sort = TopView.SortKey.rtt

    @Flag(help: "Print one frame and exit, even on a terminal.")
    var once = false

    @Option(help: "Flows to show in a frame printed without a terminal.")
    var limit = 20

    @Option(
        name: [.customLong("log.level"), .customLong("log-level")],
        help: "Least severe messages to log on stderr: debug, info, warning or error.")
    var logLevel = LogLevelOption.error

    func validate() throws {
        guard interval.isFinite, (0.1...3600).contains(interval) else {
            throw ValidationError("--interval must be from 0.1 to 3600 seconds")
        }
        guard limit >= 1 else { throw ValidationError("--limit must be 1 or more") }
    }

    func run() throws {
        _ = bootstrapLogging(level: logLevel.level)
        do {
            let session = try TroubleshootingSession(filterFlags, sourceFlags)
            defer { session.close() }
            var view = TopView(sort: sort)
            if once || isatty(0) == 0 || isatty(1) == 0 {
                try refresh(&view, session)
                sleepInterval()
                try refresh(&view, session)
                let lines = view.frame(width: 1000, height: limit + 4, clock: Self.clock(), interval: interval)
                writeStandardOutput(lines.joined(separator: "\n") + "\n")
                return
            }
            try live(&view, session)
        } catch let error as StartupError {
            error.report()
            throw ExitCode.failure
        }
    }

    private func live(
        _ view: inout TopView, _ session: TroubleshootingSession
    ) throws {
        let terminal = try RawTerminal()
        defer { terminal.restore() }
        var nextRefresh: UInt64 = 0
        let step = UInt64(interval * 1e9)
        while terminal.stopRequestedBy == 0 {
            let now = SystemClock.monotonicNanoseconds()
            var redraw = false
            if now >= nextRefresh {
                try refresh(&view, session)
                nextRefresh = now + step
                redraw = true
            }
            if redraw { draw(view, terminal) }
            let wait = Int32(
                min((nextRefresh - min(nextRefresh, SystemClock.monotonicNanoseconds())) / 1_000_000, 60_000))
            for byte in terminal.readKeys(timeoutMilliseconds: wait) {
                let key = Character(Unicode.Scalar(byte))
                if key == "q" || key == "Q" || byte == 3 { return }
                if let sortKey = TopView.SortKey(key: Character(key.lowercased())) {
                    view.sort = sortKey
                    draw(view, terminal)
                }
            }
        }
        let number = terminal.stopRequestedBy
        terminal.restore()
        // Exit as the signal would have, now that the terminal is back to normal.
        throw ExitCode(128 + number)
    }

    private func draw(_ view: TopView, _ terminal: RawTerminal) {
        let size = terminal.size
        terminal.draw(view.frame(width: size.width, height: size.height, clock: Self.clock(), interval: interval))
    }

    private func refresh(_ view: inout TopView, _ session: TroubleshootingSession) throws {
        view.update(flows: try session.flows(), time: SystemClock.monotonicNanoseconds())
    }

    private func sleepInterval() {
        var delay = timespec(tv_sec: Int(interval), tv_nsec: Int((interval - interval.rounded(.towardZero)) * 1e9))
        var remaining = timespec()
        while nanosleep(&delay, &remaining) != 0, errno == EINTR { delay = remaining }
    }

    /// Local wall-clock time, `HH:MM:SS`.
    private static func clock() -> String {
        var now = time(nil)
        var parts = tm()
        localtime_r(&now, &parts)
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        return "\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec))"
    }
}
