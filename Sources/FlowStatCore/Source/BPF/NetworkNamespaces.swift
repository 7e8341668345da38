// SPDX-License-Identifier: Apache-2.0

#if canImport(Glibc)
import Glibc
#endif

/// Finds a path that opens a given network namespace, by its inode number.
///
/// The BPF flow map names each flow's namespace by inode; entering that namespace (to run
/// the TCP iterator there) needs an open file. Paths are cached, never file descriptors:
/// an open descriptor would keep a container's namespace alive after the container is gone.
/// Not thread-safe: its owner serializes calls.
struct NetworkNamespaces {
    /// The namespace this process runs in.
    let own: UInt32
    private var paths: [UInt32: String] = [:]
    private var lastScan: UInt64 = 0
    /// A miss rescans /proc at most this often, so a namespace without processes (or one
    /// that vanished) does not make every scrape walk /proc.
    private let rescanInterval: UInt64 = 5_000_000_000

    init() {
        own = NetworkNamespaces.inode(of: "/proc/self/ns/net") ?? 0
    }

    /// Opens the namespace read-only, or returns nil if no known path leads to it. `fresh`:
    /// the kernel just reported the namespace (it is new, not a vanished one), worth a rescan now.
    mutating func open(_ inode: UInt32, fresh: Bool = false) -> Int32? {
        if let fd = openChecked(inode) { return fd }
        let now = SystemClock.monotonicNanoseconds()
        guard fresh || now &- lastScan >= rescanInterval || lastScan == 0 else { return nil }
        lastScan = now
        scan()
        return openChecked(inode)
    }

    /// Every namespace other than our own that a path was found for (rescans /proc).
    mutating func all() -> [UInt32] {
        lastScan = SystemClock.monotonicNanoseconds()
        scan()
        return Array(paths.keys)
    }

    /// Opens the cached path and checks it still is that namespace: PIDs are reused.
    private mutating func openChecked(_ inode: UInt32) -> Int32? {
        guard let path = paths[inode] else { return nil }
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        var status = stat()
        if fd >= 0, fstat(fd, &status) == 0, UInt32(truncatingIfNeeded: status.st_ino) == inode {
            return fd
        }
        if fd >= 0 { close(fd) }
        paths[inode] = nil
        return nil
    }

    /// Records one path per namespace: bind mounts made by `ip netns add`, then processes.
    private mutating func scan() {
        paths.removeAll(keepingCapacity: true)
        for name in NetworkNamespaces.entries(of: "/run/netns") {
            record("/run/netns/\(name)")
        }
        for name in NetworkNamespaces.entries(of: "/proc") where name.first?.isNumber == true {
            record("/proc/\(name)/ns/net")
        }
    }

    private mutating func record(_ path: String) {
        if let inode = NetworkNamespaces.inode(of: path), inode != own, paths[inode] == nil {
            paths[inode] = path
        }
    }

    private static func inode(of path: String) -> UInt32? {
        var status = stat()
        guard stat(path, &status) == 0 else { return nil }
        return UInt32(truncatingIfNeeded: status.st_ino)
    }

    private static func entries(of directory: String) -> [String] {
        guard let handle = opendir(directory) else { return [] }
        defer { closedir(handle) }
        var names: [String] = []
        while let entry = readdir(handle) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }
}
