// SPDX-License-Identifier: Apache-2.0

import Foundation
import Logging
import NIOCore
import Testing

@testable import FlowStatCore

#if canImport(Glibc)
import Glibc
#endif

@Suite("HTTP negotiation, gzip, limits and auth")
struct HTTPHardeningTests {
    private func withServer(
        source: FakeFlowSource = FakeFlowSource(snapshot: Fixtures.snapshot, info: Fixtures.sourceInfo),
        configure: (inout MetricsServer.Configuration) -> Void = { _ in },
        logger: Logger = Logger(label: "flowstat.http"),
        _ body: (MetricsServer) async throws -> Void
    ) async throws {
        var configuration = MetricsServer.Configuration(listenAddress: ListenAddress(host: "127.0.0.1", port: 0))
        configure(&configuration)
        let server = try await MetricsServer.start(
            configuration: configuration,
            pipeline: ExportPipeline(
                source: source, config: Fixtures.uncapped, build: Fixtures.build, processMetrics: { Fixtures.process }),
            logger: logger)
        do {
            try await body(server)
        } catch {
            await server.shutdown()
            throw error
        }
        await server.shutdown()
    }

    /// A snapshot of `count` flows: about 1 KiB of exposition per flow.
    static func bigSnapshot(_ count: Int) -> FlowSnapshot {
        var flows: [FlowSample] = []
        for index in 0..<count {
            let local = IPAddress(ipv4: 0x7F01_0000 | UInt32(index))
            let port = UInt16(1_024 + index % 60_000)
            let key = FlowKey(
                family: .ipv4, local: local, localPort: port, remote: IPAddress(ipv4: 0x7F02_0001), remotePort: 9_000,
                netns: Fixtures.hostNetns)
            flows.append(FlowSample(key: key, rtt: Double(index) * 1e-6, cwnd: 10, bytesAcked: UInt64(index) * 1_448))
        }
        return FlowSnapshot(flows: flows, mapEntries: count, mapCapacity: count)
    }

    @Test("Accept picks OpenMetrics; gzip when asked, with Vary; HEAD has GET's headers")
    func negotiationOverHTTP() async throws {
        try await withServer { server in
            let connection = try TestHTTPConnection(port: server.port)
            try connection.sendRequest("GET", "/metrics")
            let plain = try connection.readResponse()
            #expect(plain.header("Content-Type") == "text/plain; version=0.0.4; charset=utf-8")
            #expect(plain.header("Content-Encoding") == nil)
            #expect(plain.header("Vary") == "Accept-Encoding")

            try connection.sendRequest(
                "GET", "/metrics", headers: ["Accept: application/openmetrics-text; version=1.0.0"])
            let openMetrics = try connection.readResponse()
            #expect(openMetrics.header("Content-Type") == "application/openmetrics-text; version=1.0.0; charset=utf-8")
            #expect(openMetrics.text.hasSuffix("# EOF\n"))

            try connection.sendRequest("GET", "/metrics", headers: ["Accept-Encoding: gzip, deflate"])
            let gzipped = try connection.readResponse()
            #expect(gzipped.header("Content-Encoding") == "gzip")
            // Streamed: compressed as it is encoded, so sent in chunks without a length.
            #expect(gzipped.header("Transfer-Encoding") == "chunked" && gzipped.header("Content-Length") == nil)
            let text = String(decoding: try gunzip(gzipped.body), as: UTF8.self)
            // The first scrape has no durations of a previous one; the rest is the same.
            func withoutDurations(_ text: String) -> [Substring] {
                text.split(separator: "\n").filter {
                    !$0.hasPrefix("flowstat_scrape_duration_seconds ")
                        && !$0.hasPrefix("flowstat_snapshot_duration_seconds ")
                }
            }
            #expect(withoutDurations(text) == withoutDurations(plain.text))
            #expect(text.hasPrefix("# HELP tcp_flow_rtt_seconds"))

            try connection.sendRequest("HEAD", "/metrics", headers: ["Accept-Encoding: gzip"])
            let head = try connection.readResponse(hasBody: false)
            #expect(head.header("Content-Encoding") == "gzip")
            #expect(Int(head.header("Content-Length") ?? "") ?? 0 > 100)

            try connection.sendRequest("GET", "/metrics", headers: ["Accept-Encoding: gzip;q=0, *"])
            #expect(try connection.readResponse().header("Content-Encoding") == nil)

            try connection.sendRequest("GET", "/", headers: ["Accept-Encoding: gzip"])
            let page = try connection.readResponse()
            #expect(String(decoding: try gunzip(page.body), as: UTF8.self).contains("<h1>flowstat</h1>"))
            #expect(connection.unreadBytes == 0)
        }
    }

    @Test("requests with a body get 413 and the connection closes without reading it")
    func bodiesRefused() async throws {
        try await withServer { server in
            for headers in [["Content-Length: 5"], ["Transfer-Encoding: chunked"]] {
                let connection = try TestHTTPConnection(port: server.port)
                try connection.sendRequest("GET", "/metrics", headers: headers)
                let response = try connection.readResponse()
                #expect(response.status == 413)
                #expect(response.header("Connection") == "close")
                #expect(try connection.isClosedByServer())
            }
            // Content-Length: 0 is no body.
            let connection = try TestHTTPConnection(port: server.port)
            try connection.sendRequest("GET", "/health", headers: ["Content-Length: 0"])
            #expect(try connection.readResponse().status == 200)
        }
    }

    /// Deadlines long enough that a client on a loaded machine sends its request in time, so
    /// that only the clients that are meant to miss them do; the connections of one test wait
    /// out their deadlines together. A read waits up to a minute for a deadline to fire.
    static let requestDeadline = Duration.seconds(2)
    static let idleDeadline = Duration.seconds(4)
    /// Timer and clock granularity: a deadline may appear to fire this much early.
    static let slack = Duration.milliseconds(50)

    /// Checks that something the server did `elapsed` after the deadline was armed came from
    /// the deadline: not before it, and within a generous bound after it.
    static func firedAt(_ elapsed: Duration, deadline: Duration, _ what: String) {
        #expect(elapsed >= deadline - slack, "\(what) after \(elapsed), before its deadline of \(deadline)")
        #expect(elapsed < deadline + .seconds(30), "\(what) only after \(elapsed); deadline \(deadline)")
    }

    @Test(
        "a request head trickling in is cut off with 408 at the request deadline; an idle keep-alive connection is closed at the idle deadline"
    )
    func slowClients() async throws {
        try await withServer(configure: {
            $0.requestTimeout = .seconds(2)
            $0.idleTimeout = .seconds(4)
        }) { server in
            let clock = ContinuousClock()
            // Each deadline is armed when the server accepts, after the time taken here.
            let slowOpened = clock.now
            let slow = try TestHTTPConnection(port: server.port, readTimeout: 60)
            try slow.send("GET /metr")  // and nothing more
            let silentOpened = clock.now
            let silent = try TestHTTPConnection(port: server.port, readTimeout: 60)  // never sends a byte
            let idle = try TestHTTPConnection(port: server.port, readTimeout: 60)
            // The idle deadline is armed once the response is sent, after the request.
            let idleRequested = clock.now
            try idle.sendRequest("GET", "/health")
            #expect(try idle.readResponse().status == 200)

            let response = try slow.readResponse()
            Self.firedAt(clock.now - slowOpened, deadline: Self.requestDeadline, "408 to a trickling head")
            #expect(response.status == 408)
            #expect(try slow.isClosedByServer())

            #expect(try silent.readResponse().status == 408)
            Self.firedAt(clock.now - silentOpened, deadline: Self.requestDeadline, "408 to a silent client")
            #expect(try silent.isClosedByServer())

            // No 408 (it was between requests), and closed at the idle deadline, not the request one.
            #expect(try idle.isClosedByServer())
            Self.firedAt(clock.now - idleRequested, deadline: Self.idleDeadline, "idle connection closed")
        }
    }

    @Test("TLS: a client that never finishes its handshake is closed at the request deadline")
    func stalledHandshake() async throws {
        let directory = try TemporaryDirectory()
        _ = try makeCertificate(in: directory)
        let path = try directory.write(
            "web.yml", "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n")
        let config = try WebConfig.load(path: path)
        try await withServer(configure: {
            $0.webConfig = config
            $0.requestTimeout = .seconds(2)
        }) { server in
            let clock = ContinuousClock()
            let opened = clock.now
            let silent = try TestHTTPConnection(port: server.port, readTimeout: 60)
            let partial = try TestHTTPConnection(port: server.port, readTimeout: 60)
            try partial.send("\u{16}\u{3}\u{1}")  // the start of a TLS record, and no more
            #expect(try silent.isClosedByServer())
            Self.firedAt(clock.now - opened, deadline: Self.requestDeadline, "silent TLS client closed")
            #expect(try partial.isClosedByServer())
            Self.firedAt(clock.now - opened, deadline: Self.requestDeadline, "stalled TLS handshake closed")
        }
    }

    @Test("a client that stops reading a big response is cut off at the response deadline; others are served meanwhile")
    func slowReader() async throws {
        let source = FakeFlowSource(snapshot: Self.bigSnapshot(20_000), info: Fixtures.sourceInfo)
        let log = LogRecorder()
        let cut = "response not written within"
        // Every response, 10 MB from a debug build included, has this long to be written out.
        let responseDeadline = Duration.seconds(10)
        try await withServer(source: source, configure: { $0.responseTimeout = .seconds(10) }, logger: log.logger) {
            server in
            let clock = ContinuousClock()
            let requested = clock.now
            let stalled = try TestHTTPConnection(port: server.port, receiveBuffer: 4_096, readTimeout: 60)
            try stalled.sendRequest("GET", "/metrics")
            // While that response sits unread, other scrapes go through.
            for _ in 0..<3 {
                let response = try TestHTTPConnection.request("GET", "/metrics", port: server.port)
                #expect(response.status == 200)
                #expect(response.body.count > 10_000_000)
            }
            #expect(log.count(containing: cut) == 0, "a response was cut before the others were served: \(log.all)")
            // Stay stalled until the server says the deadline fired (a reader that resumed in
            // time would rightly get everything), then find the response cut short.
            let fired = try await waitUntil(responseDeadline + .seconds(50)) { log.count(containing: cut) > 0 }
            try #require(fired, "the response deadline never fired: \(log.all)")
            Self.firedAt(clock.now - requested, deadline: responseDeadline, "stalled response cut")
            let head = try stalled.readHead()
            #expect(head.status == 200 && head.header("Transfer-Encoding") == "chunked")
            #expect(try stalled.drain() < 10_000_000)
            #expect(log.count(containing: cut) == 1, "only the stalled response is cut: \(log.all)")
        }
    }

    @Test("connections past the cap wait in the backlog until one closes")
    func connectionCap() async throws {
        try await withServer(configure: { $0.maxConnections = 3 }) { server in
            var holders = try (0..<3).map { _ in try TestHTTPConnection(port: server.port) }
            // The three are being served: each answers.
            for holder in holders {
                try holder.sendRequest("GET", "/health")
                #expect(try holder.readResponse().status == 200)
            }
            let waiting = try TestHTTPConnection(port: server.port)
            try waiting.sendRequest("GET", "/health")
            #expect(!(try waiting.hasData(within: 500)), "a fourth connection was served past the cap of 3")
            holders.removeFirst()  // closes one
            #expect(try waiting.readResponse().status == 200)
            _ = holders
        }
    }

    @Test("basic auth: 401 with a challenge without or with wrong credentials, on every path; 200 with right ones")
    func basicAuth() async throws {
        let config = try WebConfig.parse("basic_auth_users:\n  prometheus: \(bcrypt("right"))\n", path: "web.yml")
        try await withServer(configure: { $0.webConfig = config }) { server in
            func authorization(_ user: String, _ password: String) -> String {
                "Authorization: Basic " + Data("\(user):\(password)".utf8).base64EncodedString()
            }
            let connection = try TestHTTPConnection(port: server.port)
            for (path, headers) in [
                ("/metrics", []), ("/health", []), ("/nope", []), ("/metrics", [authorization("prometheus", "wrong")]),
                ("/metrics", [authorization("someone", "right")]), ("/metrics", ["Authorization: Bearer x"]),
            ] {
                try connection.sendRequest("GET", path, headers: headers)
                let response = try connection.readResponse()
                #expect(response.status == 401, "\(path) \(headers)")
                #expect(response.header("WWW-Authenticate") == #"Basic realm="flowstat", charset="UTF-8""#)
            }
            for _ in 0..<3 {  // the first checks bcrypt, the others hit the cache
                try connection.sendRequest("GET", "/metrics", headers: [authorization("prometheus", "right")])
                let response = try connection.readResponse()
                #expect(response.status == 200)
                #expect(response.text.hasPrefix("# HELP"))
            }
            try connection.sendRequest("GET", "/nope", headers: [authorization("prometheus", "right")])
            #expect(try connection.readResponse().status == 404)
        }
    }
}
