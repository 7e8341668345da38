// SPDX-License-Identifier: Apache-2.0

import Foundation
import NIOCore
import Testing

@testable import FlowStatCore

#if canImport(Glibc)
import Glibc
#endif

/// The seed's collector self-metrics in compat output, and the standard `process_*`
/// metrics in both outputs and both formats. Process values are checked against oracles the
/// test reads itself through other interfaces: getrlimit, getrusage, `ps`, and descriptors
/// it opens.
@Suite("Self metrics: the seed's collector status and process metrics")
struct SelfMetricsTests {
    /// A flow source that fails every snapshot, as a BPF source whose maps are gone.
    struct FailingSource: FlowSource {
        struct Failure: Error, CustomStringConvertible {
            var description: String { "flow map read failed" }
        }
        let info = SourceInfo(kind: .fake, hooks: [])
        func snapshot() throws -> FlowSnapshot { throw Failure() }
    }

    private func scraper(
        _ source: any FlowSource, output: OutputMode, selection: FlowSelection = FlowSelection()
    ) -> ExportPipeline {
        var config = Fixtures.uncapped
        config.output = output
        config.selection = selection
        return ExportPipeline(
            source: source, config: config, build: Fixtures.build, processMetrics: { Fixtures.process })
    }

    private func scrape(_ scraper: ExportPipeline, _ format: MetricsEncoder.Format = .prometheusText) throws -> String {
        String(buffer: try scraper.scrape(format: format))
    }

    /// The value of the one sample line that starts with `prefix` (name and labels).
    private func value(_ text: String, _ prefix: String) -> Double? {
        let lines = text.split(separator: "\n").filter { $0.hasPrefix(prefix + " ") }
        guard lines.count == 1 else { return nil }
        return Double(lines[0].split(separator: " ").last!)
    }

    // MARK: - The seed's collector metrics

    @Test("compat: runs count scrapes; status success carries the flow count (exact text)")
    func collectorSuccess() throws {
        let scraper = scraper(
            FakeFlowSource(snapshot: Fixtures.snapshot, info: Fixtures.sourceInfo), output: .ssExporter)
        for run in 1...3 {
            let text = try scrape(scraper)
            // The fixture has 5 flows (2 IPv4, 1 IPv4-mapped, 2 IPv6).
            #expect(
                text.contains(
                    """
                    # HELP collector_collection_runs_total Collections run since start, one per scrape.
                    # TYPE collector_collection_runs_total counter
                    collector_collection_runs_total \(run)
                    # HELP collector_data_status Outcome of this scrape's collection: flows collected under status success, or 1 under ss2_command_failed when the flow source failed.
                    # TYPE collector_data_status gauge
                    collector_data_status{status="success"} 5

                    """))
            #expect(value(text, "tcp_flows_total") == 5)
        }
    }

    @Test("compat: status success counts the selected flows, as the seed's (after selection)")
    func collectorCountsSelected() throws {
        // Local port 80 is the two flows 10.0.0.1:80 of the fixture (host and container netns).
        let selection = FlowSelection(localPorts: [PortRange(lower: 80, upper: 80)])
        let text = try scrape(
            scraper(
                FakeFlowSource(snapshot: Fixtures.snapshot, info: Fixtures.sourceInfo), output: .ssExporter,
                selection: selection))
        #expect(value(text, "collector_data_status{status=\"success\"}") == 2)
    }

    @Test("compat: a failing source answers with status ss2_command_failed 1, in both formats; /health fails")
    func collectorFailure() throws {
        let scraper = scraper(FailingSource(), output: .ssExporter)
        let text = try scrape(scraper)
        #expect(
            text == """
                # HELP collector_collection_runs_total Collections run since start, one per scrape.
                # TYPE collector_collection_runs_total counter
                collector_collection_runs_total 1
                # HELP collector_data_status Outcome of this scrape's collection: flows collected under status success, or 1 under ss2_command_failed when the flow source failed.
                # TYPE collector_data_status gauge
                collector_data_status{status="ss2_command_failed"} 1

                """ + Fixtures.processExposition)
        #expect(scraper.health == .unavailable("the last snapshot failed: flow map read failed"))
        let openMetrics = try scrape(scraper, .openMetrics)
        #expect(
            openMetrics.hasPrefix(
                """
                # TYPE collector_collection_runs counter
                # HELP collector_collection_runs Collections run since start, one per scrape.
                collector_collection_runs_total 2
                # TYPE collector_data_status gauge

                """))
        #expect(openMetrics.contains("collector_data_status{status=\"ss2_command_failed\"} 1\n"))
        #expect(openMetrics.hasSuffix("process_start_time_seconds 1700000000.25\n# EOF\n"))
    }

    @Test("flowstat output: no collector families, and a failing source is still an error")
    func flowstatOutput() throws {
        let text = try scrape(
            scraper(
                FakeFlowSource(snapshot: Fixtures.snapshot, info: Fixtures.sourceInfo), output: .flowstat))
        #expect(!text.contains("collector_"))
        #expect(text.hasSuffix(Fixtures.processExposition))
        #expect(throws: FailingSource.Failure.self) { try scraper(FailingSource(), output: .flowstat).scrape() }
    }

    // MARK: - Process metrics: text

    @Test("process metrics in OpenMetrics: family names, units, HELP (exact text)")
    func processOpenMetrics() {
        var buffer = ByteBuffer()
        Fixtures.process.write(format: .openMetrics, into: &buffer)
        #expect(
            String(buffer: buffer) == """
                # TYPE process_cpu_seconds counter
                # UNIT process_cpu_seconds seconds
                # HELP process_cpu_seconds Total user and system CPU time spent in seconds.
                process_cpu_seconds_total 12.5
                # TYPE process_open_fds gauge
                # HELP process_open_fds Number of open file descriptors.
                process_open_fds 17
                # TYPE process_max_fds gauge
                # HELP process_max_fds Maximum number of open file descriptors.
                process_max_fds 20000
                # TYPE process_virtual_memory_bytes gauge
                # UNIT process_virtual_memory_bytes bytes
                # HELP process_virtual_memory_bytes Virtual memory size in bytes.
                process_virtual_memory_bytes 1073741824
                # TYPE process_resident_memory_bytes gauge
                # UNIT process_resident_memory_bytes bytes
                # HELP process_resident_memory_bytes Resident memory size in bytes.
                process_resident_memory_bytes 25165824
                # TYPE process_start_time_seconds gauge
                # UNIT process_start_time_seconds seconds
                # HELP process_start_time_seconds Start time of the process since unix epoch in seconds.
                process_start_time_seconds 1700000000.25

                """)
    }

    @Test("/proc/self/stat: fields counted from the last parenthesis (a command name may hold \") \")")
    func parseStat() {
        // Fields 3... of proc(5): state ppid pgrp session tty tpgid flags minflt cminflt majflt
        // cmajflt utime(14) stime(15) cutime cstime priority nice threads itrealvalue
        // starttime(22) vsize(23) rss(24) ...
        let stat =
            "4242 (evil) (name) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 125 7 8 20 0 3 0 "
            + "100000 987654321 2048 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"
        let metrics = ProcessMetrics.parse(stat: stat, bootTime: 1_700_000_000, ticksPerSecond: 100, pageSize: 4096)
        #expect(metrics?.cpuSeconds == 3.75)  // (250 + 125) / 100
        #expect(metrics?.startTimeSeconds == 1_700_001_000)  // boot + 100000 / 100
        #expect(metrics?.virtualMemoryBytes == 987_654_321)
        #expect(metrics?.residentMemoryBytes == 8_388_608)  // 2048 pages of 4 KiB
        #expect(ProcessMetrics.parse(stat: "1 (x) S 1", bootTime: 0, ticksPerSecond: 100, pageSize: 4096) == nil)
        #expect(
            ProcessMetrics.parseMaxOpenFiles(
                """
                Limit                     Soft Limit           Hard Limit           Units
                Max open files            1024                 524288               files
                """) == 1024)
        #expect(
            ProcessMetrics.parseMaxOpenFiles(
                "Max open files            unlimited            unlimited            files\n") == nil)
    }

    // MARK: - Process metrics: values against oracles

    @Test("max fds is getrlimit's soft RLIMIT_NOFILE")
    func maxFDs() throws {
        var limit = rlimit()
        #expect(getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) == 0)
        let metrics = try #require(ProcessMetrics.read())
        #expect(metrics.maxFDs == Double(limit.rlim_cur))
    }

    @Test("CPU seconds lie between getrusage's before and after, and grow with CPU burnt")
    func cpuSeconds() throws {
        func rusageSeconds() -> Double {
            var usage = rusage()
            getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
            return Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6
                + Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) / 1e6
        }
        // /proc truncates user and system time to whole clock ticks (10 ms at USER_HZ 100)
        // each, getrusage does not: /proc may read up to two ticks lower.
        let tick = 2 / Double(sysconf(Int32(_SC_CLK_TCK))) + 1e-9
        let before = rusageSeconds()
        let first = try #require(ProcessMetrics.read()).cpuSeconds
        // Burn 0.3 s of this thread's CPU time (not wall time: the machine is shared).
        func threadCPU() -> Double {
            var now = timespec()
            clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now)
            return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
        }
        var x = 0.0
        let start = threadCPU()
        while threadCPU() - start < 0.3 { x += sin(x) + 1 }
        let second = try #require(ProcessMetrics.read()).cpuSeconds
        let after = rusageSeconds()
        #expect(x > 0)
        #expect(first >= before - tick && first <= after + tick, "\(before) \(first) \(after)")
        #expect(second >= first + 0.25, "burnt 0.3 s of CPU in this thread: \(first) → \(second)")
        #expect(second <= after + tick)
    }

    @Test("open fds grow by exactly the descriptors the test opens (other tests' noise aside)")
    func openFDs() throws {
        let count = 1_000
        var fds: [Int32] = []
        let before = try #require(ProcessMetrics.read()).openFDs
        for _ in 0..<count {
            var pair: [Int32] = [0, 0]
            #expect(pipe(&pair) == 0)
            fds += pair
        }
        let during = try #require(ProcessMetrics.read()).openFDs
        for fd in fds { close(fd) }
        let after = try #require(ProcessMetrics.read()).openFDs
        // Tests run in parallel in this process and open sockets of their own.
        #expect(abs(during - before - Double(2 * count)) <= 150, "\(before) → \(during)")
        #expect(abs(during - after - Double(2 * count)) <= 150, "\(during) → \(after)")
    }

    @Test("start time, resident and virtual memory agree with ps")
    func againstPs() throws {
        let pid = getpid()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/ps")
        process.arguments = ["-o", "etimes=", "-o", "rss=", "-o", "vsz=", "-p", "\(pid)"]
        let out = Pipe()
        process.standardOutput = out
        try process.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        let metrics = try #require(ProcessMetrics.read())
        let columns = text.split(whereSeparator: \.isWhitespace).compactMap { Double($0) }
        try #require(columns.count == 3, "ps printed \(text)")
        let (elapsed, rssKiB, vszKiB) = (columns[0], columns[1], columns[2])
        let now = Date().timeIntervalSince1970
        // ps rounds the elapsed time down to whole seconds.
        #expect(
            abs(metrics.startTimeSeconds - (now - elapsed)) <= 2,
            "start \(metrics.startTimeSeconds), ps says \(now - elapsed)")
        // Memory moves while other tests run in this process: within a quarter (or 32 MiB).
        let rss = rssKiB * 1024
        let vsz = vszKiB * 1024
        #expect(
            abs(metrics.residentMemoryBytes - rss) <= max(rss / 4, 32 * 1_048_576),
            "rss \(metrics.residentMemoryBytes) vs ps \(rss)")
        #expect(
            abs(metrics.virtualMemoryBytes - vsz) <= max(vsz / 4, 256 * 1_048_576),
            "vsz \(metrics.virtualMemoryBytes) vs ps \(vsz)")
    }

    // MARK: - Linters

    /// Runs `arguments` with `input` on stdin; nil when the program is missing.
    private func run(_ arguments: [String], input: String) throws -> (status: Int32, output: String)? {
        guard FileManager.default.isExecutableFile(atPath: arguments[0]) else { return nil }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: arguments[0])
        process.arguments = Array(arguments.dropFirst())
        let stdin = Pipe()
        let stdout = Pipe()
        process.standardInput = stdin
        process.standardOutput = stdout
        process.standardError = stdout
        try process.run()
        stdin.fileHandleForWriting.write(Data(input.utf8))
        try stdin.fileHandleForWriting.close()
        let output = String(decoding: stdout.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return (process.terminationStatus, output)
    }

    @Test(
        "promtool check metrics accepts both outputs with real process metrics and the collector status",
        .enabled(
            if: FileManager.default.isExecutableFile(atPath: "/usr/bin/promtool"),
            "needs promtool (Debian's prometheus package): scripts/install-deps.sh test"))
    func promtool() throws {
        for output in OutputMode.allCases {
            var config = FlowStatConfig()
            config.output = output
            let scraper = ExportPipeline(
                source: FakeFlowSource(snapshot: Fixtures.snapshot, info: Fixtures.sourceInfo), config: config,
                build: Fixtures.build)
            let text = try scrape(scraper)
            #expect(text.contains("\nprocess_resident_memory_bytes "))
            let lint = try #require(try run(["/usr/bin/promtool", "check", "metrics"], input: text))
            // The seed's histogram name carries an abbreviated unit, which promtool flags
            // (status 3); the name stays for the seed's dashboards. Nothing else may fail.
            let complaints = lint.output.split(separator: "\n")
                .filter { $0 != "tcp_rtt_hist_ms metric names should not contain abbreviated units" }
            #expect(
                lint.status == 0 || (output == .ssExporter && lint.status == 3 && complaints.isEmpty),
                "\(output): \(lint.output)")
            // And the failure answer.
            let failed = try scrape(self.scraper(FailingSource(), output: .ssExporter))
            let failedLint = try #require(try run(["/usr/bin/promtool", "check", "metrics"], input: failed))
            #expect(failedLint.status == 0, "\(failedLint.output)")
        }
    }

    @Test(
        "the OpenMetrics reference parser (prometheus_client) accepts both outputs and the failure answer",
        .enabled(
            if: FileManager.default.isExecutableFile(atPath: "/usr/bin/python3"),
            "needs Debian's python3-prometheus-client: scripts/install-deps.sh test"))
    func openMetricsParser() throws {
        let script = """
            import sys
            from prometheus_client.openmetrics.parser import text_string_to_metric_families
            for family in text_string_to_metric_families(sys.stdin.read()):
                print(family.name, family.type, family.unit, len(family.samples))
            """
        var outputs: [(String, String)] = []
        for output in OutputMode.allCases {
            var config = FlowStatConfig()
            config.output = output
            let scraper = ExportPipeline(
                source: FakeFlowSource(snapshot: Fixtures.snapshot, info: Fixtures.sourceInfo), config: config,
                build: Fixtures.build)
            outputs.append(("\(output)", try scrape(scraper, .openMetrics)))
        }
        outputs.append(("failure", try scrape(scraper(FailingSource(), output: .ssExporter), .openMetrics)))
        for (name, text) in outputs {
            let parsed = try #require(try run(["/usr/bin/python3", "-c", script], input: text))
            try #require(!parsed.output.contains("No module named"), "python3-prometheus-client is not installed")
            #expect(parsed.status == 0, "\(name): \(parsed.output)")
            let families = parsed.output.split(separator: "\n")
            #expect(families.contains("process_cpu_seconds counter seconds 1"), "\(name)")
            #expect(families.contains("process_resident_memory_bytes gauge bytes 1"), "\(name)")
            #expect(families.contains("process_start_time_seconds gauge seconds 1"), "\(name)")
            #expect(families.contains("process_open_fds gauge  1"), "\(name)")
            #expect(families.contains("process_max_fds gauge  1"), "\(name)")
            #expect(families.contains("process_virtual_memory_bytes gauge bytes 1"), "\(name)")
            if name != "flowstat" {
                #expect(families.contains("collector_collection_runs counter  1"), "\(name)")
                #expect(families.contains("collector_data_status gauge  1"), "\(name)")
            }
        }
    }
}
