// SPDX-License-Identifier: Apache-2.0

import Foundation
import Testing

/// The agent's HTTP side against real clients, on loopback, with `--source fake` (no BPF,
/// no privileges): TLS and basic auth from a `--web.config.file` through curl, gzip and
/// OpenMetrics negotiation, start-up errors, and a batch of bad clients while a pipeline
/// keeps scraping.
@Suite("HTTP security and robustness (flowstat binary, curl)")
struct HTTPSecurityTests {
    /// A temporary directory with a self-signed certificate for 127.0.0.1, a bcrypt hash
    /// of `right-password` for user `prometheus`, and a web config using both.
    final class Credentials {
        let directory: URL
        let cert: String
        let configFile: String

        init() throws {
            directory = FileManager.default.temporaryDirectory
                .appendingPathComponent("flowstat-http-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            cert = directory.appendingPathComponent("server.crt").path
            let key = directory.appendingPathComponent("server.key").path
            try run([
                "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=flowstat-test",
                "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
            ])
            // Debian's Python hashes through the same libxcrypt as flowstat, like htpasswd -B.
            let hash = try run([
                "/usr/bin/python3", "-W", "ignore", "-c",
                "import crypt; print(crypt.crypt('right-password', crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=1024)))",
            ]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            configFile = directory.appendingPathComponent("web.yml").path
            try """
            tls_server_config:
              cert_file: server.crt
              key_file: server.key
            basic_auth_users:
              prometheus: \(hash)

            """.write(toFile: configFile, atomically: true, encoding: .utf8)
        }

        deinit { try? FileManager.default.removeItem(at: directory) }
    }

    /// curl against the agent: status code, headers and body file.
    static func curl(_ agent: Agent, _ path: String, _ options: [String], scheme: String = "https")
        throws -> (exit: Int32, status: Int, headers: String, body: Data)
    {
        let bodyFile = FileManager.default.temporaryDirectory.appendingPathComponent("flowstat-http-body-\(UUID())")
            .path
        defer { try? FileManager.default.removeItem(atPath: bodyFile) }
        let result = try run(
            ["curl", "-sS", "--max-time", "20", "-D", "-", "-o", bodyFile, "-w", "%{http_code}"] + options
                + ["\(scheme)://127.0.0.1:\(agent.port)\(path)"], check: false)
        let body = FileManager.default.contents(atPath: bodyFile) ?? Data()
        let status = Int(result.stdout.suffix(3)) ?? 0
        return (result.status, status, String(result.stdout.dropLast(3)), body)
    }

    @Test(
        "TLS and basic auth: right password 200, wrong or missing 401; plain HTTP fails cleanly; gzip and OpenMetrics")
    func tlsAndBasicAuth() throws {
        let credentials = try Credentials()
        let tls = ["--cacert", credentials.cert]
        let agent = try Agent(
            ["--source", "fake", "--web.config.file", credentials.configFile], scheme: "https",
            curlOptions: tls + ["-u", "prometheus:right-password"])
        defer { agent.stop() }

        let right = try Self.curl(agent, "/metrics", tls + ["-u", "prometheus:right-password"])
        #expect(right.status == 200)
        #expect(String(decoding: right.body, as: UTF8.self).contains("flowstat_source_info{source=\"fake\""))

        for options in [["-u", "prometheus:wrong"], ["-u", "someone:right-password"], []] {
            let denied = try Self.curl(agent, "/metrics", tls + options)
            #expect(denied.status == 401, "\(options)")
            #expect(denied.headers.contains(#"WWW-Authenticate: Basic realm="flowstat""#), "\(denied.headers)")
            #expect(!String(decoding: denied.body, as: UTF8.self).contains("tcp_flow"))
        }
        #expect(try Self.curl(agent, "/health", tls).status == 401)

        // Plain HTTP to the TLS port: curl gets no HTTP response, and the agent serves on.
        let plain = try Self.curl(agent, "/metrics", [], scheme: "http")
        #expect(plain.exit != 0)
        #expect(plain.status == 0)
        #expect(try Self.curl(agent, "/health", tls + ["-u", "prometheus:right-password"]).status == 200)

        // gzip: curl --compressed decodes it; the raw bytes are a gzip stream of the same text.
        let compressed = try Self.curl(agent, "/metrics", tls + ["-u", "prometheus:right-password", "--compressed"])
        #expect(compressed.status == 200)
        #expect(compressed.headers.lowercased().contains("content-encoding: gzip"))
        #expect(String(decoding: compressed.body, as: UTF8.self).hasPrefix("# HELP tcp_flow_rtt_seconds"))
        let raw = try Self.curl(
            agent, "/metrics", tls + ["-u", "prometheus:right-password", "-H", "Accept-Encoding: gzip"])
        #expect(raw.body.prefix(2) == Data([0x1f, 0x8b]))
        let rawFile = credentials.directory.appendingPathComponent("raw.gz").path
        FileManager.default.createFile(atPath: rawFile, contents: raw.body)
        let text = try run(["gzip", "-dc", rawFile]).stdout
        #expect(text.hasPrefix("# HELP tcp_flow_rtt_seconds"))
        #expect(text.contains("\nflowstat_scrape_duration_seconds "))
        let noGzip = try Self.curl(
            agent, "/metrics", tls + ["-u", "prometheus:right-password", "-H", "Accept-Encoding: gzip;q=0"])
        #expect(!noGzip.headers.lowercased().contains("content-encoding"))

        let openMetrics = try Self.curl(
            agent, "/metrics",
            tls + ["-u", "prometheus:right-password", "-H", "Accept: application/openmetrics-text; version=1.0.0"])
        #expect(
            openMetrics.headers.contains("Content-Type: application/openmetrics-text; version=1.0.0; charset=utf-8"))
        #expect(String(decoding: openMetrics.body, as: UTF8.self).hasSuffix("# EOF\n"))

        // HEAD: GET's headers, no body.
        let head = try Self.curl(
            agent, "/metrics", tls + ["-u", "prometheus:right-password", "-I", "-H", "Accept-Encoding: gzip"])
        #expect(head.status == 200)
        #expect(head.headers.lowercased().contains("content-encoding: gzip"))
        #expect(head.headers.lowercased().contains("content-length: "))
    }

    @Test("client certificates: RequireAndVerifyClientCert lets in only certificates the client CA signed")
    func clientCertificates() throws {
        let credentials = try Credentials()
        let directory = credentials.directory.path
        for name in ["client", "stranger"] {
            try run([
                "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-keyout", "\(directory)/\(name).key", "-out", "\(directory)/\(name).crt", "-days", "2",
                "-subj", "/CN=\(name)",
            ])
        }
        // The client's self-signed certificate is its own CA.
        let config = "\(directory)/mtls.yml"
        try """
        tls_server_config:
          cert_file: server.crt
          key_file: server.key
          client_auth_type: RequireAndVerifyClientCert
          client_ca_file: client.crt

        """.write(toFile: config, atomically: true, encoding: .utf8)
        let client = [
            "--cacert", credentials.cert, "--cert", "\(directory)/client.crt", "--key", "\(directory)/client.key",
        ]
        let agent = try Agent(["--source", "fake", "--web.config.file", config], scheme: "https", curlOptions: client)
        defer { agent.stop() }

        #expect(try Self.curl(agent, "/metrics", client).status == 200)
        let without = try Self.curl(agent, "/metrics", ["--cacert", credentials.cert])
        #expect(without.exit != 0 && without.status == 0)
        let stranger = try Self.curl(
            agent, "/metrics",
            ["--cacert", credentials.cert, "--cert", "\(directory)/stranger.crt", "--key", "\(directory)/stranger.key"])
        #expect(stranger.exit != 0 && stranger.status == 0)
        #expect(try Self.curl(agent, "/health", client).status == 200)
    }

    @Test("a real Prometheus negotiates OpenMetrics and gzip, and reads units and counters right")
    func prometheusReadsOpenMetrics() throws {
        let agent = try Agent(["--source", "fake", "--log.level", "debug"])
        defer { agent.stop() }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("flowstat-http-prom-\(getpid())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let config = directory.appendingPathComponent("prometheus.yml").path
        try """
        global: {scrape_interval: 1s}
        scrape_configs:
          - job_name: flowstat
            static_configs: [{targets: ['127.0.0.1:\(agent.port)']}]

        """.write(toFile: config, atomically: true, encoding: .utf8)
        let webPort = try Agent.freePort()
        let prometheus = try Child(
            [
                "prometheus", "--config.file", config, "--web.listen-address", "127.0.0.1:\(webPort)",
                "--storage.tsdb.path", directory.appendingPathComponent("data").path,
            ], stderr: FileHandle.nullDevice)
        defer { prometheus.stop() }

        func api(_ path: String) throws -> [String: Any] {
            let result = try run(
                ["curl", "-sS", "--max-time", "5", "http://127.0.0.1:\(webPort)\(path)"], check: false)
            let json = try? JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
            return json?["data"] as? [String: Any] ?? [:]
        }
        var unit: String?
        var acked: [[String: Any]] = []
        for _ in 0..<60 where unit == nil || acked.isEmpty {
            usleep(500_000)
            let metadata = try api("/api/v1/metadata?metric=tcp_flow_rtt_seconds")
            unit = ((metadata["tcp_flow_rtt_seconds"] as? [[String: Any]])?.first?["unit"] as? String).flatMap {
                $0.isEmpty ? nil : $0
            }
            acked = try api("/api/v1/query?query=tcp_flow_bytes_acked_total")["result"] as? [[String: Any]] ?? []
        }
        // Units exist only in OpenMetrics: Prometheus took that format.
        #expect(unit == "seconds")
        #expect(acked.count == 3)
        let counterType =
            try api("/api/v1/metadata?metric=tcp_flow_bytes_acked")["tcp_flow_bytes_acked"] as? [[String: Any]]
        #expect(counterType?.first?["type"] as? String == "counter")

        // gzip: the agent logs each response's size on the wire; Prometheus' ones are a
        // fraction of the plain text (curl here asks for neither gzip nor OpenMetrics).
        let plainSize = try agent.get("/metrics").body.utf8.count
        prometheus.stop()
        agent.stop()
        let sizes = agent.stderrText.split(separator: "\n").filter { $0.contains("GET /metrics -> 200") }.compactMap {
            line -> Int? in
            guard let range = line.range(of: "bytes=") else { return nil }
            return Int(line[range.upperBound...].prefix { $0.isNumber })
        }
        #expect(sizes.contains { $0 < plainSize / 2 }, "sizes \(sizes), plain \(plainSize)")
    }

    @Test("a bad web config file stops start-up with the file, the key and a fix")
    func badWebConfig() throws {
        let credentials = try Credentials()
        for (text, expected) in [
            ("tls_server_config:\n  cert_file: server.crt\n  key_file: missing.key\n", "tls_server_config.key_file"),
            ("basic_auth_users:\n  prometheus: plaintext\n", "basic_auth_users.prometheus is not a bcrypt hash"),
            (
                "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  ciphers: [x]\n",
                "tls_server_config.ciphers is not a known key"
            ),
        ] {
            let file = credentials.directory.appendingPathComponent("bad.yml").path
            try text.write(toFile: file, atomically: true, encoding: .utf8)
            let result = try run(
                [
                    flowstatBinary, "serve", "--source", "fake", "--web.listen-address", "127.0.0.1:0",
                    "--web.config.file", file,
                ],
                check: false)
            #expect(result.status == 1)
            #expect(result.stderr.contains("flowstat: error: web config file \(file): \(expected)"), "\(result.stderr)")
        }
    }

    /// The status code of a raw response, if it starts with a status line.
    @Sendable static func status(_ response: [UInt8]) -> Int? {
        let text = String(decoding: response.prefix(12), as: UTF8.self)
        guard text.hasPrefix("HTTP/1.") else { return nil }
        return Int(text.dropFirst(9).prefix(3))
    }

    /// A client on a raw socket: for requests no real client would send.
    final class RawClient: @unchecked Sendable {
        let fd: Int32

        init(port: Int) throws {
            fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var timeout = timeval(tv_sec: 20, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = in_port_t(UInt16(port).bigEndian)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            guard connected == 0 else {
                close(fd)
                throw POSIXError(.ECONNREFUSED)
            }
        }

        /// Sends bytes; false once the server has closed.
        @discardableResult
        func send(_ bytes: [UInt8]) -> Bool {
            bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } == bytes.count
        }

        /// Reads until the server closes (or 20 s pass); returns what came.
        func readToEnd() -> [UInt8] {
            var result: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 65_536)
            while true {
                let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                if count <= 0 { return result }
                result += chunk[..<count]
            }
        }

        deinit { close(fd) }
    }

    @Test(
        "bad clients (malformed, oversized, slowloris, idle, bad methods, bodies) while a pipeline scrapes: every scrape succeeds"
    )
    func badInputBatch() throws {
        let agent = try Agent(["--source", "fake"])
        defer { agent.stop() }
        let port = agent.port

        // The pipeline: one GET /metrics after another until the batch is done.
        final class Tally: @unchecked Sendable {
            let lock = NSLock()
            var ok = 0
            var failures: [String] = []
            var problems: [String] = []
            var done = false
        }
        let tally = Tally()
        let pipeline = Thread {
            while !tally.lock.withLock({ tally.done }) {
                let outcome: String?
                do {
                    let result = try run(
                        [
                            "curl", "-sS", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}",
                            "http://127.0.0.1:\(port)/metrics",
                        ],
                        check: false)
                    outcome =
                        result.status == 0 && result.stdout.hasSuffix("\n200")
                            && result.stdout.contains("# HELP tcp_flows ")
                        ? nil : "curl exit \(result.status): \(result.stderr)\(result.stdout.suffix(4))"
                } catch {
                    outcome = "\(error)"
                }
                tally.lock.withLock {
                    if let outcome { tally.failures.append(outcome) } else { tally.ok += 1 }
                }
                usleep(50_000)
            }
        }
        pipeline.start()

        let group = DispatchGroup()
        func attack(_ name: String, count: Int, _ body: @escaping @Sendable (Int) throws -> String?) {
            for index in 0..<count {
                DispatchQueue.global().async(group: group) {
                    let problem: String?
                    do { problem = try body(index) } catch { problem = "\(error)" }
                    if let problem { tally.lock.withLock { tally.problems.append("\(name) #\(index): \(problem)") } }
                }
            }
        }
        let status = Self.status

        // Malformed request lines and binary garbage: 400, then closed.
        let garbage = [
            "GARBAGE\r\n\r\n", "GET\r\n\r\n", "GET / HTTP/9.9\r\n\r\n", "\u{0}\u{1}\u{2}\r\n\r\n",
            "GET / HTTP/1.1\r\nBad Header\r\n\r\n",
        ]
        attack("malformed", count: 25) { index in
            let client = try RawClient(port: port)
            client.send(Array(garbage[index % garbage.count].utf8))
            let code = status(client.readToEnd())
            return code == 400 ? nil : "got \(code.map(String.init) ?? "no response")"
        }
        // Oversized heads: 431 (or 400 from the decoder's own 80 KiB bound), then closed.
        attack("oversized", count: 10) { index in
            let client = try RawClient(port: port)
            let padding = String(repeating: "a", count: index % 2 == 0 ? 20_000 : 200_000)
            client.send(Array("GET /metrics HTTP/1.1\r\nHost: x\r\nX-Pad: \(padding)\r\n\r\n".utf8))
            let code = status(client.readToEnd())
            return code == 431 || code == 400 ? nil : "got \(code.map(String.init) ?? "no response")"
        }
        // Invalid and unsupported methods.
        attack("methods", count: 10) { index in
            let method = ["PUT", "DELETE", "BREW", "OPTIONS", "TRACE"][index % 5]
            let client = try RawClient(port: port)
            client.send(Array("\(method) /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".utf8))
            let code = status(client.readToEnd())
            return code == 405 || code == 400 ? nil : "got \(code.map(String.init) ?? "no response")"
        }
        // Bodies: refused with 413 before being read.
        attack("bodies", count: 10) { _ in
            let client = try RawClient(port: port)
            client.send(Array("POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n".utf8))
            client.send([UInt8](repeating: 0x61, count: 100_000))
            let code = status(client.readToEnd())
            return code == 413 ? nil : "got \(code.map(String.init) ?? "no response")"
        }
        // Slowloris: a head at one byte every 300 ms would take 15 s; the agent cuts it at 10 s.
        attack("slowloris", count: 15) { _ in
            let client = try RawClient(port: port)
            let head = Array("GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaa\r\n\r\n".utf8)
            for byte in head {
                guard client.send([byte]) else { break }
                usleep(300_000)
            }
            let code = status(client.readToEnd())
            return code == 408 ? nil : "not cut off with 408 (got \(code.map(String.init) ?? "nothing"))"
        }
        // Idle connections that never send a byte: closed by the agent, after a 408.
        attack("idle", count: 25) { _ in
            let client = try RawClient(port: port)
            let code = status(client.readToEnd())
            return code == 408 ? nil : "idle connection not closed with 408"
        }

        group.wait()
        tally.lock.withLock { tally.done = true }
        while pipeline.isExecuting { usleep(10_000) }
        let (ok, failures, problems) = tally.lock.withLock { (tally.ok, tally.failures, tally.problems) }
        #expect(problems.isEmpty, "\(problems)")
        #expect(failures.isEmpty, "\(failures.count) failed scrapes: \(failures.prefix(5))")
        #expect(ok >= 20, "only \(ok) scrapes in the batch")
        #expect(agent.process.isRunning)
        #expect(try agent.get("/health").status == 200)
    }
}
