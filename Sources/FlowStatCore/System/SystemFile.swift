// SPDX-License-Identifier: Apache-2.0

#if canImport(Glibc)
import Glibc
#endif

/// Whole-file reads of configuration, certificates and `/proc` entries: the one place the
/// library opens a file by path (the agent has no Foundation). `/proc` files report size 0,
/// so files are read in chunks until end of file.
enum SystemFile {
    /// The file's bytes; at most `limit` of them, else `EFBIG`.
    static func read(_ path: String, limit: Int = 64 << 20) throws(SystemCallError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SystemCallError(function: "open", errno: errno) }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let count = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                throw SystemCallError(function: "read", errno: errno)
            }
            if count == 0 { return bytes }
            bytes.append(contentsOf: chunk[0..<count])
            guard bytes.count <= limit else { throw SystemCallError(function: "read", errno: EFBIG) }
        }
    }

    /// Calls `body` for each entry of the directory at `path` but "." and "..", with the
    /// entry's name (valid only during the call: no `String` per entry, for `/proc` walks
    /// over every process), its `d_type` and inode, and the directory's descriptor (for `*at`
    /// calls). `body` returns false to stop early.
    /// Returns false when the directory cannot be opened.
    @discardableResult
    static func forEachEntry(
        in path: String,
        _ body: (_ name: UnsafePointer<CChar>, _ type: UInt8, _ inode: UInt64, _ directory: Int32) -> Bool
    ) -> Bool {
        guard let handle = opendir(path) else { return false }
        defer { closedir(handle) }
        let directory = dirfd(handle)
        while let entry = readdir(handle) {
            let goOn = withUnsafePointer(to: entry.pointee.d_name) { tuple in
                tuple.withMemoryRebound(to: CChar.self, capacity: 256) { name in
                    let isDot = name[0] == 0x2E && (name[1] == 0 || (name[1] == 0x2E && name[2] == 0))
                    return isDot || body(name, entry.pointee.d_type, UInt64(entry.pointee.d_ino), directory)
                }
            }
            if !goOn { break }
        }
        return true
    }

    /// The names in the directory at `path` but "." and ".."; nil when it cannot be opened.
    static func entryNames(in path: String) -> [String]? {
        var names: [String] = []
        let opened = forEachEntry(in: path) { name, _, _, _ in
            names.append(String(cString: name))
            return true
        }
        return opened ? names : nil
    }

    /// The file as UTF-8 text (invalid bytes replaced).
    static func readText(_ path: String, limit: Int = 64 << 20) throws(SystemCallError) -> String {
        String(decoding: try read(path, limit: limit), as: UTF8.self)
    }
}

/// A failed system call, with its errno.
struct SystemCallError: Error, CustomStringConvertible {
    var function: String
    var errno: Int32
    /// strerror's text alone, for messages that name the file themselves.
    var reason: String { String(cString: strerror(errno)) }
    var message: String { "\(function): \(reason)" }
    var description: String { message }
}

/// The clocks the agent reads.
public enum SystemClock {
    /// CLOCK_MONOTONIC in nanoseconds: the clock `bpf_ktime_get_ns()` uses, and the one for
    /// durations and ages.
    public static func monotonicNanoseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) &* 1_000_000_000 &+ UInt64(now.tv_nsec)
    }

    /// Unix time in seconds, for timestamps operators read.
    public static func unixSeconds() -> Double {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
    }
}
