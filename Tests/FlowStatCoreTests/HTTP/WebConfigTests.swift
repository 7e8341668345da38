// SPDX-License-Identifier: Apache-2.0

import CFlowStat
import Foundation
import Testing

@testable import FlowStatCore

/// A directory of its own for one test's files, removed afterwards.
final class TemporaryDirectory {
    let path: String

    init() throws {
        var template = Array((NSTemporaryDirectory() + "flowstat-http-XXXXXX").utf8CString)
        guard let created = mkdtemp(&template) else { throw POSIXError(.EIO) }
        path = String(cString: created)
    }

    @discardableResult
    func write(_ name: String, _ text: String) throws -> String {
        let file = path + "/" + name
        try text.write(toFile: file, atomically: true, encoding: .utf8)
        return file
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}

/// Runs a command and fails the test if it does not exit 0.
@discardableResult
func runTool(_ arguments: [String]) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = arguments
    let out = Pipe()
    process.standardOutput = out
    process.standardError = FileHandle.nullDevice
    try process.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
        throw TestHTTPConnection.Failure(
            description: "\(arguments.joined(separator: " ")) exited \(process.terminationStatus)")
    }
    return String(decoding: data, as: UTF8.self)
}

/// A self-signed certificate and key for 127.0.0.1 and localhost, made with openssl.
func makeCertificate(in directory: TemporaryDirectory, name: String = "server") throws -> (cert: String, key: String) {
    let cert = directory.path + "/\(name).crt"
    let key = directory.path + "/\(name).key"
    try runTool([
        "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=flowstat-test",
        "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
    ])
    return (cert, key)
}

/// A bcrypt hash made through the same libxcrypt the server checks with.
func bcrypt(_ password: String, cost: UInt32 = 5) -> String {
    var out = [CChar](repeating: 0, count: 128)
    precondition(fs_bcrypt_hash(password, cost, &out, out.count) == 0)
    return String(cString: out)
}

@Suite("Web config file and basic auth")
struct WebConfigTests {
    @Test("an empty file means plain HTTP without auth")
    func empty() throws {
        let config = try WebConfig.parse("", path: "web.yml")
        #expect(config.tls == nil)
        #expect(config.basicAuthUsers.isEmpty)
        #expect(try WebConfig.parse("# nothing\n", path: "web.yml").tls == nil)
    }

    @Test("TLS with relative paths, users with hashes")
    func full() throws {
        let directory = try TemporaryDirectory()
        _ = try makeCertificate(in: directory)
        let hash = bcrypt("secret")
        let path = try directory.write(
            "web.yml",
            """
            tls_server_config:
              cert_file: server.crt
              key_file: server.key
              min_version: TLS13
            basic_auth_users:
              prometheus: \(hash)
            """)
        let config = try WebConfig.load(path: path)
        #expect(config.tls?.certFile == directory.path + "/server.crt")
        #expect(config.tls?.clientAuth == .noClientCert)
        #expect(config.basicAuthUsers == ["prometheus": hash])
    }

    @Test("mistakes name the file, the key and the fix")
    func errors() throws {
        let directory = try TemporaryDirectory()
        let (cert, key) = try makeCertificate(in: directory)
        let (otherCert, _) = try makeCertificate(in: directory, name: "other")
        func error(_ text: String) -> WebConfigError? {
            do {
                _ = try WebConfig.parse(text, path: directory.path + "/web.yml")
                return nil
            } catch {
                return error
            }
        }
        let cases: [(String, String, String)] = [
            ("tls_config:\n  cert_file: x\n", "tls_config", "is not a known key"),
            (
                "tls_server_config:\n  cert_file: \(cert)\n  keyfile: \(key)\n", "tls_server_config.keyfile",
                "is not a known key"
            ),
            ("tls_server_config:\n  key_file: \(key)\n", "tls_server_config.cert_file", "is missing"),
            (
                "tls_server_config:\n  cert_file: nope.crt\n  key_file: \(key)\n", "tls_server_config.cert_file",
                "no such file"
            ),
            (
                "tls_server_config:\n  cert_file: \(key)\n  key_file: \(key)\n", "tls_server_config.cert_file",
                "cannot be loaded"
            ),
            (
                "tls_server_config:\n  cert_file: \(otherCert)\n  key_file: \(key)\n", "tls_server_config.key_file",
                "does not fit"
            ),
            (
                "tls_server_config:\n  cert_file: \(cert)\n  key_file: \(key)\n  min_version: TLS9\n",
                "tls_server_config.min_version", "is not a TLS version"
            ),
            (
                "tls_server_config:\n  cert_file: \(cert)\n  key_file: \(key)\n  client_auth_type: RequireAndVerifyClientCert\n",
                "tls_server_config.client_ca_file", "is missing"
            ),
            ("basic_auth_users:\n  alice: secret\n", "basic_auth_users.alice", "is not a bcrypt hash"),
            ("basic_auth_users: [alice]\n", "basic_auth_users", "must map user names"),
            ("http_server_config:\n  http2: false\n", "http_server_config", "is not supported"),
            ("- a\n- b\n", "", "must be a mapping"),
            ("a: [\n", "", "is not valid YAML"),
        ]
        for (text, key, problem) in cases {
            let found = try #require(error(text), "accepted: \(text)")
            #expect(found.key ?? "" == key, "\(text)")
            #expect(found.description.contains(problem), "\(found.description)")
            #expect(found.description.contains(directory.path + "/web.yml"))
            #expect(!found.fix.isEmpty)
        }
        #expect(throws: WebConfigError.self) { try WebConfig.load(path: directory.path + "/missing.yml") }
    }

    @Test("bcrypt: right password allowed, wrong and unknown denied; libxcrypt's $2a$, $2b$ and $2y$ all check")
    func basicAuth() {
        let hash = bcrypt("s3cret: with colon")
        let auth = BasicAuth(users: ["prometheus": hash, "other": bcrypt("x")])
        func header(_ user: String, _ password: String) -> String {
            "Basic " + Data("\(user):\(password)".utf8).base64EncodedString()
        }
        guard case .verify(let right) = auth.check(authorization: header("prometheus", "s3cret: with colon")) else {
            Issue.record("an unseen pair must be verified")
            return
        }
        #expect(auth.verify(right))
        // Cached now: no bcrypt on the next request.
        guard case .allowed = auth.check(authorization: header("prometheus", "s3cret: with colon")) else {
            Issue.record("a verified pair must be cached")
            return
        }
        guard case .verify(let wrong) = auth.check(authorization: header("prometheus", "s3cret")) else {
            Issue.record("an unseen wrong pair must be verified")
            return
        }
        #expect(!auth.verify(wrong))
        guard case .denied = auth.check(authorization: header("prometheus", "s3cret")) else {
            Issue.record("a failure is remembered for a short while")
            return
        }
        guard case .verify(let unknown) = auth.check(authorization: header("nobody", "s3cret: with colon")) else {
            Issue.record("an unknown user is verified against a decoy")
            return
        }
        #expect(!auth.verify(unknown))
        for missing in [
            nil, "", "Basic", "Basic !!!", "Bearer abc", "Basic " + Data("nocolon".utf8).base64EncodedString(),
        ] {
            guard case .denied = auth.check(authorization: missing) else {
                Issue.record("\(missing ?? "nil") must be denied")
                continue
            }
        }
        // The scheme name is case-insensitive.
        guard
            case .allowed = auth.check(
                authorization: "basic " + Data("prometheus:s3cret: with colon".utf8).base64EncodedString())
        else {
            Issue.record("lowercase scheme")
            return
        }
        // Go's bcrypt writes $2a$, htpasswd $2y$: the same hash under each prefix checks.
        for prefix in ["$2a$", "$2y$", "$2b$"] {
            let variant = prefix + hash.dropFirst(4)
            #expect(BasicAuth.isBcryptHash(variant))
            #expect(fs_password_matches("s3cret: with colon", variant) == 1, "\(prefix)")
            #expect(fs_password_matches("wrong", variant) == 0, "\(prefix)")
        }
        #expect(!BasicAuth.isBcryptHash("$1$abc$def"))
        #expect(!BasicAuth.isBcryptHash("secret"))
    }
}
