// SPDX-License-Identifier: Apache-2.0

import NIOSSL
import Yams

#if canImport(Glibc)
import Glibc
#endif

/// The `--web.config.file`: TLS and basic auth, in the YAML format Prometheus exporters
/// share (exporter-toolkit), so one file serves node_exporter and flowstat alike.
///
/// ```yaml
/// tls_server_config:
///   cert_file: server.crt          # relative paths are relative to this file
///   key_file: server.key
///   client_auth_type: RequireAndVerifyClientCert   # optional
///   client_ca_file: clients.crt                     # with a verifying client_auth_type
///   min_version: TLS12                              # optional: TLS10 … TLS13
/// basic_auth_users:
///   prometheus: $2y$10$…           # bcrypt hash, e.g. from `htpasswd -nbBC 10 "" PASSWORD`
/// ```
///
/// Loading checks everything a request would trip over later: unknown keys, unreadable or
/// mismatched certificate and key, hashes that are not bcrypt. The toolkit's keys flowstat
/// does not implement (`http_server_config`, cipher and curve lists) are refused by name
/// rather than silently ignored.
public struct WebConfig: Sendable {
    /// Where the configuration came from, for messages.
    public var path: String
    /// The TLS context to serve with, or `nil` for plain HTTP.
    public var tls: TLS?
    /// Users and their bcrypt hashes; empty means no authentication.
    public var basicAuthUsers: [String: String]

    /// TLS settings, already turned into a context.
    public struct TLS: Sendable {
        public var certFile: String
        public var keyFile: String
        public var clientAuth: ClientAuth
        let context: NIOSSLContext
    }

    /// `client_auth_type` values flowstat supports.
    public enum ClientAuth: String, Sendable, CaseIterable {
        case noClientCert = "NoClientCert"
        case verifyClientCertIfGiven = "VerifyClientCertIfGiven"
        case requireAndVerifyClientCert = "RequireAndVerifyClientCert"
    }

    /// Reads and checks the file at `path`.
    ///
    /// - Throws: `WebConfigError` naming the file, the key and the fix.
    public static func load(path: String) throws(WebConfigError) -> WebConfig {
        let text: String
        do {
            text = try readFile(path)
        } catch {
            throw WebConfigError(
                path: path, key: nil, problem: "cannot be read: \(error)", fix: "check the path and its permissions")
        }
        return try parse(text, path: path)
    }

    /// Parses configuration text; `path` names it in errors and anchors relative paths.
    public static func parse(_ text: String, path: String) throws(WebConfigError) -> WebConfig {
        func fail(_ key: String?, _ problem: String, _ fix: String) -> WebConfigError {
            WebConfigError(path: path, key: key, problem: problem, fix: fix)
        }
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch {
            throw fail(nil, "is not valid YAML: \(error)", "fix the YAML syntax")
        }
        var config = WebConfig(path: path, tls: nil, basicAuthUsers: [:])
        guard let root, !root.isNull else { return config }  // an empty file: plain HTTP, no auth
        guard let top = root.stringKeyed else {
            throw fail(
                nil, "must be a mapping of keys", "write tls_server_config: and/or basic_auth_users: at the top level")
        }
        for key in top.keys.sorted() {
            switch key {
            case "tls_server_config", "basic_auth_users": break
            case "http_server_config":
                throw fail(
                    key, "is not supported by flowstat", "remove it (flowstat serves HTTP/1.1 without extra headers)")
            default:
                throw fail(key, "is not a known key", "use tls_server_config and basic_auth_users")
            }
        }

        if let users = top["basic_auth_users"], !users.isNull {
            guard let users = users.stringKeyed else {
                throw fail(
                    "basic_auth_users", "must map user names to bcrypt hashes", "write `name: $2y$10$…` lines under it")
            }
            for (user, hash) in users {
                guard let hash = hash.scalar?.string, BasicAuth.isBcryptHash(hash) else {
                    throw fail(
                        "basic_auth_users.\(user)", "is not a bcrypt hash",
                        "put a bcrypt hash ($2a$, $2b$ or $2y$), e.g. from `htpasswd -nbBC 10 \"\" PASSWORD`, never the password"
                    )
                }
                guard !user.contains(":") else {
                    throw fail(
                        "basic_auth_users.\(user)", "contains a colon",
                        "choose a user name without \":\" (basic auth splits on it)")
                }
                config.basicAuthUsers[user] = hash
            }
        }

        if let tls = top["tls_server_config"], !tls.isNull {
            guard let tls = tls.stringKeyed else {
                throw fail("tls_server_config", "must be a mapping", "give it cert_file and key_file")
            }
            config.tls = try parseTLS(tls, path: path)
        }
        return config
    }

    private static func parseTLS(_ tls: [String: Node], path: String) throws(WebConfigError) -> TLS {
        func fail(_ key: String, _ problem: String, _ fix: String) -> WebConfigError {
            WebConfigError(path: path, key: "tls_server_config.\(key)", problem: problem, fix: fix)
        }
        let known = ["cert_file", "key_file", "client_auth_type", "client_ca_file", "min_version", "max_version"]
        let unsupported = [
            "cert", "key", "client_allowed_sans", "cipher_suites", "curve_preferences", "prefer_server_cipher_suites",
        ]
        for key in tls.keys.sorted() where !known.contains(key) {
            if unsupported.contains(key) {
                throw fail(key, "is not supported by flowstat", "remove it; give certificates as cert_file/key_file")
            }
            throw fail(key, "is not a known key", "use one of \(known.joined(separator: ", "))")
        }
        func string(_ key: String) throws(WebConfigError) -> String? {
            guard let value = tls[key], !value.isNull else { return nil }
            guard let text = value.scalar?.string, !text.isEmpty else {
                throw fail(key, "must be a non-empty string", "write a file path or value")
            }
            return text
        }
        guard let certFile = try string("cert_file") else {
            throw fail("cert_file", "is missing", "give the PEM certificate (chain) file")
        }
        guard let keyFile = try string("key_file") else {
            throw fail("key_file", "is missing", "give the PEM private key file")
        }
        let certPath = resolve(certFile, relativeTo: path)
        let keyPath = resolve(keyFile, relativeTo: path)

        var clientAuth = ClientAuth.noClientCert
        if let text = try string("client_auth_type") {
            guard let value = ClientAuth(rawValue: text) else {
                throw fail(
                    "client_auth_type", "\"\(text)\" is not supported",
                    "use one of \(ClientAuth.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            clientAuth = value
        }
        let clientCA = try string("client_ca_file").map { resolve($0, relativeTo: path) }
        if clientAuth != .noClientCert, clientCA == nil {
            throw fail(
                "client_ca_file", "is missing",
                "give the CA file that signs client certificates for \(clientAuth.rawValue)")
        }
        if clientAuth == .noClientCert, clientCA != nil {
            throw fail(
                "client_auth_type", "is NoClientCert while client_ca_file is set",
                "set client_auth_type to RequireAndVerifyClientCert or VerifyClientCertIfGiven, or remove client_ca_file"
            )
        }
        func version(_ key: String) throws(WebConfigError) -> TLSVersion? {
            guard let text = try string(key) else { return nil }
            switch text {
            case "TLS10": return .tlsv1
            case "TLS11": return .tlsv11
            case "TLS12": return .tlsv12
            case "TLS13": return .tlsv13
            default: throw fail(key, "\"\(text)\" is not a TLS version", "use TLS10, TLS11, TLS12 or TLS13")
            }
        }

        let chain: [NIOSSLCertificate]
        do {
            chain = try NIOSSLCertificate.fromPEMFile(certPath)
        } catch {
            throw fail(
                "cert_file", "\(certPath) cannot be loaded: \(describe(error, path: certPath))",
                "give a readable PEM certificate file")
        }
        guard !chain.isEmpty else {
            throw fail("cert_file", "\(certPath) holds no certificate", "give a PEM file with BEGIN CERTIFICATE blocks")
        }
        let key: NIOSSLPrivateKey
        do {
            key = try NIOSSLPrivateKey(file: keyPath, format: .pem)
        } catch {
            throw fail(
                "key_file", "\(keyPath) cannot be loaded: \(describe(error, path: keyPath))",
                "give a readable, unencrypted PEM private key")
        }
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
        configuration.minimumTLSVersion = try version("min_version") ?? .tlsv12
        configuration.maximumTLSVersion = try version("max_version")
        switch clientAuth {
        case .noClientCert: configuration.certificateVerification = .none
        case .verifyClientCertIfGiven: configuration.certificateVerification = .optionalVerification
        case .requireAndVerifyClientCert: configuration.certificateVerification = .noHostnameVerification
        }
        if let clientCA {
            guard access(clientCA, R_OK) == 0 else {
                throw fail("client_ca_file", "\(clientCA) cannot be read", "check the path and its permissions")
            }
            configuration.trustRoots = .file(clientCA)
            configuration.sendCANameList = true
        }
        let context: NIOSSLContext
        do {
            context = try NIOSSLContext(configuration: configuration)
        } catch {
            throw fail(
                "key_file", "\(keyPath) does not fit \(certPath), or a file is invalid: \(error)",
                "give the private key that belongs to the first certificate in cert_file")
        }
        return TLS(certFile: certPath, keyFile: keyPath, clientAuth: clientAuth, context: context)
    }

    /// `file` as given when absolute, else next to the configuration file.
    private static func resolve(_ file: String, relativeTo configPath: String) -> String {
        guard !file.hasPrefix("/"), let slash = configPath.lastIndex(of: "/") else { return file }
        return String(configPath[...slash]) + file
    }

    private static func describe(_ error: any Error, path: String) -> String {
        if access(path, F_OK) != 0 { return "no such file" }
        if access(path, R_OK) != 0 { return "permission denied" }
        return "not valid PEM (\(error))"
    }

    /// The file as text; at most 1 MiB (a certificate chain or a user list is far less).
    private static func readFile(_ path: String) throws -> String {
        do {
            return try SystemFile.readText(path, limit: 1 << 20)
        } catch {
            throw FileError(code: error.errno)
        }
    }

    private struct FileError: Error, CustomStringConvertible {
        var code: Int32
        var description: String { String(cString: strerror(code)) }
    }
}

extension Node {
    /// `key:` with no value, or `~`/`null`.
    fileprivate var isNull: Bool { null != nil }

    /// A mapping's entries by their scalar keys (a later duplicate wins), or `nil` if this
    /// is not a mapping.
    fileprivate var stringKeyed: [String: Node]? {
        guard let mapping else { return nil }
        var result: [String: Node] = [:]
        for (key, value) in mapping {
            result[key.scalar?.string ?? String(describing: key)] = value
        }
        return result
    }
}

/// A `--web.config.file` that cannot be used.
public struct WebConfigError: Error, CustomStringConvertible, Sendable {
    public var path: String
    /// The key at fault (`tls_server_config.cert_file`), or `nil` for the whole file.
    public var key: String?
    public var problem: String
    /// What the operator should do.
    public var fix: String

    /// `web config file PATH: KEY PROBLEM`, without the fix.
    public var description: String {
        if let key { return "web config file \(path): \(key) \(problem)" }
        return "web config file \(path) \(problem)"
    }
}
