// SPDX-License-Identifier: Apache-2.0

import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

/// Reads the kubelet's pod list (`GET https://NODE:10250/pods`) in the background and keeps
/// `PodDirectory` up to date, so flows get pod names, namespaces and container names without
/// the scrape path ever waiting for the network.
///
/// Each refresh re-reads the service account's token (the kubelet accepts only a current one;
/// projected tokens rotate hourly) and the CA, and verifies the kubelet's certificate against
/// that CA and the URL's host (NIOSSL, the TLS stack the agent's own HTTPS uses). A refresh
/// that fails (unreachable, refused, not a pod list) leaves the last good list in place, is
/// counted in `status`, and is logged with its fix once per distinct problem. One thread of
/// its own; `stop()` ends it.
public final class KubeletClient: Sendable {
    public struct Settings: Sendable, Equatable {
        public var url: KubeletURL
        /// Seconds between the end of one refresh and the start of the next.
        public var refreshInterval: Double
        public var tokenFile: String
        public var caFile: String
        /// Seconds a refresh may take, connection included.
        public var timeout = 10.0
        /// Largest answer read (a node's pod list is well under a megabyte at 110 pods).
        public var maxBytes = 64 << 20

        public init(url: KubeletURL, refreshInterval: Double, tokenFile: String, caFile: String) {
            self.url = url
            self.refreshInterval = refreshInterval
            self.tokenFile = tokenFile
            self.caFile = caFile
        }

        /// The settings `config` asks for, or nil when no URL is configured and the
        /// environment names no node (not on Kubernetes).
        public init?(config: FlowStatConfig.Kubelet, environment: (String) -> String? = KubeletURL.environment) {
            guard let url = config.url ?? KubeletURL.fromEnvironment(environment) else { return nil }
            self.init(
                url: url, refreshInterval: config.refreshInterval, tokenFile: config.tokenFile, caFile: config.caFile)
        }
    }

    public let settings: Settings
    private let directory: PodDirectory
    private let logger: Logger
    private let group: MultiThreadedEventLoopGroup

    private struct State {
        var status = KubeletStatus()
        var task: RepeatedTask?
        /// The problem last logged, so a kubelet down for hours logs once, not every refresh.
        var lastLogged: String?
        var stopped = false
    }

    private let state = NIOLockedValueBox(State())

    public init(settings: Settings, directory: PodDirectory, logger: Logger) {
        self.settings = settings
        self.directory = directory
        self.logger = logger
        self.group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    }

    /// What the refreshes did so far, for the self-metrics.
    public var status: KubeletStatus { state.withLockedValue { $0.status } }

    /// Refreshes now and then every `refreshInterval` seconds until `stop()`.
    public func start() {
        let loop = group.next()
        let interval = TimeAmount.nanoseconds(Int64(settings.refreshInterval * 1e9))
        let task = loop.scheduleRepeatedAsyncTask(initialDelay: .zero, delay: interval) { [self] _ in
            refresh(on: loop)
        }
        let stopped = state.withLockedValue { state in
            state.task = task
            return state.stopped
        }
        if stopped { task.cancel() }
        logger.info("reading pod names from the kubelet", metadata: ["url": "\(settings.url)"])
    }

    /// Ends the refreshes and the client's thread; the pod list stays as it is.
    public func stop() {
        let task = state.withLockedValue { state in
            state.stopped = true
            defer { state.task = nil }
            return state.task
        }
        task?.cancel()
        group.shutdownGracefully { _ in }
    }

    /// One refresh; the future completes (never fails) once it is recorded.
    public func refresh() -> EventLoopFuture<Void> {
        refresh(on: group.next())
    }

    private func refresh(on loop: any EventLoop) -> EventLoopFuture<Void> {
        fetch(on: loop).flatMapThrowing { body in
            // On the client's own thread: parsing a large list never delays a scrape.
            do {
                return try PodList.parse(String(buffer: body))
            } catch {
                throw KubeletError(
                    problem: "the kubelet's answer from \(self.settings.url) is not a pod list (\(error))",
                    fix: "point flowstat.kubelet.url at the kubelet's /pods (port \(KubeletURL.kubeletPort))")
            }
        }.map { pods in
            self.directory.replace(with: pods)
            self.record(.success(pods.count))
        }.recover { error in
            self.record(.failure(error as? KubeletError ?? KubeletError(error, settings: self.settings)))
        }
    }

    private func record(_ outcome: Result<Int, KubeletError>) {
        // Logged: the first success, a recovery, and each new problem (not every retry of it).
        let logged: Result<Int, KubeletError>? = state.withLockedValue { state in
            switch outcome {
            case .success(let count):
                let first = state.status.successes == 0 || state.lastLogged != nil
                state.status.successes += 1
                state.status.pods = count
                state.status.lastSuccess = SystemClock.unixSeconds()
                state.status.lastError = nil
                state.lastLogged = nil
                return first ? outcome : nil
            case .failure(let error):
                state.status.failures += 1
                state.status.lastError = error
                defer { state.lastLogged = error.problem }
                return state.lastLogged == error.problem ? nil : outcome
            }
        }
        switch logged {
        case .success(let count):
            logger.info("kubelet pod list read", metadata: ["pods": "\(count)", "url": "\(settings.url)"])
        case .failure(let error):
            logger.warning(
                "kubelet pod list refresh failed: \(error.problem); fix: \(error.fix); keeping the last good list (\(status.pods) pods)"
            )
        case nil:
            break
        }
    }

    /// GET of the pod list: the body of a 200 answer; errors say what to fix.
    private func fetch(on loop: any EventLoop) -> EventLoopFuture<ByteBuffer> {
        let settings = settings
        let token: String
        let tls: NIOSSLContext
        do {
            token = try Self.readToken(settings.tokenFile)
            tls = try Self.tlsContext(caFile: settings.caFile)
        } catch {
            return loop.makeFailedFuture(error)
        }
        let url = settings.url
        let promise = loop.makePromise(of: KubeletResponse.self)
        let bootstrap = ClientBootstrap(group: loop)
            .connectTimeout(.nanoseconds(Int64(settings.timeout * 1e9)))
            .channelInitializer { channel in
                do {
                    // An IP literal is checked against the certificate's IP SANs (no SNI).
                    let handler = try NIOSSLClientHandler(
                        context: tls, serverHostname: url.hostIsIPAddress ? nil : url.host)
                    let operations = channel.pipeline.syncOperations
                    try operations.addHandler(handler)
                    try operations.addHTTPClientHandlers()
                    try operations.addHandler(KubeletResponseReader(promise: promise, maxBytes: settings.maxBytes))
                    return channel.eventLoop.makeSucceededVoidFuture()
                } catch {
                    return channel.eventLoop.makeFailedFuture(error)
                }
            }
        let deadline = loop.scheduleTask(in: .nanoseconds(Int64(settings.timeout * 1e9))) {
            promise.fail(
                KubeletError(
                    problem: "the kubelet at \(url.authority) did not answer within \(settings.timeout) s",
                    fix: "check that the kubelet is up and that nothing drops traffic to port \(url.port)"))
        }
        bootstrap.connect(host: url.host, port: url.port).whenComplete { result in
            switch result {
            case .failure(let error):
                promise.fail(error)
            case .success(let channel):
                var head = HTTPRequestHead(version: .http1_1, method: .GET, uri: url.path)
                head.headers.add(name: "Host", value: url.authority)
                head.headers.add(name: "Authorization", value: "Bearer \(token)")
                head.headers.add(name: "Accept", value: "application/json")
                head.headers.add(name: "User-Agent", value: "flowstat/\(BuildInfo.current.version)")
                head.headers.add(name: "Connection", value: "close")
                channel.write(HTTPClientRequestPart.head(head), promise: nil)
                channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
                promise.futureResult.whenComplete { _ in channel.close(promise: nil) }
            }
        }
        return promise.futureResult.always { _ in deadline.cancel() }.flatMapThrowing { response in
            guard response.status == .ok else { throw KubeletError(status: response.status, url: url) }
            return response.body
        }
    }

    static func readToken(_ path: String) throws(KubeletError) -> String {
        let text: String
        do {
            text = try SystemFile.readText(path)
        } catch {
            throw KubeletError(
                problem: "cannot read the service account token \(path) (\(error))",
                fix:
                    "run with a service account whose token is mounted (automountServiceAccountToken: true), or set flowstat.kubelet.tokenFile"
            )
        }
        let token = text.trimmingWhitespace
        guard !token.isEmpty else {
            throw KubeletError(problem: "the service account token \(path) is empty", fix: "check the token's mount")
        }
        return token
    }

    static func tlsContext(caFile: String) throws(KubeletError) -> NIOSSLContext {
        let roots: [NIOSSLCertificate]
        do {
            roots = try NIOSSLCertificate.fromPEMFile(caFile)
        } catch {
            throw KubeletError(
                problem: "cannot read the CA certificates in \(caFile) (\(error))",
                fix: "mount the cluster CA (the service account's ca.crt), or set flowstat.kubelet.caFile")
        }
        guard !roots.isEmpty else {
            throw KubeletError(problem: "no certificate in \(caFile)", fix: "set flowstat.kubelet.caFile to a PEM file")
        }
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.trustRoots = .certificates(roots)
        configuration.certificateVerification = .fullVerification
        configuration.minimumTLSVersion = .tlsv12
        do {
            return try NIOSSLContext(configuration: configuration)
        } catch {
            throw KubeletError(problem: "cannot set up TLS with \(caFile) (\(error))", fix: "check the CA file")
        }
    }
}

/// What the kubelet refreshes did, for `flowstat_kubelet_*`.
public struct KubeletStatus: Sendable, Hashable {
    /// When a pod list was last read, Unix seconds; nil before the first.
    public var lastSuccess: Double?
    /// Refreshes that failed since start.
    public var failures: UInt64 = 0
    /// Refreshes that succeeded since start.
    public var successes: UInt64 = 0
    /// Pods in the list in use (the last good one).
    public var pods = 0
    /// Why the last refresh failed; nil when it succeeded.
    public var lastError: KubeletError?

    public init() {}
}

/// A failed refresh: what went wrong and what to change.
public struct KubeletError: Error, Sendable, Hashable, CustomStringConvertible {
    public var problem: String
    public var fix: String

    public init(problem: String, fix: String) {
        self.problem = problem
        self.fix = fix
    }

    public var description: String { "\(problem); fix: \(fix)" }

    /// An answer other than 200.
    init(status: HTTPResponseStatus, url: KubeletURL) {
        switch status.code {
        case 401:
            self.init(
                problem: "the kubelet at \(url.authority) refused the service account token (HTTP 401 Unauthorized)",
                fix:
                    "the token is invalid or expired: check the pod's service account token mount, and that the kubelet accepts bearer tokens (authentication.webhook.enabled)"
            )
        case 403:
            self.init(
                problem: "the kubelet at \(url.authority) forbids GET \(url.path) (HTTP 403 Forbidden)",
                fix:
                    "grant the service account get on nodes/proxy (the ClusterRole in deploy/kubernetes/daemonset.yaml) and bind it"
            )
        default:
            self.init(
                problem:
                    "the kubelet at \(url.authority) answered GET \(url.path) with HTTP \(status.code) \(status.reasonPhrase)",
                fix: "point flowstat.kubelet.url at the kubelet's /pods (port \(KubeletURL.kubeletPort))")
        }
    }

    /// A connection or TLS failure.
    init(_ error: any Error, settings: KubeletClient.Settings) {
        let url = settings.url
        let text = String(describing: error)
        if let extra = error as? NIOSSLExtraError, extra == .failedToValidateHostname {
            self.init(
                problem: "the kubelet's certificate does not name \(url.host)",
                fix:
                    "set flowstat.kubelet.url to a name or address the kubelet's serving certificate holds (NODE_NAME or NODE_IP)"
            )
        } else if error is NIOSSLError || text.contains("CERTIFICATE_VERIFY_FAILED") {
            self.init(
                problem:
                    "TLS with the kubelet at \(url.authority) failed: its certificate is not signed by the CA in \(settings.caFile) (\(text))",
                fix:
                    "have the cluster CA sign the kubelet's serving certificate (kubelet serverTLSBootstrap: true), or set flowstat.kubelet.caFile to the CA that signed it"
            )
        } else {
            self.init(
                problem: "cannot connect to the kubelet at \(url.authority) (\(text))",
                fix:
                    "run the DaemonSet with NODE_IP from status.hostIP (or set flowstat.kubelet.url), and check the kubelet listens on port \(url.port)"
            )
        }
    }
}

struct KubeletResponse: Sendable {
    var status: HTTPResponseStatus
    var body: ByteBuffer
}

/// Collects one HTTP answer, at most `maxBytes` of body.
private final class KubeletResponseReader: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart

    private let promise: EventLoopPromise<KubeletResponse>
    private let maxBytes: Int
    private var status: HTTPResponseStatus = .ok
    private var body = ByteBuffer()

    init(promise: EventLoopPromise<KubeletResponse>, maxBytes: Int) {
        self.promise = promise
        self.maxBytes = maxBytes
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            status = head.status
        case .body(var part):
            guard body.readableBytes + part.readableBytes <= maxBytes else {
                promise.fail(
                    KubeletError(
                        problem: "the kubelet's answer is larger than \(maxBytes) bytes",
                        fix: "point flowstat.kubelet.url at the kubelet's /pods"))
                context.close(promise: nil)
                return
            }
            body.writeBuffer(&part)
        case .end:
            promise.succeed(KubeletResponse(status: status, body: body))
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        promise.fail(error)
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        promise.fail(
            KubeletError(
                problem: "the kubelet closed the connection before it answered",
                fix: "check the kubelet's log, and that flowstat.kubelet.url is the kubelet's HTTPS port"))
        context.fireChannelInactive()
    }
}

extension String {
    fileprivate var trimmingWhitespace: String {
        let bytes = Array(utf8)
        let isSpace: (UInt8) -> Bool = { $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }
        guard let first = bytes.firstIndex(where: { !isSpace($0) }), let last = bytes.lastIndex(where: { !isSpace($0) })
        else { return "" }
        return String(decoding: bytes[first...last], as: UTF8.self)
    }
}
