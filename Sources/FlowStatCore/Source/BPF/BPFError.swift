// SPDX-License-Identifier: Apache-2.0

#if canImport(Glibc)
import Glibc
#endif

/// A step of starting or reading the BPF programs failed.
///
/// Carries the kernel's errno and the step, as the C shim reports them, and knows the usual
/// fix for the common causes so that start-up failures tell the operator what to do.
public struct BPFError: Error, CustomStringConvertible, Sendable {
    /// What flowstat was doing, e.g. "attach sockops to cgroup /sys/fs/cgroup/unified".
    public var step: String
    /// The errno (positive), e.g. `EPERM`.
    public var errno: Int32
    /// strerror and the tail of libbpf's log.
    public var message: String

    public init(step: String, errno: Int32, message: String) {
        self.step = step
        self.errno = errno
        self.message = message
    }

    /// How to fix it, where the cause is a usual one; settings are named by their config
    /// keys (the command line spells them as flags).
    public var hint: String? {
        if step == Self.modeStep {
            return "this kernel refuses every snapshot mode flowstat.bpf.mode names; set flowstat.bpf.mode to auto, "
                + "which runs the best the kernel allows (README: kernel support)"
        }
        switch errno {
        case EPERM, EACCES:
            return "run flowstat as root, or grant it CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN "
                + "(systemd: AmbientCapabilities=); flowstat.source inet_diag works without them"
        case ENOENT where step.contains("cgroup"):
            return "mount cgroup v2 (mount -t cgroup2 none /sys/fs/cgroup) or set flowstat.bpf.cgroupPath"
        case ENOENT where message.contains("BTF"), ESRCH where message.contains("BTF"),
            EINVAL where message.contains("BTF"):
            return "the kernel needs BTF (CONFIG_DEBUG_INFO_BTF=y, /sys/kernel/btf/vmlinux); "
                + "use flowstat.source inet_diag on this host"
        case ENOSYS, EOPNOTSUPP:
            return "this kernel lacks a BPF feature flowstat needs (Linux 5.8 or newer); use flowstat.source inet_diag"
        default:
            return nil
        }
    }

    /// The shim's step when no snapshot mode the options allow can run.
    static let modeStep = "start a snapshot mode the options allow"

    public var description: String {
        var text = "\(step) failed: \(message)"
        if let hint { text += ". Fix: \(hint)" }
        return text
    }
}
