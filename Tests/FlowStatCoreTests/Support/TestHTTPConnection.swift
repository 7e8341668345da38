// SPDX-License-Identifier: Apache-2.0

import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// A blocking HTTP/1.1 client on a plain POSIX socket, for driving the server in tests.
///
/// Deliberately minimal and byte-level: tests need to send exactly the bytes they choose
/// (pipelined requests, HTTP/1.0, oversized heads) and see exactly what came back, which
/// URLSession on Linux neither allows nor reliably reports. Every read times out (after ten
/// seconds unless told otherwise) so a server bug fails the test instead of hanging it.
final class TestHTTPConnection {
    private let fd: Int32
    private var pending: [UInt8] = []

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// - Parameters:
    ///   - receiveBuffer: a small kernel receive buffer, for a client that reads slowly.
    ///   - readTimeout: seconds a read may wait for data before it fails.
    init(port: Int, host: String = "127.0.0.1", receiveBuffer: Int32? = nil, readTimeout: Int = 10) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Failure(description: "socket: errno \(errno)") }
        var timeout = timeval(tv_sec: readTimeout, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        if var size = receiveBuffer {
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        }

        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        inet_pton(AF_INET, host, &address.sin_addr)
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard result == 0 else {
            let code = errno
            close(fd)
            throw Failure(description: "connect to \(host):\(port): errno \(code)")
        }
    }

    deinit {
        close(fd)
    }

    /// Sends raw bytes (one or more requests).
    func send(_ text: String) throws {
        var bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeMutableBytes { raw in
                Glibc.send(fd, raw.baseAddress! + offset, raw.count - offset, Int32(MSG_NOSIGNAL))
            }
            guard written > 0 else { throw Failure(description: "send: errno \(errno)") }
            offset += written
        }
    }

    /// Sends a request with a `Host` header and the given extra header lines.
    func sendRequest(_ method: String, _ path: String, version: String = "HTTP/1.1", headers: [String] = []) throws {
        var request = "\(method) \(path) \(version)\r\nHost: localhost\r\n"
        for header in headers { request += header + "\r\n" }
        try send(request + "\r\n")
    }

    /// Reads one response. A response to HEAD has a Content-Length but no body, so the
    /// caller says whether to read one.
    func readResponse(hasBody: Bool = true) throws -> TestHTTPResponse {
        let headEnd = try readUntilHeadEnd()
        let headText = String(decoding: pending[..<headEnd], as: UTF8.self)
        pending.removeFirst(headEnd + 4)

        var lines = headText.components(separatedBy: "\r\n")
        let statusLine = lines.removeFirst().split(separator: " ", maxSplits: 2)
        guard statusLine.count >= 2, let status = Int(statusLine[1]) else {
            throw Failure(description: "bad status line in \(headText)")
        }
        let headers = lines.map { line -> (String, String) in
            let parts = line.split(separator: ":", maxSplits: 1)
            return (String(parts[0]), parts.count > 1 ? parts[1].trimmingCharacters(in: .whitespaces) : "")
        }
        var response = TestHTTPResponse(status: status, version: String(statusLine[0]), headers: headers, body: [])
        if hasBody, response.header("Transfer-Encoding")?.lowercased() == "chunked" {
            response.body = try readChunkedBody()
            response.chunks = chunksRead
        } else if hasBody {
            let length = Int(response.header("Content-Length") ?? "") ?? 0
            try fill(atLeast: length)
            response.body = Array(pending[..<length])
            pending.removeFirst(length)
        }
        return response
    }

    /// Chunks of the last chunked body read.
    private var chunksRead = 0

    /// A chunked body (RFC 9112, 7.1): hex size lines, each chunk followed by CRLF, a
    /// zero-size chunk, no trailers expected (an empty line ends them).
    private func readChunkedBody() throws -> [UInt8] {
        var body: [UInt8] = []
        chunksRead = 0
        while true {
            let line = try readLine()
            let sizeText = line.split(separator: ";", maxSplits: 1).first.map(String.init) ?? ""
            guard let size = Int(sizeText.trimmingCharacters(in: .whitespaces), radix: 16), size >= 0 else {
                throw Failure(description: "bad chunk size line \"\(line)\"")
            }
            if size == 0 {
                while try !readLine().isEmpty {}  // trailer fields, then the empty line
                return body
            }
            try fill(atLeast: size + 2)
            body.append(contentsOf: pending[..<size])
            guard pending[size] == 13, pending[size + 1] == 10 else {
                throw Failure(description: "chunk of \(size) bytes not followed by CRLF")
            }
            pending.removeFirst(size + 2)
            chunksRead += 1
        }
    }

    /// One CRLF-terminated line, without the CRLF.
    private func readLine() throws -> String {
        while true {
            if let index = pending.indices.dropLast().first(where: { pending[$0] == 13 && pending[$0 + 1] == 10 }) {
                let line = String(decoding: pending[..<index], as: UTF8.self)
                pending.removeFirst(index + 2)
                return line
            }
            guard try receive() > 0 else { throw Failure(description: "connection closed inside a chunked body") }
        }
    }

    /// Reads a response head only, leaving the body unread.
    func readHead() throws -> TestHTTPResponse {
        try readResponse(hasBody: false)
    }

    /// Reads until the server closes (or resets) the connection; returns the bytes read.
    func drain() throws -> Int {
        var total = pending.count
        pending.removeAll()
        while true {
            let received = try? receive()
            guard let received, received > 0 else { return total }
            total += received
            pending.removeAll()
        }
    }

    /// Whether bytes (or the end of stream) arrive within `milliseconds`.
    func hasData(within milliseconds: Int32) throws -> Bool {
        if !pending.isEmpty { return true }
        var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let ready = poll(&descriptor, 1, milliseconds)
        guard ready >= 0 else { throw Failure(description: "poll: errno \(errno)") }
        return ready > 0
    }

    /// Whether the server has closed the connection (reads end of stream, with nothing
    /// unread before it).
    func isClosedByServer() throws -> Bool {
        guard pending.isEmpty else { return false }
        return try receive() == 0
    }

    /// Bytes received but not consumed by `readResponse`.
    var unreadBytes: Int { pending.count }

    private func readUntilHeadEnd() throws -> Int {
        let separator: [UInt8] = [13, 10, 13, 10]
        var searchFrom = 0
        while true {
            if pending.count >= 4 {
                for index in searchFrom...(pending.count - 4) where pending[index..<index + 4].elementsEqual(separator)
                {
                    return index
                }
                searchFrom = pending.count - 3
            }
            guard try receive() > 0 else { throw Failure(description: "connection closed before a response head") }
        }
    }

    private func fill(atLeast count: Int) throws {
        while pending.count < count {
            guard try receive() > 0 else { throw Failure(description: "connection closed inside a response body") }
        }
    }

    /// Appends what one recv returns to `pending`; returns the count, 0 at end of stream.
    private func receive() throws -> Int {
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        let received = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        guard received >= 0 else { throw Failure(description: "recv: errno \(errno) (timeout?)") }
        pending.append(contentsOf: chunk[..<received])
        return received
    }
}

/// One parsed response.
struct TestHTTPResponse {
    var status: Int
    var version: String
    var headers: [(String, String)]
    var body: [UInt8]
    /// Chunks of a chunked body (0 when it had a Content-Length).
    var chunks = 0

    /// The first header with this name, compared case-insensitively.
    func header(_ name: String) -> String? {
        headers.first { $0.0.lowercased() == name.lowercased() }?.1
    }

    var text: String { String(decoding: body, as: UTF8.self) }
}

extension TestHTTPConnection {
    /// Opens a connection, sends one request with `Connection: close`, reads the response.
    static func request(_ method: String, _ path: String, port: Int) throws -> TestHTTPResponse {
        let connection = try TestHTTPConnection(port: port)
        try connection.sendRequest(method, path, headers: ["Connection: close"])
        return try connection.readResponse(hasBody: method != "HEAD")
    }
}
