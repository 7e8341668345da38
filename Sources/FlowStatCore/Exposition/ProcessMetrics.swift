// SPDX-License-Identifier: Apache-2.0

import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// The standard process metrics every Prometheus client library serves (client_golang's
/// process collector, client_python's `ProcessCollector`, nim-metrics' `process_info` in
/// the seed exporter 3.x), with their names, types and HELP texts, read from `/proc/self`
/// as those libraries read it. Operators use them to watch the exporter's own cost.
///
/// Read once per scrape (`read()`); both output formats, flowstat's names and the seed's.
public struct ProcessMetrics: Sendable, Equatable {
    /// User plus system CPU time, seconds (`utime + stime` of `/proc/self/stat`).
    public var cpuSeconds: Double
    /// Resident set size, bytes (`rss` pages times the page size).
    public var residentMemoryBytes: Double
    /// Virtual memory size, bytes (`vsize`).
    public var virtualMemoryBytes: Double
    /// When the process started, Unix seconds (`starttime` ticks after boot, plus `btime`).
    public var startTimeSeconds: Double
    /// Open file descriptors (entries of `/proc/self/fd`).
    public var openFDs: Double
    /// The soft limit on open file descriptors (`Max open files` of `/proc/self/limits`);
    /// nil when unlimited (no sample then, as client_python).
    public var maxFDs: Double?

    public init(
        cpuSeconds: Double, residentMemoryBytes: Double, virtualMemoryBytes: Double, startTimeSeconds: Double,
        openFDs: Double, maxFDs: Double?
    ) {
        self.cpuSeconds = cpuSeconds
        self.residentMemoryBytes = residentMemoryBytes
        self.virtualMemoryBytes = virtualMemoryBytes
        self.startTimeSeconds = startTimeSeconds
        self.openFDs = openFDs
        self.maxFDs = maxFDs
    }

    /// This process's metrics now; nil when `/proc` cannot be read (then no family is
    /// written, as the client libraries do).
    public static func read() -> ProcessMetrics? {
        guard let bootTime = bootTime, let stat = try? SystemFile.readText("/proc/self/stat"),
            var metrics = parse(
                stat: stat, bootTime: bootTime, ticksPerSecond: Double(sysconf(Int32(_SC_CLK_TCK))),
                pageSize: Double(sysconf(Int32(_SC_PAGESIZE))))
        else { return nil }
        metrics.openFDs = Double(countOpenFDs() ?? 0)
        metrics.maxFDs = (try? SystemFile.readText("/proc/self/limits")).flatMap(parseMaxOpenFiles)
        return metrics
    }

    /// Parses `/proc/self/stat` (proc(5)). The command name, field 2, is in parentheses and
    /// may hold spaces and parentheses, so fields are counted from the last `)`: field N is
    /// at index N - 3 after it.
    static func parse(stat: String, bootTime: Double, ticksPerSecond: Double, pageSize: Double) -> ProcessMetrics? {
        guard let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ", omittingEmptySubsequences: true)
        func field(_ number: Int) -> Double? {
            let index = number - 3
            return fields.indices.contains(index) ? Double(fields[index]) : nil
        }
        guard let utime = field(14), let stime = field(15), let starttime = field(22), let vsize = field(23),
            let rss = field(24), ticksPerSecond > 0
        else { return nil }
        return ProcessMetrics(
            cpuSeconds: (utime + stime) / ticksPerSecond, residentMemoryBytes: rss * pageSize,
            virtualMemoryBytes: vsize, startTimeSeconds: bootTime + starttime / ticksPerSecond, openFDs: 0, maxFDs: nil)
    }

    /// The soft limit of the `Max open files` line of `/proc/self/limits`.
    static func parseMaxOpenFiles(_ limits: String) -> Double? {
        for line in limits.split(separator: "\n") where line.hasPrefix("Max open files") {
            let columns = line.split(separator: " ", omittingEmptySubsequences: true)
            return columns.count > 3 ? Double(columns[3]) : nil  // "unlimited" gives nil
        }
        return nil
    }

    /// `btime` of `/proc/stat`: boot time, Unix seconds. Fixed while the system runs.
    private static let bootTime: Double? = {
        guard let stat = try? SystemFile.readText("/proc/stat") else { return nil }
        for line in stat.split(separator: "\n") where line.hasPrefix("btime ") {
            return Double(line.dropFirst("btime ".count))
        }
        return nil
    }()

    /// Entries of `/proc/self/fd`, the directory's own descriptor included (as the client
    /// libraries count them).
    private static func countOpenFDs() -> Int? {
        // The listing's own descriptor is open meanwhile and counted, as the libraries do.
        SystemFile.entryNames(in: "/proc/self/fd")?.count
    }

    /// Writes the six families in `format`, HELP texts as client_golang's.
    public func write(format: MetricsEncoder.Format, into buffer: inout ByteBuffer) {
        let lines = FamilyWriter(format: format)
        func family(_ name: StaticString, _ help: StaticString, _ type: FamilyWriter.MetricType, _ value: Double?) {
            guard let value else { return }
            lines.family(name, help, type, value, into: &buffer)
        }
        family("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", .counter, cpuSeconds)
        family("process_open_fds", "Number of open file descriptors.", .gauge, openFDs)
        family("process_max_fds", "Maximum number of open file descriptors.", .gauge, maxFDs)
        family("process_virtual_memory_bytes", "Virtual memory size in bytes.", .gauge, virtualMemoryBytes)
        family("process_resident_memory_bytes", "Resident memory size in bytes.", .gauge, residentMemoryBytes)
        family(
            "process_start_time_seconds", "Start time of the process since unix epoch in seconds.", .gauge,
            startTimeSeconds)
    }
}
