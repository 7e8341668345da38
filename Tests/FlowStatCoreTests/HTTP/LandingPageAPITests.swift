// SPDX-License-Identifier: Apache-2.0

import FlowStatCore
import Foundation
import NIOCore
import Testing

@Suite("HTTP server: landing page API")
struct LandingPageAPITests {
    private func withServer(_ body: (MetricsServer, FakeFlowSource) async throws -> Void) async throws {
        let source = FakeFlowSource(snapshot: Fixtures.snapshot, info: Fixtures.sourceInfo)
        let server = try await MetricsServer.start(
            configuration: .init(listenAddress: ListenAddress(host: "127.0.0.1", port: 0)),
            pipeline: ExportPipeline(source: source, build: Fixtures.build))
        do {
            try await body(server, source)
        } catch {
            await server.shutdown()
            throw error
        }
        await server.shutdown()
    }

    @Test("/api/flows returns the top flows by the asked key as JSON")
    func flows() async throws {
        try await withServer { server, _ in
            let response = try TestHTTPConnection.request("GET", "/api/flows?top=2&sort=bytes", port: server.port)
            #expect(response.status == 200)
            #expect(response.header("Content-Type") == "application/json")
            let document = try #require(
                try JSONSerialization.jsonObject(with: Data(response.text.utf8)) as? [String: Any])
            #expect(document["flows_total"] as? Int == 5)
            #expect(document["sort"] as? String == "bytes")
            let flows = try #require(document["flows"] as? [[String: Any]])
            // Bytes acked plus received: UInt64.max, then 1,000 + 2,000.
            #expect(flows.map { $0["src"] as? String } == ["2001:db8::1", "10.0.0.1"])
            #expect(flows.last?["sport"] as? Int == 443)
        }
    }

    @Test(
        "bad parameters get 400 with a message saying what is accepted",
        arguments: [
            ("/api/flows?top=0", "top must be a number from 1 to 1000"),
            ("/api/flows?top=1001", "top must be a number from 1 to 1000"),
            ("/api/flows?top=abc", "top must be a number"),
            ("/api/flows?sort=size", "sort must be one of rtt, retrans, bytes"),
            ("/api/flows?limit=3", "unknown parameter \"limit\""),
            ("/api/histogram?x=1", "takes no parameters"),
        ])
    func badParameters(path: String, message: String) async throws {
        try await withServer { server, _ in
            let response = try TestHTTPConnection.request("GET", path, port: server.port)
            #expect(response.status == 400)
            #expect(response.text.contains(message), "\(response.text)")
        }
    }

    @Test("only GET and HEAD")
    func methods() async throws {
        try await withServer { server, _ in
            let post = try TestHTTPConnection.request("POST", "/api/flows", port: server.port)
            let head = try TestHTTPConnection.request("HEAD", "/api/histogram", port: server.port)
            #expect(post.status == 405)
            #expect(head.status == 200)
        }
    }

    @Test("/api/histogram: the snapshot's RTT histogram, null without one; the page reuses a snapshot for 1 s")
    func histogram() async throws {
        let source = CountingFlowSource(snapshot: Fixtures.snapshot, info: Fixtures.sourceInfo)
        let server = try await MetricsServer.start(
            configuration: .init(listenAddress: ListenAddress(host: "127.0.0.1", port: 0)),
            pipeline: ExportPipeline(source: source, build: Fixtures.build))
        do {
            try await checkReuse(server: server, source: source)
        } catch {
            await server.shutdown()
            throw error
        }
        await server.shutdown()
    }

    private func checkReuse(server: MetricsServer, source: CountingFlowSource) async throws {
        let withHistogram = "{\"histogram\":{\"bounds\":[0.001],\"counts\":[4,1],\"sum\":0.01,\"count\":5}}\n"
        #expect(source.snapshots == 0, "the server took a snapshot before any request")

        // The first request takes a snapshot, at some moment after `firstStarted`.
        let firstStarted = ContinuousClock.now
        var text = try TestHTTPConnection.request("GET", "/api/histogram", port: server.port).text
        let firstAnswered = ContinuousClock.now
        #expect(text == "{\"histogram\":null}\n")
        #expect(source.snapshots == 1)
        var snapshot = Fixtures.snapshot
        snapshot.rttHistogram = Histogram(bounds: [0.001], counts: [4, 1], sum: 0.01)
        source.setSnapshot(snapshot)

        // Poll until a new snapshot is taken. A request answered less than 1 s after the first
        // one started must be served from the first snapshot; one started 1 s or more after the
        // first was answered must take a new one. Between the two, either is right.
        var reusedWithinOneSecond = 0
        var started = ContinuousClock.now
        let deadline = firstAnswered + .seconds(30)
        while source.snapshots == 1, ContinuousClock.now < deadline {
            started = ContinuousClock.now
            text = try TestHTTPConnection.request("GET", "/api/histogram", port: server.port).text
            let answered = ContinuousClock.now
            if answered - firstStarted < .seconds(1) {
                #expect(source.snapshots == 1, "a new snapshot \(answered - firstStarted) after the first")
                #expect(text == "{\"histogram\":null}\n")
                reusedWithinOneSecond += 1
            }
            if started - firstAnswered >= .seconds(1) {
                #expect(source.snapshots == 2, "no new snapshot \(started - firstAnswered) after the first")
            }
            if source.snapshots == 1 {
                #expect(text == "{\"histogram\":null}\n")
                try await Task.sleep(for: .milliseconds(50))
            }
        }
        #expect(reusedWithinOneSecond > 0, "no request was answered within 1 s of the first: reuse not shown")
        #expect(source.snapshots == 2, "no second snapshot within 30 s")
        #expect(text == withHistogram)
        // The second snapshot was taken after `started`: it is reused in turn within 1 s of that.
        #expect(try TestHTTPConnection.request("GET", "/api/histogram", port: server.port).text == withHistogram)
        let elapsed = ContinuousClock.now - started
        if elapsed < .seconds(1) {
            #expect(source.snapshots == 2, "the second snapshot was not reused \(elapsed) later")
        } else {
            Issue.record("two local requests took \(elapsed): the second snapshot's reuse is not shown")
        }
    }

    @Test("the page holds the chart and the table, and loads nothing from elsewhere")
    func page() async throws {
        try await withServer { server, _ in
            let page = try TestHTTPConnection.request("GET", "/", port: server.port).text
            #expect(page.contains(#"<svg id="rtt-chart""#))
            #expect(page.contains(#"<table id="flows">"#))
            #expect(page.contains("/api/flows?top=50&sort="))
            #expect(!page.contains("src=\"http") && !page.contains("href=\"http"))
            // The table's metric columns are the catalogue's page columns, in its order.
            let columns = FlowMetricCatalogue.all.compactMap { metric in metric.pageColumn.map { (metric, $0) } }
            #expect(columns.count >= 5)
            let headings = columns.map { "<th>\($0.1.title)</th>" }.joined()
            #expect(page.contains("<th>Local</th><th>Peer</th>\(headings)<th>process</th>"))
            let script = columns.map { "[\"\($0.0.jsonName)\",\"\($0.1.format.rawValue)\"]" }.joined(separator: ",")
            #expect(page.contains("const columns = [\(script)];"))
        }
    }
}

/// A source that counts its snapshots, so that a test can tell a reused snapshot from a new one.
private final class CountingFlowSource: FlowSource, @unchecked Sendable {
    private let lock = NSLock()
    private var current: FlowSnapshot
    private var taken = 0
    let info: SourceInfo

    init(snapshot: FlowSnapshot, info: SourceInfo) {
        current = snapshot
        self.info = info
    }

    func snapshot() throws -> FlowSnapshot {
        lock.withLock {
            taken += 1
            return current
        }
    }

    /// How many times `snapshot()` has been called.
    var snapshots: Int { lock.withLock { taken } }

    func setSnapshot(_ snapshot: FlowSnapshot) {
        lock.withLock { current = snapshot }
    }
}
