// SPDX-License-Identifier: Apache-2.0

import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing

@testable import FlowStatCore

/// The kubelet client's settings (URL, config keys, defaults from the DaemonSet's
/// environment) and how it fails: a refused connection, a missing token or CA, each counted
/// and keeping the last good pod list. Its TLS against a real HTTPS stand-in is in the
/// integration tests (KubeletTests).
@Suite("Kubelet client: settings and failures")
struct KubeletClientTests {
    @Test("https URLs parse into host, port and path; other forms are refused with the reason")
    func urls() throws {
        let plain = try KubeletURL(parsing: "https://node-a:10250/pods")
        #expect(plain.host == "node-a" && plain.port == 10250 && plain.path == "/pods")
        #expect(!plain.hostIsIPAddress)
        let v6 = try KubeletURL(parsing: "https://[fd00::1]:10250/pods?x=1")
        #expect(v6.host == "fd00::1" && v6.port == 10250 && v6.path == "/pods?x=1" && v6.hostIsIPAddress)
        #expect(v6.authority == "[fd00::1]:10250")
        let defaultPort = try KubeletURL(parsing: "https://10.0.0.2/pods")
        #expect(defaultPort.port == 443 && defaultPort.hostIsIPAddress)
        for (text, reason) in [
            ("http://node:10250/pods", "not an https:// URL"), ("https://node:10250", "no path"),
            ("https://node:x/pods", "is not :PORT"), ("https://node:70000/pods", "out of range"),
            ("https://:10250/pods", "no host"), ("https://[fd00::1/pods", "no ]"),
        ] {
            #expect(throws: KubeletURL.Invalid.self, "\(text)") { try KubeletURL(parsing: text) }
            do {
                _ = try KubeletURL(parsing: text)
            } catch {
                #expect(error.description.contains(reason), "\(text): \(error)")
            }
        }
    }

    @Test("the default URL comes from NODE_IP, else NODE_NAME; neither set means not on Kubernetes")
    func environment() {
        let both = ["NODE_IP": "192.168.10.2", "NODE_NAME": "node-a"]
        #expect(KubeletURL.fromEnvironment { both[$0] }?.description == "https://192.168.10.2:10250/pods")
        #expect(KubeletURL.fromEnvironment { ["NODE_NAME": "node-a"][$0] }?.description == "https://node-a:10250/pods")
        #expect(KubeletURL.fromEnvironment { _ in nil } == nil)
        #expect(KubeletURL.fromEnvironment { ["NODE_IP": ""][$0] } == nil)
        var config = FlowStatConfig.Kubelet()
        #expect(KubeletClient.Settings(config: config, environment: { _ in nil }) == nil)
        config.url = KubeletURL(host: "10.1.1.1", port: 9999)
        #expect(KubeletClient.Settings(config: config, environment: { both[$0] })?.url.authority == "10.1.1.1:9999")
    }

    @Test("flowstat.kubelet keys load and are checked; the client runs only for pod names")
    func config() throws {
        let loaded = try FlowStatConfig(
            yaml: """
                flowstat:
                  labels: {container: true}
                  kubelet:
                    url: https://node-a:10250/pods
                    refreshInterval: 5
                    tokenFile: /run/token
                    caFile: /run/ca.crt
                """)
        #expect(loaded.kubelet.url == KubeletURL(host: "node-a"))
        #expect(loaded.kubelet.refreshInterval == 5)
        #expect(loaded.kubelet.tokenFile == "/run/token" && loaded.kubelet.caFile == "/run/ca.crt")
        #expect(!loaded.needsKubelet, "the container label alone shows ids")
        let defaults = FlowStatConfig()
        #expect(defaults.kubelet.url == nil && defaults.kubelet.refreshInterval == 30)
        #expect(defaults.kubelet.tokenFile == "/var/run/secrets/kubernetes.io/serviceaccount/token")
        #expect(defaults.kubelet.caFile == "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt")
        #expect(try FlowStatConfig(yaml: "flowstat: {labels: {pod: true}}").needsKubelet)
        #expect(try FlowStatConfig(yaml: "flowstat: {labels: {namespace: true}}").needsKubelet)
        #expect(try FlowStatConfig(yaml: "logic: {selection: {kubernetes: {namespaces: [shop]}}}").needsKubelet)
        #expect(try FlowStatConfig(yaml: "flowstat: {kubelet: {url: \"\"}}").kubelet.url == nil)

        for (yaml, problem, fix) in [
            ("url: http://node:10250/pods", "not an https:// URL", "https://NODE:10250/pods"),
            ("refreshInterval: 0", "out of range", "from 1 to 3600"),
            ("tokenFile: token", "not an absolute path", "absolute path"),
            ("caFile: ca.crt", "not an absolute path", "absolute path"),
            ("insecure: true", "insecure", "refreshInterval"),
        ] {
            do {
                _ = try FlowStatConfig(yaml: "flowstat:\n  kubelet:\n    \(yaml)\n")
                Issue.record("\(yaml) loaded")
            } catch {
                #expect(error.description.contains(problem), "\(yaml): \(error)")
                #expect(error.description.contains(fix), "\(yaml): \(error)")
                #expect(error.description.contains("flowstat.kubelet"), "\(yaml): \(error)")
            }
        }
        // The sample config loads as the defaults.
        #expect(try FlowStatConfig(yaml: FlowStatConfig.sampleYAML).kubelet == FlowStatConfig.Kubelet())
    }

    @Test("check-config's summary shows the workload labels, aggregate keys, kubernetes selection and the kubelet")
    func summary() throws {
        let config = try FlowStatConfig(
            yaml: """
                logic: {selection: {kubernetes: {namespaces: [shop, web], pods: [api]}}}
                flowstat:
                  labels: {pod: true, namespace: true}
                  cardinality: {aggregateBy: [pod]}
                  kubelet: {url: "https://10.0.0.7:10250/pods", refreshInterval: 15}
                """)
        #expect(config.summary.contains("extra labels: pod, namespace"), "\(config.summary)")
        #expect(config.summary.contains("  aggregates keyed also by: pod\n"), "\(config.summary)")
        #expect(config.summary.contains("  kubelet: https://10.0.0.7:10250/pods, every 15 s"), "\(config.summary)")
        #expect(
            config.summary.contains("selection: kubernetes (namespace shop or namespace web) and (pod api)"),
            "\(config.summary)")
        let plain = FlowStatConfig().summary
        #expect(!plain.contains("kubelet") && !plain.contains("aggregates keyed"))
    }

    @Test(
        "a full node's pod list (110 pods, the kubelet's default maximum) parses off the scrape path in well under a refresh"
    )
    func parseCost() throws {
        let text = try String(contentsOfFile: Fixtures.directory + "/kubelet/pods.json", encoding: .utf8)
        let document = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        let template = try #require((document["items"] as? [[String: Any]])?.first)
        var items: [[String: Any]] = []
        for index in 0..<110 {
            var item = template
            var metadata = try #require(item["metadata"] as? [String: Any])
            metadata["uid"] = String(format: "0b3c1f4e-8a8f-4c4b-9d4e-%012x", index)
            metadata["name"] = "web-\(index)"
            item["metadata"] = metadata
            items.append(item)
        }
        var list = document
        list["items"] = items
        let body = String(decoding: try JSONSerialization.data(withJSONObject: list), as: UTF8.self)
        let clock = ContinuousClock()
        var pods: [PodMetadata] = []
        let elapsed = try clock.measure { pods = try PodList.parse(body) }
        #expect(pods.count == 110)
        print("pod list of 110 pods, \(body.utf8.count) bytes: parsed in \(elapsed)")
        #expect(elapsed < .seconds(5))
    }

    @Test("the pipeline runs a client only while names are needed and a kubelet is known; a reload stops it")
    func pipelineLifecycle() throws {
        let source = FakeFlowSource(snapshot: Fixtures.snapshot, info: Fixtures.sourceInfo)
        var config = FlowStatConfig()
        config.labels.container = true
        // A kubelet address nothing answers on: refreshes fail, which is all this test needs.
        let environment: @Sendable (String) -> String? = { $0 == "NODE_IP" ? "127.0.0.1" : nil }
        config.kubelet.url = KubeletURL(host: "127.0.0.1", port: try Self.closedPort())
        let pipeline = ExportPipeline(
            source: source, config: config, build: Fixtures.build, logger: LogCapture().logger, environment: environment
        )
        defer { pipeline.stop() }
        #expect(pipeline.kubeletStatus == nil, "the container label alone needs no names")
        #expect(!String(buffer: try pipeline.scrape()).contains("flowstat_kubelet_"))
        config.labels.pod = true
        pipeline.apply(config)
        #expect(pipeline.kubeletStatus != nil)
        #expect(waitFor { (pipeline.kubeletStatus?.failures ?? 0) >= 1 })
        #expect(String(buffer: try pipeline.scrape()).contains("\nflowstat_kubelet_refresh_failures_total "))
        config.labels.pod = false
        pipeline.apply(config)
        #expect(pipeline.kubeletStatus == nil)
        // Not on Kubernetes (no URL, no NODE_IP/NODE_NAME): no client even with the labels on.
        let elsewhere = ExportPipeline(
            source: source,
            config: {
                var plain = FlowStatConfig()
                plain.labels.pod = true
                return plain
            }(),
            build: Fixtures.build, logger: LogCapture().logger, environment: { _ in nil })
        defer { elsewhere.stop() }
        #expect(elsewhere.kubeletStatus == nil)
    }

    private func waitFor(seconds: Double = 10, _ condition: () -> Bool) -> Bool {
        let deadline = ContinuousClock.now + .seconds(seconds)
        while ContinuousClock.now < deadline {
            if condition() { return true }
            usleep(20_000)
        }
        return condition()
    }

    @Test("answers other than 200 name the problem and the fix (403: RBAC nodes/proxy)")
    func statusMessages() {
        let url = KubeletURL(host: "10.0.0.2")
        let forbidden = KubeletError(status: .forbidden, url: url)
        #expect(forbidden.problem.contains("403") && forbidden.fix.contains("nodes/proxy"))
        let unauthorized = KubeletError(status: .unauthorized, url: url)
        #expect(unauthorized.problem.contains("401") && unauthorized.fix.contains("token"))
        let notFound = KubeletError(status: .notFound, url: url)
        #expect(notFound.problem.contains("404") && notFound.fix.contains("/pods"))
    }

    static func temporaryDirectory() throws -> String {
        let path = NSTemporaryDirectory() + "fs-kubelet-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// A port nothing listens on: bound, then closed.
    static func closedPort() throws -> Int {
        let channel = try ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(host: "127.0.0.1", port: 0).wait()
        let port = try #require(channel.localAddress?.port)
        try channel.close().wait()
        return port
    }

    @Test("a refused connection, a missing token or CA: counted, logged once per problem, last good list kept")
    func failuresKeepTheLastList() throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let token = directory + "/token"
        let ca = directory + "/ca.crt"
        try "secret\n".write(toFile: token, atomically: true, encoding: .utf8)
        // A real CA (openssl makes it): the connection is refused before TLS starts.
        let openssl = Process()
        openssl.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        openssl.arguments = [
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
            directory + "/ca.key", "-out", ca, "-subj", "/CN=flowstat-test-ca", "-days", "1",
        ]
        openssl.standardError = FileHandle.nullDevice
        try openssl.run()
        openssl.waitUntilExit()
        #expect(openssl.terminationStatus == 0)
        let pods = PodDirectory()
        pods.replace(with: [PodMetadata(uid: "u1", name: "web", namespace: "shop")])
        let url = KubeletURL(host: "127.0.0.1", port: try Self.closedPort())
        let logs = LogCapture()
        let client = KubeletClient(
            settings: KubeletClient.Settings(url: url, refreshInterval: 30, tokenFile: token, caFile: ca),
            directory: pods, logger: logs.logger)
        defer { client.stop() }

        try client.refresh().wait()
        try client.refresh().wait()
        #expect(client.status.failures == 2 && client.status.lastSuccess == nil)
        #expect(client.status.lastError?.problem.contains("cannot connect to the kubelet at \(url.authority)") == true)
        #expect(pods.current.pods["u1"]?.name == "web", "the last good list stays")
        #expect(logs.lines.filter { $0.contains("cannot connect") }.count == 1, "\(logs.lines)")

        unlink(token)
        try client.refresh().wait()
        #expect(client.status.failures == 3)
        #expect(client.status.lastError?.problem.contains("token \(token)") == true)
        #expect(client.status.lastError?.fix.contains("flowstat.kubelet.tokenFile") == true)

        try "secret".write(toFile: token, atomically: true, encoding: .utf8)
        unlink(ca)
        try client.refresh().wait()
        #expect(client.status.lastError?.problem.contains(ca) == true)
        #expect(client.status.lastError?.fix.contains("flowstat.kubelet.caFile") == true)
        #expect(logs.lines.count == 3, "one line per distinct problem: \(logs.lines)")
        #expect(logs.lines.allSatisfy { $0.contains("fix:") && $0.contains("keeping the last good list (0 pods)") })
        #expect(pods.current.pods.count == 1)
    }

    @Test("the self-metrics appear only when a client runs")
    func selfMetrics() {
        var context = Fixtures.context
        var buffer = ByteBuffer()
        var encoder = MetricsEncoder()
        encoder.encode(Fixtures.snapshot, context: context, into: &buffer)
        #expect(!String(buffer: buffer).contains("flowstat_kubelet"))
        var status = KubeletStatus()
        status.lastSuccess = 1_700_000_000.5
        status.failures = 3
        status.pods = 7
        context.kubelet = status
        buffer.clear()
        encoder.encode(Fixtures.snapshot, context: context, into: &buffer)
        let text = String(buffer: buffer)
        #expect(text.contains("\nflowstat_kubelet_last_success_timestamp_seconds 1700000000.5\n"))
        #expect(text.contains("\n# TYPE flowstat_kubelet_refresh_failures_total counter\n"))
        #expect(text.contains("\nflowstat_kubelet_refresh_failures_total 3\n"))
        #expect(text.contains("\nflowstat_kubelet_pods 7\n"))
    }
}

/// Collects log lines at warning and above.
final class LogCapture: Sendable {
    private let box = NIOLockedValueBox<[String]>([])
    var lines: [String] { box.withLockedValue { $0 } }

    var logger: Logger {
        Logger(label: "test") { _ in Handler(box: self.box) }
    }

    struct Handler: LogHandler {
        let box: NIOLockedValueBox<[String]>
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .warning
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            box.withLockedValue { $0.append(event.message.description) }
        }
    }
}
