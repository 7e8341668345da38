// SPDX-License-Identifier: Apache-2.0

import Foundation
import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP1
import NIOPosix
import Testing

@testable import FlowStatCore

/// Bounded randomized testing of the request path: random and mutated byte strings go
/// through the server's own pipeline (deadlines, NIO's HTTP/1 codec, the request handler,
/// a real thread pool and pipeline; basic auth on every other input), and every output must
/// be well-formed responses, with the connection closed once every deadline has passed.
///
/// `make test` runs 2,000 inputs from a fixed seed. For a longer run:
/// `FLOWSTAT_HTTP_FUZZ_ITERATIONS=200000 FLOWSTAT_HTTP_FUZZ_SEED=$RANDOM swift test --filter HTTPFuzzTests`.
/// A failure prints the seed, the iteration and the input.
@Suite("HTTP request fuzzing")
struct HTTPFuzzTests {
    static let environment = ProcessInfo.processInfo.environment
    static let iterations = environment["FLOWSTAT_HTTP_FUZZ_ITERATIONS"].flatMap(Int.init) ?? 2_000
    static let seed = environment["FLOWSTAT_HTTP_FUZZ_SEED"].flatMap(UInt64.init) ?? 20_261_125

    static let corpus: [String] = [
        "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /metrics HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\nAccept: application/openmetrics-text; version=1.0.0\r\n\r\n",
        "HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /health HTTP/1.0\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nabcd",
        "GET /health HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n",
        "GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\nHEAD / HTTP/1.1\r\n\r\n",
        "DELETE /metrics?x=1 HTTP/1.1\r\nHost: x\r\nAuthorization: Basic Zm9vOmJhcg==\r\n\r\n",
        "GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Basic Zm9vOmJhcg==\r\n\r\n",  // foo:bar
        "GET /metrics HTTP/1.1\r\nAuthorization: Basic Zm9vOmJheg==\r\n\r\nGET / HTTP/1.1\r\n\r\n",  // foo:baz
    ]

    static let tokens: [String] = [
        "GET", "HEAD", "POST", " ", "/", "/metrics", "/health", "?", "HTTP/1.1", "HTTP/1.0", "HTTP/2", "\r\n", "\n",
        ":", "Host", "Content-Length", "Transfer-Encoding: chunked", "Connection: close", "0", "99999999999", "\0",
        "\u{7f}", "é", "%00", "Accept-Encoding: gzip;q=0.5", "Expect: 100-continue", "Upgrade: h2c",
    ]

    private static func makeInput(_ rng: inout SeededGenerator) -> [UInt8] {
        switch Int.random(in: 0..<10, using: &rng) {
        case 0..<2:
            // Raw bytes.
            return (0..<Int.random(in: 0..<300, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
        case 2..<4:
            // Random token soup.
            var text = ""
            for _ in 0..<Int.random(in: 1..<40, using: &rng) { text += tokens.randomElement(using: &rng)! }
            return Array(text.utf8)
        default:
            // A valid request (or several), mutated a few times.
            var bytes = Array(corpus.randomElement(using: &rng)!.utf8)
            for _ in 0..<Int.random(in: 0..<5, using: &rng) {
                mutate(&bytes, &rng)
            }
            return bytes
        }
    }

    private static func mutate(_ bytes: inout [UInt8], _ rng: inout SeededGenerator) {
        let position = bytes.isEmpty ? 0 : Int.random(in: 0..<bytes.count, using: &rng)
        switch Int.random(in: 0..<7, using: &rng) {
        case 0 where !bytes.isEmpty: bytes[position] = UInt8.random(in: 0...255, using: &rng)
        case 1: bytes.insert(contentsOf: Array(tokens.randomElement(using: &rng)!.utf8), at: position)
        case 2 where !bytes.isEmpty:
            let end = min(bytes.count, position + Int.random(in: 1..<20, using: &rng))
            bytes.removeSubrange(position..<end)
        case 3 where !bytes.isEmpty:
            let end = min(bytes.count, position + Int.random(in: 1..<40, using: &rng))
            bytes.insert(contentsOf: Array(bytes[position..<end]), at: position)
        case 4: bytes = Array(bytes.prefix(position))
        case 5:
            bytes.insert(
                contentsOf: Array(
                    ("X-Pad: " + String(repeating: "a", count: Int.random(in: 500..<3_000, using: &rng)) + "\r\n").utf8),
                at: position)
        default: bytes.insert(contentsOf: [13, 10], at: position)
        }
    }

    @Test("random and mutated requests: no crash, only well-formed responses, always closed in the end")
    func fuzz() async throws {
        let pool = NIOThreadPool(numberOfThreads: 1)
        pool.start()
        let authPool = NIOThreadPool(numberOfThreads: 1)
        authPool.start()
        let auth = BasicAuth(users: ["foo": bcrypt("bar", cost: 4)])
        let pipeline = ExportPipeline(
            source: FakeFlowSource(snapshot: Fixtures.snapshot, info: Fixtures.sourceInfo), build: Fixtures.build)
        var rng = SeededGenerator(seed: Self.seed)
        var statuses: [Int: Int] = [:]
        for iteration in 0..<Self.iterations {
            let input = Self.makeInput(&rng)
            let chunks = Int.random(in: 1...3, using: &rng)
            let context =
                "seed \(Self.seed) iteration \(iteration) input \(String(reflecting: String(decoding: input, as: UTF8.self)))"
            let outcome: Outcome
            do {
                outcome = try await Self.run(
                    input, chunks: chunks, pool: pool, auth: iteration % 2 == 1 ? (auth, authPool) : nil,
                    pipeline: pipeline)
            } catch {
                Issue.record("\(error); \(context)")
                try await pool.shutdownGracefully()
                try await authPool.shutdownGracefully()
                return
            }
            switch Self.parseResponses(outcome.output) {
            case .success(let codes):
                for code in codes { statuses[code, default: 0] += 1 }
            case .failure(let problem):
                Issue.record(
                    "malformed output (\(problem)): \(String(decoding: outcome.output, as: UTF8.self).prefix(400)); \(context)"
                )
                try await pool.shutdownGracefully()
                try await authPool.shutdownGracefully()
                return
            }
            #expect(outcome.closed, "connection still open after every deadline; \(context)")
        }
        try await pool.shutdownGracefully()
        try await authPool.shutdownGracefully()
        // The generator reaches the interesting answers, or the test proves little.
        for code in [200, 400, 401, 404, 405, 408, 413] {
            #expect(statuses[code, default: 0] > 0, "no \(code) in \(statuses)")
        }
    }

    private struct Outcome {
        var output: [UInt8]
        var closed: Bool
    }

    private static func run(
        _ input: [UInt8], chunks: Int, pool: NIOThreadPool, auth: (check: BasicAuth, pool: NIOThreadPool)?,
        pipeline: ExportPipeline
    ) async throws -> Outcome {
        let channel = NIOAsyncTestingChannel()
        let loop = channel.testingEventLoop
        let timeouts = ConnectionGuard.Timeouts(request: .seconds(10), response: .seconds(120), idle: .seconds(120))
        var logger = Logger(label: "fuzz")
        logger.logLevel = .critical
        let quietLogger = logger
        try await loop.executeInContext {
            let handlers = channel.pipeline.syncOperations
            try handlers.addHandler(ConnectionGuard(timeouts: timeouts, logger: quietLogger))
            try handlers.configureHTTPServerPipeline(withErrorHandling: true)
            try handlers.addHandler(
                HTTPRequestHandler(
                    pipeline: pipeline, threadPool: pool, maxRequestHeadBytes: 1_024, auth: auth, logger: quietLogger))
        }
        try await channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 9))

        var output: [UInt8] = []
        let size = max(1, input.count / chunks + 1)
        var offset = 0
        while offset < input.count, channel.isActive {
            let end = min(input.count, offset + size)
            try? await channel.writeInbound(ByteBuffer(bytes: input[offset..<end]))
            offset = end
            try await settle(channel, pools: [pool, auth?.pool].compactMap { $0 }, into: &output)
        }
        // Past every deadline, whatever state the connection is in, it must close.
        for _ in 0..<3 where channel.isActive {
            await loop.advanceTime(by: .seconds(121))
            try await settle(channel, pools: [pool, auth?.pool].compactMap { $0 }, into: &output)
        }
        let closed = !channel.isActive
        _ = try? await channel.close()
        return Outcome(output: output, closed: closed)
    }

    /// Waits until the pool and the loop are quiet (pipelined requests make more pool work
    /// as earlier ones finish), collecting what was written.
    private static func settle(_ channel: NIOAsyncTestingChannel, pools: [NIOThreadPool], into output: inout [UInt8])
        async throws
    {
        var quietRounds = 0
        while quietRounds < 2 {
            // Each pool has one thread and runs in order: when this returns, earlier work is done.
            for pool in pools { _ = try await pool.runIfActive {} }
            try await channel.testingEventLoop.executeInContext {}
            await channel.testingEventLoop.run()
            var received = false
            while true {
                let part: IOData?
                do {
                    part = try await channel.readOutbound(as: IOData.self)
                } catch  where !channel.isActive {
                    // While a channel closes, NIO's error handler may answer a request cut
                    // off by the close after the encoder has gone; a real socket drops that
                    // write, this test channel keeps it unencoded. Not output.
                    continue
                }
                guard let part else { break }
                guard case .byteBuffer(let buffer) = part else { continue }
                output += buffer.readableBytesView
                received = true
            }
            quietRounds = received ? 0 : quietRounds + 1
        }
    }

    /// Splits output into responses: status line, headers with a Content-Length, then that
    /// many body bytes (none after a HEAD, recognised by the next status line following).
    static func parseResponses(_ output: [UInt8]) -> Result<[Int], ParseFailure> {
        var codes: [Int] = []
        var rest = output[...]
        let separator: [UInt8] = [13, 10, 13, 10]
        while !rest.isEmpty {
            guard let headEnd = rest.firstRange(of: separator) else {
                return .failure(ParseFailure("unterminated head"))
            }
            let head = String(decoding: rest[..<headEnd.lowerBound], as: UTF8.self)
            rest = rest[headEnd.upperBound...]
            var lines = head.components(separatedBy: "\r\n")
            let status = lines.removeFirst().split(separator: " ", maxSplits: 2)
            guard status.count == 3, status[0] == "HTTP/1.1" || status[0] == "HTTP/1.0", let code = Int(status[1]),
                (100...599).contains(code)
            else { return .failure(ParseFailure("bad status line in \(head)")) }
            var length: Int?
            for line in lines {
                let parts = line.split(separator: ":", maxSplits: 1)
                guard parts.count == 2, !parts[0].isEmpty, !parts[0].contains(" ") else {
                    return .failure(ParseFailure("bad header line \(line)"))
                }
                if parts[0].lowercased() == "content-length" {
                    length = Int(parts[1].trimmingCharacters(in: .whitespaces))
                }
            }
            if lines.contains(where: { $0.lowercased() == "transfer-encoding: chunked" }) {
                // Size lines in hex, each chunk followed by CRLF, a last chunk of size 0.
                codes.append(code)
                while true {
                    guard let lineEnd = rest.firstRange(of: [13, 10] as [UInt8]),
                        let size = Int(String(decoding: rest[..<lineEnd.lowerBound], as: UTF8.self), radix: 16)
                    else { return .failure(ParseFailure("bad chunk size line")) }
                    rest = rest[lineEnd.upperBound...]
                    guard rest.count >= size + 2 else { return .failure(ParseFailure("chunk shorter than \(size)")) }
                    rest = rest.dropFirst(size + 2)
                    if size == 0 { break }
                }
                continue
            }
            guard let length else { return .failure(ParseFailure("no Content-Length in \(head)")) }
            codes.append(code)
            if rest.starts(with: Array("HTTP/1.".utf8)) || (rest.isEmpty && length > 0) {
                continue  // a response to HEAD
            }
            guard rest.count >= length else { return .failure(ParseFailure("body shorter than \(length)")) }
            rest = rest.dropFirst(length)
        }
        return .success(codes)
    }

    struct ParseFailure: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }
}
