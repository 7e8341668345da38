// SPDX-License-Identifier: Apache-2.0

import CFlowStat
import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// gzip for response bodies held whole, through libdeflate in the C seam (see
/// `http_support.c` for why not NIOExtras' compressor or zlib; `GzipStream` below for
/// streamed ones). Blocks for a long time on big bodies: call it from the thread pool,
/// never from an event loop.
enum Gzip {
    /// Level 1: several times faster than level 6 on an exposition, for output about a
    /// third larger (README, "Compression", has the figures).
    static let level: Int32 = 1

    /// The body as one gzip member.
    static func compress(_ body: ByteBuffer) -> ByteBuffer {
        let length = body.readableBytes
        // Expositions shrink five- to sevenfold; a quarter of the input rarely overflows, and
        // when it does the second pass has room for anything.
        let first = length < 1 << 20 ? fs_gzip_bound(length) : length / 4
        if let compressed = compress(body, capacity: first) { return compressed }
        guard let compressed = compress(body, capacity: fs_gzip_bound(length)) else {
            preconditionFailure("libdeflate failed with room for the worst case")
        }
        return compressed
    }

    private static func compress(_ body: ByteBuffer, capacity: Int) -> ByteBuffer? {
        var output = ByteBufferAllocator().buffer(capacity: capacity)
        var failed = false
        _ = body.withUnsafeReadableBytes { input in
            output.writeWithUnsafeMutableBytes(minimumWritableBytes: capacity) { destination in
                var written = 0
                let rc = fs_gzip(
                    input.baseAddress?.assumingMemoryBound(to: UInt8.self), input.count,
                    destination.baseAddress!.assumingMemoryBound(to: UInt8.self), destination.count, &written, level)
                if rc == -ENOBUFS {
                    failed = true
                    return 0
                }
                precondition(rc == 0, "fs_gzip failed: \(rc)")
                return written
            }
        }
        return failed ? nil : output
    }
}

/// One gzip member compressed piece by piece as a streamed response is encoded (zlib's
/// deflate through the C seam: libdeflate compresses whole buffers only). Level 1, as
/// `Gzip`. Not thread-safe; one per response.
final class GzipStream {
    private let stream: OpaquePointer
    private var output = ByteBufferAllocator().buffer(capacity: 0)
    private let pieceBytes: Int

    /// nil when zlib cannot allocate its state.
    init?(level: Int32 = 1, pieceBytes: Int = 64 << 10) {
        guard let stream = fs_gzip_stream_new(level) else { return nil }
        self.stream = stream
        self.pieceBytes = pieceBytes
    }

    deinit {
        fs_gzip_stream_free(stream)
    }

    /// Compresses `input` (with `finish`, and ends the member), handing each full piece of
    /// output to `send`; with `finish`, the last piece too. `send` may keep what it gets.
    func compress(_ input: ByteBuffer, finish: Bool, send: (ByteBuffer) -> Void) {
        input.withUnsafeReadableBytes { bytes in
            var offset = 0
            while true {
                if output.writableBytes == 0 {
                    // Full (the last call filled it exactly): it is a piece.
                    if output.readableBytes > 0 { send(output) }
                    output = ByteBufferAllocator().buffer(capacity: pieceBytes)
                }
                var consumed = 0
                var rc: Int32 = 0
                output.writeWithUnsafeMutableBytes(minimumWritableBytes: 1) { destination in
                    var written = 0
                    rc = fs_gzip_stream_write(
                        stream, bytes.baseAddress.map { $0.assumingMemoryBound(to: UInt8.self) + offset },
                        bytes.count - offset, finish ? 1 : 0,
                        destination.baseAddress!.assumingMemoryBound(to: UInt8.self), destination.count, &consumed,
                        &written)
                    return written
                }
                offset += consumed
                precondition(rc == 0 || rc == -ENOBUFS, "fs_gzip_stream_write failed: \(rc)")
                if rc == -ENOBUFS {
                    send(output)
                    output = ByteBufferAllocator().buffer(capacity: pieceBytes)
                    continue
                }
                break
            }
        }
        if finish, output.readableBytes > 0 {
            send(output)
            output = ByteBufferAllocator().buffer(capacity: 0)
        }
    }
}
