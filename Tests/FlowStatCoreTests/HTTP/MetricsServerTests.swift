// SPDX-License-Identifier: Apache-2.0

import FlowStatCore
import NIOCore
import Testing

@Suite("HTTP server")
struct MetricsServerTests {
    /// Runs `body` against a server on 127.0.0.1 with a kernel-chosen port, then stops it.
    private func withServer(
        source: FakeFlowSource = FakeFlowSource(snapshot: Fixtures.snapshot, info: Fixtures.sourceInfo),
        maxRequestHeadBytes: Int = 8 * 1024,
        _ body: (MetricsServer) async throws -> Void
    ) async throws {
        let pipeline = ExportPipeline(
            source: source, config: Fixtures.uncapped, build: Fixtures.build, processMetrics: { Fixtures.process })
        let server = try await MetricsServer.start(
            configuration: .init(
                listenAddress: ListenAddress(host: "127.0.0.1", port: 0), maxRequestHeadBytes: maxRequestHeadBytes),
            pipeline: pipeline)
        do {
            try await body(server)
        } catch {
            await server.shutdown()
            throw error
        }
        await server.shutdown()
    }

    /// The exposition of `Fixtures.snapshot` on a first scrape: the fixed text of the encoder's
    /// exact-text test, less the scrape duration's sample (no scrape has finished yet, so the
    /// gauge has its HELP and TYPE only), then the process metrics the scraper read.
    private static let expectedFirstScrape =
        Fixtures.exposition.split(separator: "\n", omittingEmptySubsequences: false)
        .filter { !$0.hasPrefix("flowstat_scrape_duration_seconds ") }.joined(separator: "\n")
        + Fixtures.processExposition

    @Test("binds an ephemeral port on the requested address")
    func ephemeralPort() async throws {
        try await withServer { server in
            #expect(server.port > 0)
            #expect(server.localAddress.ipAddress == "127.0.0.1")
            #expect(server.listenAddress.description == "127.0.0.1:\(server.port)")
        }
    }

    @Test("GET /metrics returns the encoder's output")
    func metrics() async throws {
        try await withServer { server in
            let response = try TestHTTPConnection.request("GET", "/metrics", port: server.port)
            #expect(response.status == 200)
            #expect(response.header("Content-Type") == "text/plain; version=0.0.4; charset=utf-8")
            #expect(response.header("Transfer-Encoding") == "chunked" && response.header("Content-Length") == nil)
            #expect(response.text == Self.expectedFirstScrape)
        }
    }

    @Test("a big exposition streams in many chunks, byte for byte the text held whole; HTTP/1.0 and HEAD get a length")
    func streamed() async throws {
        var flows: [FlowSample] = []
        for index in 0..<20_000 {
            flows.append(
                FlowSample(
                    key: FlowKey(
                        family: .ipv4, local: IPAddress(ipv4: 0x0A00_0000 + UInt32(index)), localPort: 443,
                        remote: IPAddress(ipv4: 0x0A01_0001), remotePort: UInt16(20_000 + index % 40_000),
                        netns: Fixtures.hostNetns),
                    rtt: Double(index) * 1e-6, cwnd: 10, bytesAcked: UInt64(index)))
        }
        let snapshot = FlowSnapshot(flows: flows, mapEntries: flows.count, mapCapacity: 65_536)
        // The same exposition held whole, by a pipeline of its own (its first scrape too).
        let whole = try ExportPipeline(
            source: FakeFlowSource(snapshot: snapshot, info: Fixtures.sourceInfo), config: Fixtures.uncapped,
            build: Fixtures.build, processMetrics: { Fixtures.process }
        ).scrape()
        try await withServer(source: FakeFlowSource(snapshot: snapshot, info: Fixtures.sourceInfo)) { server in
            let connection = try TestHTTPConnection(port: server.port)
            try connection.sendRequest("GET", "/metrics")
            let response = try connection.readResponse()
            #expect(response.status == 200 && response.header("Transfer-Encoding") == "chunked")
            #expect(response.body.count == whole.readableBytes && response.body.count > 5_000_000)
            #expect(
                response.body == Array(whole.readableBytesView), "the streamed body differs from the text held whole")
            #expect(response.chunks > 10, "\(response.chunks) chunks")

            // Compressed as it goes: one gzip member that /bin/gzip expands to the same text.
            try connection.sendRequest("GET", "/metrics", headers: ["Accept-Encoding: gzip"])
            let gzipped = try connection.readResponse()
            #expect(gzipped.header("Content-Encoding") == "gzip" && gzipped.chunks > 1, "\(gzipped.chunks) chunks")
            // A later scrape: the same text but for the previous scrape's durations.
            func withoutDurations(_ bytes: [UInt8]) -> [Substring] {
                String(decoding: bytes, as: UTF8.self).split(separator: "\n").filter {
                    !$0.hasPrefix("flowstat_scrape_duration_seconds ")
                        && !$0.hasPrefix("flowstat_snapshot_duration_seconds ")
                        && !$0.hasPrefix("collector_collection_runs_total ")
                }
            }
            let expanded = try gunzip(gzipped.body)
            #expect(
                withoutDurations(expanded) == withoutDurations(response.body),
                "the gzipped body does not expand to the exposition")

            try connection.sendRequest("GET", "/metrics", version: "HTTP/1.0", headers: ["Connection: keep-alive"])
            let old = try connection.readResponse()
            #expect(old.header("Transfer-Encoding") == nil && old.header("Content-Length") == String(old.body.count))
            #expect(old.body.count > 5_000_000)

            try connection.sendRequest("HEAD", "/metrics")
            let head = try connection.readResponse(hasBody: false)
            #expect(Int(head.header("Content-Length") ?? "") ?? 0 > 5_000_000)
            #expect(connection.unreadBytes == 0)
        }
    }

    @Test("the second scrape reports the first one's duration")
    func scrapeDuration() async throws {
        try await withServer { server in
            _ = try TestHTTPConnection.request("GET", "/metrics", port: server.port)
            let second = try TestHTTPConnection.request("GET", "/metrics?x=1", port: server.port).text
            let durationLines = second.split(separator: "\n").filter {
                $0.hasPrefix("flowstat_scrape_duration_seconds ")
            }
            #expect(durationLines.count == 1)
            let value = durationLines.first.flatMap { Double($0.split(separator: " ")[1]) }
            #expect(value.map { $0 > 0 && $0 < 10 } == true)
            // Everything else is unchanged.
            #expect(
                second.replacingLine(startingWith: "flowstat_scrape_duration_seconds ")
                    .replacingLine(startingWith: "flowstat_snapshot_duration_seconds ") == Self.expectedFirstScrape)
        }
    }

    @Test("HEAD has the headers of GET and no body; the connection stays usable")
    func head() async throws {
        try await withServer { server in
            let connection = try TestHTTPConnection(port: server.port)
            try connection.sendRequest("HEAD", "/metrics")
            let head = try connection.readResponse(hasBody: false)
            #expect(head.status == 200)
            #expect(head.header("Content-Length") == String(Self.expectedFirstScrape.utf8.count))
            // If a body had been sent, the next response would not start where this one ended.
            try connection.sendRequest("GET", "/health")
            let health = try connection.readResponse()
            #expect(health.status == 200)
            #expect(health.text == "ok")
        }
    }

    @Test("/health says ok while the source serves, 503 when it does not")
    func health() async throws {
        let source = FakeFlowSource(snapshot: Fixtures.snapshot, info: Fixtures.sourceInfo)
        try await withServer(source: source) { server in
            let ok = try TestHTTPConnection.request("GET", "/health", port: server.port)
            #expect(ok.status == 200)
            #expect(ok.text == "ok")

            struct MapGone: Error {}
            source.setFailure(MapGone())
            let failing = try TestHTTPConnection.request("GET", "/health", port: server.port)
            #expect(failing.status == 503)
            let scrape = try TestHTTPConnection.request("GET", "/metrics", port: server.port)
            #expect(scrape.status == 500)
            #expect(scrape.text.contains("MapGone"))

            source.setFailure(nil)
            // The last snapshot failed: unhealthy until a scrape succeeds again.
            #expect(try TestHTTPConnection.request("GET", "/health", port: server.port).status == 503)
            #expect(try TestHTTPConnection.request("GET", "/metrics", port: server.port).status == 200)
            #expect(try TestHTTPConnection.request("GET", "/health", port: server.port).status == 200)
        }
    }

    @Test("/ links the endpoints and names the source and its hooks")
    func landingPage() async throws {
        try await withServer { server in
            let response = try TestHTTPConnection.request("GET", "/", port: server.port)
            #expect(response.status == 200)
            #expect(response.header("Content-Type") == "text/html; charset=utf-8")
            let page = response.text
            #expect(page.contains(#"<a href="/metrics">"#))
            #expect(page.contains(#"<a href="/health">"#))
            #expect(page.contains("Source: bpf"))
            #expect(page.contains("<code>sockops</code> via <code>cgroup_sockops</code>: attached"))
            #expect(
                page.contains(
                    "<code>tcp_rcv_established</code> via <code>fentry</code>: not attached: Operation not supported"))
        }
    }

    @Test("unknown paths get 404, other methods 405 with Allow")
    func errors() async throws {
        try await withServer { server in
            #expect(try TestHTTPConnection.request("GET", "/nope", port: server.port).status == 404)
            #expect(try TestHTTPConnection.request("GET", "/metrics/extra", port: server.port).status == 404)
            #expect(try TestHTTPConnection.request("POST", "/nope", port: server.port).status == 404)
            for method in ["POST", "PUT", "DELETE", "OPTIONS"] {
                let response = try TestHTTPConnection.request(method, "/metrics", port: server.port)
                #expect(response.status == 405)
                #expect(response.header("Allow") == "GET, HEAD")
            }
        }
    }

    @Test("keep-alive: several requests, pipelined too, on one connection")
    func keepAlive() async throws {
        try await withServer { server in
            let connection = try TestHTTPConnection(port: server.port)
            for _ in 0..<3 {
                try connection.sendRequest("GET", "/health")
                let response = try connection.readResponse()
                #expect(response.status == 200)
                #expect(response.header("Connection") == nil)
            }
            // Three requests in one write come back as three responses, in order.
            try connection.send(
                "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\n\r\n"
            )
            let metrics = try connection.readResponse()
            let missing = try connection.readResponse()
            let health = try connection.readResponse()
            #expect([metrics.status, missing.status, health.status] == [200, 404, 200])
            #expect(metrics.text.hasPrefix("# HELP tcp_flow_rtt_seconds"))
            #expect(connection.unreadBytes == 0)
        }
    }

    @Test("Connection: close and HTTP/1.0 close after the response; 1.0 keep-alive is honoured")
    func connectionClose() async throws {
        try await withServer { server in
            let closing = try TestHTTPConnection(port: server.port)
            try closing.sendRequest("GET", "/health", headers: ["Connection: close"])
            let response = try closing.readResponse()
            #expect(response.header("Connection") == "close")
            #expect(try closing.isClosedByServer())

            let http10 = try TestHTTPConnection(port: server.port)
            try http10.sendRequest("GET", "/health", version: "HTTP/1.0")
            let response10 = try http10.readResponse()
            #expect(response10.status == 200)
            #expect(response10.version == "HTTP/1.0")
            #expect(try http10.isClosedByServer())

            let http10KeepAlive = try TestHTTPConnection(port: server.port)
            try http10KeepAlive.sendRequest("GET", "/health", version: "HTTP/1.0", headers: ["Connection: keep-alive"])
            #expect(try http10KeepAlive.readResponse().header("Connection") == "keep-alive")
            try http10KeepAlive.sendRequest("GET", "/health", version: "HTTP/1.0", headers: ["Connection: keep-alive"])
            #expect(try http10KeepAlive.readResponse().status == 200)
        }
    }

    @Test("an oversized request head gets 431 and the connection is closed")
    func oversizedHead() async throws {
        try await withServer(maxRequestHeadBytes: 1_024) { server in
            let connection = try TestHTTPConnection(port: server.port)
            try connection.sendRequest(
                "GET", "/metrics", headers: ["X-Padding: " + String(repeating: "a", count: 2_000)])
            let response = try connection.readResponse()
            #expect(response.status == 431)
            #expect(response.header("Connection") == "close")
            #expect(try connection.isClosedByServer())

            // A head under the limit is fine.
            let small = try TestHTTPConnection(port: server.port)
            try small.sendRequest("GET", "/health", headers: ["X-Padding: " + String(repeating: "a", count: 500)])
            #expect(try small.readResponse().status == 200)
        }
    }

    @Test("a port in use is reported as such")
    func portInUse() async throws {
        try await withServer { server in
            await #expect {
                _ = try await MetricsServer.start(
                    configuration: .init(listenAddress: ListenAddress(host: "127.0.0.1", port: server.port)),
                    pipeline: ExportPipeline(source: FakeFlowSource()))
            } throws: { error in
                guard let error = error as? MetricsServerError else { return false }
                return error.reason == .addressInUse && error.description.contains("already in use")
                    && error.address.port == server.port
            }
        }
    }

    @Test("a host that is not an address of this machine is reported as such")
    func addressNotAvailable() async throws {
        await #expect {
            // 192.0.2.0/24 is reserved for documentation: never assigned to this host.
            _ = try await MetricsServer.start(
                configuration: .init(listenAddress: ListenAddress(host: "192.0.2.1", port: 0)),
                pipeline: ExportPipeline(source: FakeFlowSource()))
        } throws: { error in
            (error as? MetricsServerError)?.reason == .addressNotAvailable
        }
    }

    @Test("after shutdown the port refuses connections; the source is left to its owner")
    func shutdown() async throws {
        let source = FakeFlowSource()
        let server = try await MetricsServer.start(
            configuration: .init(listenAddress: ListenAddress(host: "127.0.0.1", port: 0)),
            pipeline: ExportPipeline(source: source))
        let port = server.port
        #expect(try TestHTTPConnection.request("GET", "/health", port: port).status == 200)
        await server.shutdown()
        await server.shutdown()  // idempotent
        #expect(throws: TestHTTPConnection.Failure.self) { try TestHTTPConnection(port: port) }
        #expect(server.pipeline.health == .unavailable("shutting down"))
        #expect(!source.isShutDown)
    }
}

extension String {
    /// The text with the line that starts with `prefix` removed.
    fileprivate func replacingLine(startingWith prefix: String) -> String {
        split(separator: "\n", omittingEmptySubsequences: false)
            .filter { !$0.hasPrefix(prefix) }
            .joined(separator: "\n")
    }
}
