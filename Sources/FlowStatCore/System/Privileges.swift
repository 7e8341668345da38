// SPDX-License-Identifier: Apache-2.0

import CFlowStat

#if canImport(Glibc)
import Glibc
#endif

/// Linux capabilities as bit sets, named as in `capabilities(7)`.
///
/// For logging what the agent holds and for checking a single capability; reads the
/// calling thread's sets (threads of one process normally agree: `Privileges.threadStates`
/// checks that they do).
public struct CapabilitySet: Sendable, Hashable, CustomStringConvertible {
    public var bits: UInt64

    public init(bits: UInt64) { self.bits = bits }

    /// Capabilities the calling thread may use now.
    public static func effective() -> CapabilitySet {
        var effective: UInt64 = 0
        var permitted: UInt64 = 0
        guard fs_capabilities(&effective, &permitted) == 0 else { return CapabilitySet(bits: 0) }
        return CapabilitySet(bits: effective)
    }

    public func contains(_ capability: Capability) -> Bool { bits & (1 << capability.rawValue) != 0 }

    /// `cap_bpf,cap_net_admin`, lowest bit first; `none` when empty, `all` for root's full set.
    public var description: String {
        let known = (UInt64(1) << UInt64(Capability.allCases.count)) - 1
        if bits & known == known { return "all" }
        let names = (0..<64).filter { bits & (1 << UInt64($0)) != 0 }.map { bit in
            Capability(rawValue: UInt64(bit)).map { "\($0)" } ?? "cap_\(bit)"
        }
        return names.isEmpty ? "none" : names.joined(separator: ",")
    }
}

/// The capabilities flowstat talks about by name (numbers from linux/capability.h).
public enum Capability: UInt64, Sendable, CaseIterable, CustomStringConvertible {
    case chown = 0
    case dacOverride, dacReadSearch, fowner, fsetid, kill, setgid, setuid, setpcap
    case linuxImmutable, netBindService, netBroadcast, netAdmin, netRaw, ipcLock, ipcOwner, sysModule
    case sysRawio, sysChroot, sysPtrace, sysPacct, sysAdmin, sysBoot, sysNice, sysResource, sysTime
    case sysTtyConfig, mknod, lease, auditWrite, auditControl, setfcap, macOverride, macAdmin, syslog
    case wakeAlarm, blockSuspend, auditRead, perfmon, bpf, checkpointRestore

    public var description: String {
        let names = [
            "cap_chown", "cap_dac_override", "cap_dac_read_search", "cap_fowner", "cap_fsetid", "cap_kill",
            "cap_setgid", "cap_setuid", "cap_setpcap", "cap_linux_immutable", "cap_net_bind_service",
            "cap_net_broadcast", "cap_net_admin", "cap_net_raw", "cap_ipc_lock", "cap_ipc_owner",
            "cap_sys_module", "cap_sys_rawio", "cap_sys_chroot", "cap_sys_ptrace", "cap_sys_pacct",
            "cap_sys_admin", "cap_sys_boot", "cap_sys_nice", "cap_sys_resource", "cap_sys_time",
            "cap_sys_tty_config", "cap_mknod", "cap_lease", "cap_audit_write", "cap_audit_control",
            "cap_setfcap", "cap_mac_override", "cap_mac_admin", "cap_syslog", "cap_wake_alarm",
            "cap_block_suspend", "cap_audit_read", "cap_perfmon", "cap_bpf", "cap_checkpoint_restore",
        ]
        return names[Int(rawValue)]
    }
}

/// Switching a running agent from root to an unprivileged user, and checking the result.
///
/// Use once, after everything that needs privileges is open (BPF programs attached, maps
/// open, the listening socket bound). Not for processes that must regain privileges later:
/// the switch is irreversible and keeps no capability (see privileges.c for why none).
public enum Privileges {
    /// What a switch failed at.
    public struct DropError: Error, CustomStringConvertible, Sendable {
        /// The call or check that failed, e.g. `setresuid`, `thread 1234 still has uid 0`.
        public var step: String
        public var message: String
        public var description: String { "\(step): \(message)" }
    }

    /// uid, gid and capabilities of one thread, from /proc/self/task/TID/status.
    public struct ThreadState: Sendable, Hashable {
        public var tid: Int32
        /// Real, effective, saved and filesystem ids, as the kernel lists them.
        public var uids: [UInt32]
        public var gids: [UInt32]
        public var effective: CapabilitySet
        public var permitted: CapabilitySet
        public var ambient: CapabilitySet
        /// Whether execve can no longer grant this thread privileges.
        public var noNewPrivileges: Bool
    }

    /// Sets every thread's supplementary groups to `gid` alone, all its gids to `gid` and
    /// all its uids to `uid`, which clears every capability, and sets no_new_privs on every
    /// thread; then checks every thread of the process in /proc: a thread that kept root, a
    /// capability or the means to gain one through execve fails the switch.
    public static func drop(toUID uid: UInt32, gid: UInt32) throws(DropError) {
        var error = fs_error()
        guard fs_drop_privileges(uid, gid, &error) == 0 else {
            let shim = ShimError(error)
            throw DropError(step: shim.step, message: String(cString: strerror(shim.errno)))
        }
        let threads = threadStates()
        guard !threads.isEmpty else {
            throw DropError(step: "check every thread", message: "/proc/self/task cannot be read")
        }
        for thread in threads {
            guard thread.uids.allSatisfy({ $0 == uid }), thread.gids.allSatisfy({ $0 == gid }) else {
                throw DropError(
                    step: "check thread \(thread.tid)",
                    message: "it still has uids \(thread.uids), gids \(thread.gids)")
            }
            let held = CapabilitySet(bits: thread.effective.bits | thread.permitted.bits | thread.ambient.bits)
            guard held.bits == 0 else {
                throw DropError(step: "check thread \(thread.tid)", message: "it still holds \(held)")
            }
            guard thread.noNewPrivileges else {
                throw DropError(step: "check thread \(thread.tid)", message: "its no_new_privs flag is not set")
            }
        }
    }

    /// Every thread of this process as the kernel sees it now.
    public static func threadStates() -> [ThreadState] {
        guard let directory = opendir("/proc/self/task") else { return [] }
        defer { closedir(directory) }
        var states: [ThreadState] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) {
                String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self)
            }
            guard let tid = Int32(name), let status = try? SystemFile.readText("/proc/self/task/\(name)/status") else {
                continue
            }
            states.append(parseStatus(status, tid: tid))
        }
        return states
    }

    /// The Uid, Gid and Cap* lines of a /proc status file.
    static func parseStatus(_ text: String, tid: Int32) -> ThreadState {
        var state = ThreadState(
            tid: tid, uids: [], gids: [], effective: CapabilitySet(bits: 0),
            permitted: CapabilitySet(bits: 0), ambient: CapabilitySet(bits: 0), noNewPrivileges: false)
        for line in text.split(separator: "\n") {
            let parts = line.split(whereSeparator: { $0 == ":" || $0 == "\t" || $0 == " " })
            guard let key = parts.first else { continue }
            let values = parts.dropFirst()
            switch key {
            case "Uid": state.uids = values.compactMap { UInt32($0) }
            case "Gid": state.gids = values.compactMap { UInt32($0) }
            case "CapEff": state.effective = CapabilitySet(bits: values.first.flatMap { UInt64($0, radix: 16) } ?? 0)
            case "CapPrm": state.permitted = CapabilitySet(bits: values.first.flatMap { UInt64($0, radix: 16) } ?? 0)
            case "CapAmb": state.ambient = CapabilitySet(bits: values.first.flatMap { UInt64($0, radix: 16) } ?? 0)
            case "NoNewPrivs": state.noNewPrivileges = values.first == "1"
            default: break
            }
        }
        return state
    }
}
