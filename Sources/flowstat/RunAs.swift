// SPDX-License-Identifier: Apache-2.0

import FlowStatCore
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// `--run-as USER[:GROUP]`: the unprivileged account `serve` switches to once the flow
/// source is open and the listener bound. Resolved before anything is opened, so a typo
/// fails start-up before BPF programs load.
struct RunAsUser {
    var userName: String
    var uid: UInt32
    var groupName: String
    var gid: UInt32

    /// Parses `USER`, `USER:GROUP`, or numeric ids, and looks them up in the user database.
    /// Without a group, the user's primary group.
    init(parsing text: String) throws {
        let parts = text.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
        guard let user = parts.first, !user.isEmpty, parts.count == 1 || !parts[1].isEmpty else {
            throw StartupError(
                problem: "--run-as \"\(text)\" names no user",
                fix: "write --run-as USER or USER:GROUP, e.g. --run-as nobody:nogroup")
        }
        guard let account = Self.lookUpUser(user) else {
            throw StartupError(
                problem: "--run-as: no user \"\(user)\" on this host",
                fix: "create it (useradd --system --no-create-home flowstat) or name an existing one")
        }
        (userName, uid) = (account.name, account.uid)
        if parts.count == 2 {
            guard let group = Self.lookUpGroup(parts[1]) else {
                throw StartupError(
                    problem: "--run-as: no group \"\(parts[1])\" on this host",
                    fix: "create it (groupadd --system \(parts[1])) or name an existing one")
            }
            (groupName, gid) = group
        } else {
            gid = account.gid
            groupName = Self.groupName(of: account.gid) ?? String(account.gid)
        }
        guard uid != 0 else {
            throw StartupError(
                problem: "--run-as \(text) is root (uid 0): nothing would be dropped",
                fix: "name an unprivileged user, e.g. --run-as nobody")
        }
    }

    /// Checks, before anything is opened, that this process can switch users at all.
    func checkCanSwitch() throws {
        guard geteuid() == 0 else {
            throw StartupError(
                problem: "--run-as \(userName) needs the agent to start as root (it runs as uid \(geteuid()))",
                fix: "start it as root, or drop --run-as and start it as \(userName) with CAP_BPF, CAP_PERFMON and "
                    + "CAP_NET_ADMIN (see the README's capability table)")
        }
    }

    /// Switches every thread to this user and group, keeping no capability, then checks
    /// that the flow source can still be read. Logs what was dropped.
    func switchTo(source: any FlowSource, logger: Logger) throws {
        let before = CapabilitySet.effective()
        do {
            try Privileges.drop(toUID: uid, gid: gid)
        } catch {
            throw StartupError(
                problem: "--run-as \(userName): switching users failed at \(error)",
                fix: "check that the agent starts as root without seccomp or LSM rules against setuid")
        }
        if let bpf = source as? BPFFlowSource {
            do {
                try bpf.checkReadable()
            } catch {
                throw StartupError(
                    problem: "as \(userName) the BPF maps cannot be read: \(error)",
                    fix: "this kernel needs CAP_BPF for every bpf() call (Linux before 6.5 with "
                        + "kernel.unprivileged_bpf_disabled set): run without --run-as, with capabilities")
            }
        }
        // What the lost capabilities cost is said by whoever meets it, once (the refresh of
        // other namespaces where it must enter them, /proc lookups of other users' processes).
        logger.info(
            "now running as \(userName):\(groupName) (uid \(uid), gid \(gid)) on every thread",
            metadata: ["capabilities_dropped": "\(before)", "capabilities_kept": "none"])
    }

    private static func lookUpUser(_ name: String) -> (name: String, uid: UInt32, gid: UInt32)? {
        var entry = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 16_384)
        if let number = UInt32(name) {
            guard getpwuid_r(number, &entry, &buffer, buffer.count, &result) == 0, result != nil else {
                return (name, number, number)  // a bare id without an entry, as setpriv allows
            }
        } else {
            guard getpwnam_r(name, &entry, &buffer, buffer.count, &result) == 0, result != nil else { return nil }
        }
        return (String(cString: entry.pw_name), entry.pw_uid, entry.pw_gid)
    }

    private static func lookUpGroup(_ name: String) -> (name: String, gid: UInt32)? {
        if let number = UInt32(name) { return (groupName(of: number) ?? name, number) }
        var entry = group()
        var result: UnsafeMutablePointer<group>?
        var buffer = [CChar](repeating: 0, count: 16_384)
        guard getgrnam_r(name, &entry, &buffer, buffer.count, &result) == 0, result != nil else { return nil }
        return (String(cString: entry.gr_name), entry.gr_gid)
    }

    private static func groupName(of gid: UInt32) -> String? {
        var entry = group()
        var result: UnsafeMutablePointer<group>?
        var buffer = [CChar](repeating: 0, count: 16_384)
        guard getgrgid_r(gid, &entry, &buffer, buffer.count, &result) == 0, result != nil else { return nil }
        return String(cString: entry.gr_name)
    }
}
