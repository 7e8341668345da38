// SPDX-License-Identifier: Apache-2.0

import ArgumentParser
import FlowStatCore
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// `flowstat serve`: open the flow source, serve HTTP until SIGINT or SIGTERM, then detach.
struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve per-flow TCP metrics over HTTP (/metrics, /health, /)."
    )

    @Option(
        name: [.short, .customLong("config")],
        help: ArgumentHelp(
            "YAML config file (the seed exporter's 3.x or 2.x schema, plus flowstat's section).",
            discussion: "Default: config.yml in the working directory if it exists, else built-in defaults."),
        completion: .file())
    var configPath: String?

    @Option(
        name: .customLong("create-config"), help: "Write a commented sample config to FILE and exit.",
        completion: .file())
    var createConfig: String?

    @Flag(help: "With --create-config: overwrite FILE if it exists.")
    var force = false

    @Option(
        name: .customLong("web.listen-address"),
        help: "Address to listen on: :PORT (all interfaces), HOST:PORT or [IPV6]:PORT (default: config, else :8020).")
    var listenAddress: String?

    @Option(name: [.short, .long], help: "Port to listen on; overrides the port of --web.listen-address.")
    var port: Int?

    @Option(
        name: [.customLong("log.level"), .customLong("log-level")],
        help: "Least severe messages to log: debug, info, warning or error.")
    var logLevel = LogLevelOption.info

    @OptionGroup var sourceFlags: SourceFlags

    @Flag(help: "Add a netns label to every flow, not only to 4-tuples seen in several network namespaces.")
    var netnsLabel = false

    @Option(
        help:
            "Metric names and units: flowstat, or ss-exporter (prometheus_ss_exporter's, for its dashboards) (default: config, else flowstat)."
    )
    var compat: OutputMode?

    @Option(
        name: .customLong("label-folding"),
        help:
            "Per-flow labels: none or raw_endpoint (one series per flow), pid_condensed (per process and peer) (default: config, else none)."
    )
    var labelFolding: LabelFolding?

    @Option(
        name: .customLong("cardinality.max-flows"),
        help:
            "Most flows exported with their own series (0: all); the rest fold into tcp_peer_* aggregates (default: config, else 2000)."
    )
    var maxFlows: Int?

    @Option(
        name: .customLong("cardinality.rank-by"),
        help:
            "Which flows keep their own series under the cap: bytes, retransmits or rtt (default: config, else bytes).")
    var rankBy: FlowRank?

    @Option(
        name: .customLong("cardinality.max-aggregates"),
        help:
            "Most (peer, port) aggregate series; past it peers fold into peer=\"other\", then ports (default: config, else 500)."
    )
    var maxAggregates: Int?

    @Flag(
        name: .customLong("web.enable-lifecycle"),
        help: "Serve POST /-/reload, which re-reads the config file as SIGHUP does.")
    var enableLifecycle = false

    @Option(
        name: .customLong("web.config.file"),
        help: "YAML file with TLS and basic auth settings, in the exporter-toolkit format (see README).")
    var webConfigFile: String?

    @Option(
        name: .customLong("run-as"),
        help: ArgumentHelp(
            "Once the flow source is open and the port bound, switch to this user and drop every capability (start as root).",
            valueName: "user[:group]"))
    var runAs: String?

    func run() async throws {
        let logger = bootstrapLogging(level: logLevel.level)
        do {
            if let createConfig {
                try writeSampleConfig(to: createConfig, force: force)
                print("wrote a sample config to \(createConfig)")
                return
            }
            MemoryReturn.returnLargeBlocks()
            try await serve(logger: logger)
        } catch let error as StartupError {
            // One line, problem and fix, instead of ArgumentParser's "Error:" and usage text.
            error.report()
            throw ExitCode.failure
        }
    }

    private func serve(logger: Logger) async throws {
        // First, so that a signal during start-up (while BPF programs are being attached)
        // also takes the graceful path: it is handled as soon as the server runs.
        let signals = SignalNotifier(signals: [SIGINT, SIGTERM])
        // Caught from the start: SIGHUP's default action would end the agent.
        let reloads = SignalNotifier(signals: [SIGHUP], exitOnRepeat: false)
        let file = ConfigFile(explicitPath: configPath, overrides: try overrides())
        let config = try file.load(logger: logger)
        var webConfig: WebConfig?
        if let webConfigFile {
            do {
                webConfig = try WebConfig.load(path: webConfigFile)
            } catch {
                throw StartupError(problem: error.description, fix: error.fix)
            }
        }

        let runAsUser = try runAs.map(RunAsUser.init(parsing:))
        try runAsUser?.checkCanSwitch()

        // --run-as drops CAP_SYS_ADMIN, which reading other namespaces' flows needs.
        let flowSource = try openSource(
            config: config, keepsNamespaceAccess: runAs == nil, logger: Logger(label: "flowstat.source"))
        let pipeline = ExportPipeline(source: flowSource, config: config)
        defer { pipeline.stop() }
        let reloader = ConfigReloader(pipeline: pipeline, file: file, loaded: config, logger: logger)
        let reloadTask = Task {
            for await _ in reloads.stream {
                logger.info("received SIGHUP, reloading the config")
                reloader.reload()
            }
        }
        defer { reloadTask.cancel() }

        var lifecycleReload: (@Sendable () -> String?)?
        if enableLifecycle {
            lifecycleReload = { @Sendable [reloader] in reloader.reload() }
        }
        let server: MetricsServer
        do {
            server = try await MetricsServer.start(
                configuration: MetricsServer.Configuration(
                    listenAddress: config.listenAddress, webConfig: webConfig, reload: lifecycleReload),
                pipeline: pipeline,
                logger: Logger(label: "flowstat.http"))
        } catch {
            flowSource.shutdown()
            throw StartupError(problem: error.description, fix: error.suggestedFix)
        }

        do {
            // Last step of start-up: everything privileged (BPF, a low port) is open by now.
            try runAsUser?.switchTo(source: flowSource, logger: logger)
        } catch {
            await server.shutdown()
            flowSource.shutdown()
            throw error
        }

        let hooks = flowSource.info.attachedHooks.map { "\($0.name)/\($0.variant)" }
        logger.info(
            "serving \(server.usesTLS ? "HTTPS" : "HTTP") on \(server.listenAddress)",
            metadata: ["source": "\(flowSource.info.kind)", "hooks": "\(hooks.joined(separator: ","))"])

        let stop = await waitForStop(signals: signals.stream, server: server, logger: logger)
        flowSource.shutdown()
        logger.info("stopped")
        if case .serverClosed = stop { throw ExitCode.failure }
    }

    /// Every flag that sets a config value, as changes to the config; checked once, applied
    /// at start-up and at every reload.
    private func overrides() throws -> @Sendable (inout FlowStatConfig) -> Void {
        if let maxFlows, !FlowStatConfig.maxFlowsRange.contains(maxFlows) {
            throw StartupError(
                problem: "--cardinality.max-flows \(maxFlows) is out of range",
                fix: "use 0 (no cap) or a positive number up to \(FlowStatConfig.maxFlowsRange.upperBound)")
        }
        if let maxAggregates, !FlowStatConfig.maxAggregatesRange.contains(maxAggregates) {
            throw StartupError(
                problem: "--cardinality.max-aggregates \(maxAggregates) is out of range",
                fix:
                    "use a positive number up to \(FlowStatConfig.maxAggregatesRange.upperBound); 1 folds every aggregate into peer=\"other\",port=\"other\""
            )
        }
        let listen: ListenAddress?
        do {
            listen = try listenAddress.map { try ListenAddress(parsing: $0) }
        } catch {
            throw StartupError(
                problem: "\(error)", fix: "write --web.listen-address as :8020, 127.0.0.1:8020 or [::1]:8020")
        }
        if let port, !(0...65_535).contains(port) {
            throw StartupError(
                problem: "port \(port) is out of range", fix: "use -p with a port from 1 to 65535 (0 picks a free one)")
        }
        let source = try sourceFlags.overrides()
        let (netnsLabel, compat, labelFolding, maxFlows, rankBy, maxAggregates, port) =
            (netnsLabel, compat, labelFolding, maxFlows, rankBy, maxAggregates, port)
        return { config in
            source(&config)
            if netnsLabel { config.labels.netns = true }
            if let compat { config.output = compat }
            if let labelFolding { config.labelFolding = labelFolding }
            if let maxFlows { config.cardinality.maxFlows = maxFlows }
            if let rankBy { config.cardinality.rankBy = rankBy }
            if let maxAggregates { config.cardinality.maxAggregates = maxAggregates }
            if let listen { config.listenAddress = listen }
            if let port { config.listenAddress = config.listenAddress.withPort(port) }
        }
    }

    private enum Stop {
        case signal(Int32)
        case serverClosed
    }

    /// Waits for the first SIGINT/SIGTERM, or for the listener to close by itself, and
    /// returns once the server has shut down.
    private func waitForStop(signals: AsyncStream<Int32>, server: MetricsServer, logger: Logger) async -> Stop {
        await withTaskGroup(of: Stop.self) { group in
            group.addTask {
                for await number in signals { return .signal(number) }
                return .serverClosed  // Only reached when cancelled.
            }
            group.addTask {
                await server.waitUntilClosed()
                return .serverClosed
            }
            let first = await group.next()!
            switch first {
            case .signal(let number):
                logger.info("received \(signalName(number)), shutting down")
            case .serverClosed:
                logger.error("the HTTP listener closed unexpectedly, shutting down")
            }
            // The other child must end before the group can return: stop the server so its
            // close future completes, and cancel the signal loop.
            await server.shutdown()
            group.cancelAll()
            return first
        }
    }

    private func signalName(_ number: Int32) -> String {
        switch number {
        case SIGINT: "SIGINT"
        case SIGTERM: "SIGTERM"
        default: "signal \(number)"
        }
    }
}

extension MetricsServerError {
    /// What the operator can do about it, in terms of this command's options.
    var suggestedFix: String {
        switch reason {
        case .addressInUse:
            "stop the process using the port (ss -ltnp 'sport = :\(address.port)' shows it), "
                + "or choose another port with -p/--port or --web.listen-address"
        case .permissionDenied:
            "run as root, or choose a port from 1024 up with -p/--port"
        case .addressNotAvailable:
            "use an address of this host in --web.listen-address, or :\(address.port) for all interfaces"
        case .unknownHost:
            "use an IP address in --web.listen-address, or :\(address.port) for all interfaces"
        case .other:
            "check --web.listen-address and -p/--port"
        }
    }
}

extension FlowRank: ExpressibleByArgument {}
extension OutputMode: ExpressibleByArgument {}
extension LabelFolding: ExpressibleByArgument {}
