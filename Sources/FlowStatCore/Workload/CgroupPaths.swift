// SPDX-License-Identifier: Apache-2.0

#if canImport(Glibc)
import Glibc
#endif

/// Turns the cgroup ids the kernel records for flows into cgroup v2 paths
/// (`/kubepods.slice/…/cri-containerd-<id>.scope`), by walking the cgroup2 mount.
///
/// A cgroup v2 id is its kernfs node id, which is the inode number of the cgroup's directory
/// (on 64-bit kernels; what `bpf_get_current_cgroup_id()` and `stat` both give), so one walk of
/// the hierarchy maps every id to its path without a system call per cgroup: `readdir` gives
/// the inode. The map is kept between lookups and the walk repeated only when an id it lacks
/// appears (a new container), at most once per `minimumWalkInterval`, so an id whose cgroup is
/// gone does not cost a walk per scrape. At most `capacity` cgroups are kept (a walk stops
/// there): a host with more resolves the ones found first and leaves the rest unknown.
/// Not thread-safe: its owner locks.
struct CgroupPaths {
    /// Where cgroup2 is mounted; nil when it is not (then nothing resolves).
    let mountPoint: String?
    var capacity = 65_536
    var minimumWalkInterval: UInt64 = 1_000_000_000
    private(set) var paths: [UInt64: String] = [:]
    private(set) var walks = 0
    private var lastWalk: UInt64?

    init(mountPoint: String? = CgroupPaths.cgroup2MountPoint()) {
        self.mountPoint = mountPoint
    }

    /// The path of cgroup `id` (`/` for the root), or nil when the hierarchy has no such
    /// cgroup now (or it is past `capacity`).
    mutating func path(of id: UInt64, now: UInt64 = SystemClock.monotonicNanoseconds()) -> String? {
        if let path = paths[id] { return path }
        guard id != 0, mountPoint != nil else { return nil }
        if let lastWalk, now &- lastWalk < minimumWalkInterval { return nil }
        walk(now: now)
        return paths[id]
    }

    /// Rebuilds the map from the hierarchy as it is now (cgroups removed since leave it).
    mutating func walk(now: UInt64 = SystemClock.monotonicNanoseconds()) {
        lastWalk = now
        walks += 1
        guard let mountPoint else { return }
        var found: [UInt64: String] = [:]
        var rootStat = stat()
        if stat(mountPoint, &rootStat) == 0 { found[UInt64(rootStat.st_ino)] = "/" }
        var pending: [String] = [""]
        while let relative = pending.popLast(), found.count < capacity {
            SystemFile.forEachEntry(in: mountPoint + relative) { name, type, inode, _ in
                guard found.count < capacity else { return false }
                guard type == UInt8(DT_DIR) else { return true }
                let child = relative + "/" + String(cString: name)
                found[inode] = child
                pending.append(child)
                return true
            }
        }
        paths = found
    }

    /// The first cgroup2 mount in /proc/mounts (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified`
    /// on hybrid hosts); nil when there is none.
    static func cgroup2MountPoint(mounts: String? = try? SystemFile.readText("/proc/self/mounts")) -> String? {
        for line in (mounts ?? "").split(separator: "\n") {
            let fields = line.split(separator: " ")
            if fields.count >= 3, fields[2] == "cgroup2" { return unescapeMountPath(fields[1]) }
        }
        return nil
    }

    /// /proc/mounts writes space, tab, newline and backslash as octal escapes (`\040`).
    static func unescapeMountPath(_ field: Substring) -> String {
        var bytes: [UInt8] = []
        var utf8 = Array(field.utf8)[...]
        while let byte = utf8.popFirst() {
            if byte == UInt8(ascii: "\\"), utf8.count >= 3,
                let value = UInt8(String(decoding: utf8.prefix(3), as: UTF8.self), radix: 8)
            {
                bytes.append(value)
                utf8 = utf8.dropFirst(3)
            } else {
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
