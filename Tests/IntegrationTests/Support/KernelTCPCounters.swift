// SPDX-License-Identifier: Apache-2.0

import Foundation

/// The kernel's own TCP counters (`/proc/net/snmp`, one set per network namespace): the
/// oracle for host-wide flow counts. flowstat counts opens and closes across the host; a test
/// owns only its namespaces' flows, so it checks its own exactly and bounds everyone else's
/// traffic by what the kernel counted in the other namespaces over the same window.
struct KernelTCPCounters {
    var activeOpens = 0.0, passiveOpens = 0.0, currentlyEstablished = 0.0

    /// The counters of each network namespace on the host, by namespace inode: every process's
    /// (`/proc/PID/net/snmp` is its namespace's) and every `ip netns` one.
    static func byNamespace() throws -> [UInt64: KernelTCPCounters] {
        var result: [UInt64: KernelTCPCounters] = [:]
        let fileManager = FileManager.default
        for name in (try? fileManager.contentsOfDirectory(atPath: "/run/netns")) ?? [] {
            guard let inode = inode("/run/netns/\(name)"), result[inode] == nil else { continue }
            let text = try run(["ip", "netns", "exec", name, "cat", "/proc/net/snmp"], check: false).stdout
            if let counters = parse(text) { result[inode] = counters }
        }
        for name in try fileManager.contentsOfDirectory(atPath: "/proc") where name.allSatisfy(\.isNumber) {
            guard let inode = inode("/proc/\(name)/ns/net"), result[inode] == nil,
                let text = try? String(contentsOfFile: "/proc/\(name)/net/snmp", encoding: .utf8),
                let counters = parse(text)
            else { continue }
            result[inode] = counters
        }
        return result
    }

    static func inode(_ path: String) -> UInt64? {
        var status = stat()
        return stat(path, &status) == 0 ? UInt64(status.st_ino) : nil
    }

    /// The `Tcp:` header and value lines of /proc/net/snmp.
    static func parse(_ text: String) -> KernelTCPCounters? {
        let lines = text.split(separator: "\n").filter { $0.hasPrefix("Tcp:") }
        guard lines.count == 2 else { return nil }
        let fields = Dictionary(
            zip(lines[0].split(separator: " "), lines[1].split(separator: " ").map { Double($0) ?? 0 }),
            uniquingKeysWith: { first, _ in first })
        return KernelTCPCounters(
            activeOpens: fields["ActiveOpens"] ?? 0, passiveOpens: fields["PassiveOpens"] ?? 0,
            currentlyEstablished: fields["CurrEstab"] ?? 0)
    }

    /// What other namespaces (not `excluded`) did between two readings: connects and accepts
    /// started (every flow established there is one of them), and the most flows that can have
    /// closed (those established at the start plus those opened since).
    static func others(
        before: [UInt64: KernelTCPCounters], after: [UInt64: KernelTCPCounters],
        excluding excluded: Set<UInt64>
    ) -> (active: Double, passive: Double, closes: Double) {
        var active = 0.0
        var passive = 0.0
        var established = 0.0
        for (inode, end) in after where !excluded.contains(inode) {
            let start = before[inode] ?? KernelTCPCounters()  // a namespace made since: all of it is new
            active += end.activeOpens - start.activeOpens
            passive += end.passiveOpens - start.passiveOpens
            established += start.currentlyEstablished
        }
        return (active, passive, established + active + passive)
    }
}
