// SPDX-License-Identifier: Apache-2.0

import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

#if canImport(Glibc)
import Glibc
#endif

/// The agent's HTTP endpoint: `/metrics`, `/health` and a landing page on one listening
/// socket, on SwiftNIO, with optional TLS and basic auth (`WebConfig`).
///
/// It owns one event loop thread for the connections, one pool thread for scrapes and
/// compression, and one for bcrypt when basic auth is on, so neither a slow snapshot nor
/// password checks stall accepting or answering other connections; writes to slow readers
/// are asynchronous. Start it with `start(configuration:pipeline:logger:)`; call
/// `shutdown()` before the process exits.
public final class MetricsServer: Sendable {
    /// Settings of the listener and its connections.
    public struct Configuration: Sendable {
        /// Where to listen.
        public var listenAddress: ListenAddress
        /// Largest request head (request line plus headers) answered normally; bigger ones
        /// get 431 and the connection is closed.
        public var maxRequestHeadBytes: Int
        /// Keep-alive connections idle for this long are closed.
        public var idleTimeout: TimeAmount
        /// A request head must arrive whole within this time of its first byte (or of the
        /// connection's start); slower clients get 408 and are closed.
        public var requestTimeout: TimeAmount
        /// A response must be written out within this time of its request, or the
        /// connection is closed (a client that stopped reading).
        public var responseTimeout: TimeAmount
        /// Connections served at once; more wait in the listen backlog.
        public var maxConnections: Int
        /// TLS and basic auth; `nil` for plain HTTP without auth.
        public var webConfig: WebConfig?
        /// Reloads the config for `POST /-/reload`, returning nil on success or why it was
        /// rejected; `nil` leaves the lifecycle endpoint off (403), as Prometheus does
        /// without `--web.enable-lifecycle`. Runs on a worker thread.
        public var reload: (@Sendable () -> String?)?

        public init(
            listenAddress: ListenAddress = .default,
            maxRequestHeadBytes: Int = 8 * 1024,
            idleTimeout: TimeAmount = .minutes(2),
            requestTimeout: TimeAmount = .seconds(10),
            responseTimeout: TimeAmount = .minutes(2),
            maxConnections: Int = 64,
            webConfig: WebConfig? = nil,
            reload: (@Sendable () -> String?)? = nil
        ) {
            self.listenAddress = listenAddress
            self.maxRequestHeadBytes = maxRequestHeadBytes
            self.idleTimeout = idleTimeout
            self.requestTimeout = requestTimeout
            self.responseTimeout = responseTimeout
            self.maxConnections = maxConnections
            self.webConfig = webConfig
            self.reload = reload
        }
    }

    /// What the server serves.
    public let pipeline: ExportPipeline
    /// The address the socket is bound to (with the real port when port 0 was asked for).
    public let localAddress: SocketAddress

    /// The bound port.
    public var port: Int { localAddress.port ?? 0 }

    /// Where the server listens, in `--web.listen-address` form with the bound port
    /// (`:8020` for every interface), for logs.
    public var listenAddress: ListenAddress {
        ListenAddress(host: configuredHost, port: port)
    }

    private let configuredHost: String?
    private let serverChannel: any Channel
    private let group: MultiThreadedEventLoopGroup
    private let threadPool: NIOThreadPool
    private let authPool: NIOThreadPool?
    private let logger: Logger
    private let isShutDown = NIOLockedValueBox(false)

    /// Whether connections are TLS.
    public let usesTLS: Bool

    private init(
        pipeline: ExportPipeline, configuredHost: String?, serverChannel: any Channel,
        group: MultiThreadedEventLoopGroup, threadPool: NIOThreadPool, authPool: NIOThreadPool?, usesTLS: Bool,
        logger: Logger
    ) {
        self.authPool = authPool
        self.usesTLS = usesTLS
        self.pipeline = pipeline
        self.configuredHost = configuredHost
        self.serverChannel = serverChannel
        self.localAddress = serverChannel.localAddress!
        self.group = group
        self.threadPool = threadPool
        self.logger = logger
    }

    /// Binds the listening socket and starts serving.
    ///
    /// Without a host (`:8020`) it listens on every IPv6 and IPv4 address, or on every IPv4
    /// address where IPv6 is disabled.
    ///
    /// - Throws: `MetricsServerError` naming the address and the reason (port in use,
    ///   permission, unknown host, …).
    public static func start(
        configuration: Configuration,
        pipeline: ExportPipeline,
        logger: Logger = Logger(label: "flowstat.http")
    ) async throws(MetricsServerError) -> MetricsServer {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let threadPool = NIOThreadPool(numberOfThreads: 1)
        threadPool.start()
        var auth: (check: BasicAuth, pool: NIOThreadPool)?
        if let users = configuration.webConfig?.basicAuthUsers, !users.isEmpty {
            let pool = NIOThreadPool(numberOfThreads: 1)
            pool.start()
            auth = (BasicAuth(users: users), pool)
        }

        let address = configuration.listenAddress
        do {
            let channel: any Channel
            if let host = address.host {
                channel = try await makeBootstrap(
                    group: group, threadPool: threadPool, auth: auth, pipeline: pipeline, configuration: configuration,
                    logger: logger, dualStack: false
                ).bind(host: host, port: address.port).get()
            } else {
                do {
                    channel = try await makeBootstrap(
                        group: group, threadPool: threadPool, auth: auth, pipeline: pipeline,
                        configuration: configuration,
                        logger: logger, dualStack: true
                    ).bind(to: SocketAddress(ipAddress: "::", port: address.port)).get()
                } catch let error as IOError where [EAFNOSUPPORT, EADDRNOTAVAIL].contains(error.errnoCode) {
                    logger.debug("IPv6 unavailable (\(error)), listening on IPv4 only")
                    channel = try await makeBootstrap(
                        group: group, threadPool: threadPool, auth: auth, pipeline: pipeline,
                        configuration: configuration,
                        logger: logger, dualStack: false
                    ).bind(host: "0.0.0.0", port: address.port).get()
                }
            }
            return MetricsServer(
                pipeline: pipeline, configuredHost: address.host, serverChannel: channel, group: group,
                threadPool: threadPool, authPool: auth?.pool, usesTLS: configuration.webConfig?.tls != nil,
                logger: logger)
        } catch {
            try? await threadPool.shutdownGracefully()
            try? await auth?.pool.shutdownGracefully()
            try? await group.shutdownGracefully()
            throw MetricsServerError(address: address, error: error)
        }
    }

    private static func makeBootstrap(
        group: MultiThreadedEventLoopGroup,
        threadPool: NIOThreadPool,
        auth: (check: BasicAuth, pool: NIOThreadPool)?,
        pipeline: ExportPipeline,
        configuration: Configuration,
        logger: Logger,
        dualStack: Bool
    ) -> ServerBootstrap {
        var bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            // Lets a restarted agent bind while old connections sit in TIME_WAIT; Linux still
            // refuses the bind while another socket listens on the port.
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
        if dualStack {
            // Explicit, so IPv4 clients are accepted whatever net.ipv6.bindv6only says.
            bootstrap = bootstrap.serverChannelOption(
                ChannelOptions.Types.SocketOption(level: .ipv6, name: .ipv6_v6only), value: 0)
        }
        let maxHeadBytes = configuration.maxRequestHeadBytes
        let maxConnections = configuration.maxConnections
        let timeouts = ConnectionGuard.Timeouts(
            request: configuration.requestTimeout, response: configuration.responseTimeout,
            idle: configuration.idleTimeout)
        let tlsContext = configuration.webConfig?.tls?.context
        let reload = configuration.reload
        return
            bootstrap
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        ConnectionLimiter(maxConnections: maxConnections, logger: logger))
                }
            }
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let handlers = channel.pipeline.syncOperations
                    if let tlsContext {
                        // A failed handshake (plain HTTP on this port, a bad client
                        // certificate) reaches errorCaught and closes the connection.
                        try handlers.addHandler(NIOSSLServerHandler(context: tlsContext))
                    }
                    try handlers.addHandler(ConnectionGuard(timeouts: timeouts, logger: logger))
                    try handlers.configureHTTPServerPipeline(withErrorHandling: true)
                    try handlers.addHandler(
                        HTTPRequestHandler(
                            pipeline: pipeline, threadPool: threadPool, maxRequestHeadBytes: maxHeadBytes,
                            auth: auth, reload: reload, logger: logger))
                }
            }
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
    }

    /// Stops serving: `/health` turns 503, the listener closes, a scrape in progress
    /// finishes, then open connections are closed. Safe to call more than once.
    public func shutdown() async {
        let first = isShutDown.withLockedValue { wasShutDown in
            defer { wasShutDown = true }
            return !wasShutDown
        }
        guard first else { return }
        pipeline.markStopping()
        try? await serverChannel.close().get()
        // The pool before the loop: a running scrape still needs the loop to answer.
        try? await threadPool.shutdownGracefully()
        try? await authPool?.shutdownGracefully()
        try? await group.shutdownGracefully()
        logger.debug("HTTP server stopped")
    }

    /// Returns when the listening socket has closed (after `shutdown()`, or if it failed).
    public func waitUntilClosed() async {
        try? await serverChannel.closeFuture.get()
    }
}
