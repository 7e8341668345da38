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
        name: .customLong("web.listen-address"),
        help: "Address to listen on: :PORT (all interfaces), HOST:PORT or [IPV6]:PORT.")
    var listenAddress = ListenAddress.default.description

    @Option(name: [.short, .long], help: "Port to listen on; overrides the port of --web.listen-address.")
    var port: Int?

    @Option(
        name: [.customLong("log.level"), .customLong("log-level")],
        help: "Least severe messages to log: debug, info, warning or error.")
    var logLevel = LogLevelOption.info

    @Option(help: "Where flows come from: auto (bpf, else inet_diag), bpf, inet_diag (no privileges), or fake (demo data).")
    var source = SourceChoice.auto

    @Option(help: "Capacity of the kernel flow map; the least recently updated flows are evicted past it.")
    var mapEntries = 65_536

    @Option(
        name: .customLong("bpf.tcp-rcv-hooks"),
        help: "tcp_rcv_established variants to try, comma-separated, from: fentry, tp_btf, tracepoint.")
    var receiveHooks = "fentry,tp_btf,tracepoint"

    @Option(
        name: .customLong("bpf.min-update-interval"),
        help: "Per flow, least seconds between updates from per-packet and RTT events (0: every event).")
    var minUpdateInterval = 0.0

    @Option(name: .customLong("bpf.cgroup-path"), help: "cgroup v2 directory to attach sockops to (default: from /proc/mounts).")
    var cgroupPath: String?

    @Flag(
        name: .customLong("bpf.refresh"), inversion: .prefixedNo,
        help: "Refresh every flow from its socket just before each scrape, so idle flows read as ss shows them.")
    var refresh = true

    @Flag(help: "Add a netns label to every flow, not only to 4-tuples seen in several network namespaces.")
    var netnsLabel = false

    @Option(
        name: .customLong("cardinality.max-flows"),
        help: "Most flows exported with their own series (0: all); the rest fold into tcp_peer_* aggregates.")
    var maxFlows = CardinalityLimits().maxFlows

    @Option(
        name: .customLong("cardinality.rank-by"),
        help: "Which flows keep their own series under the cap: bytes, retransmits or rtt (the top ones).")
    var rankBy = CardinalityLimits().rankBy

    @Option(
        name: .customLong("cardinality.max-aggregates"),
        help: "Most (peer, port) aggregate series; past it peers fold into peer=\"other\", then ports.")
    var maxAggregates = CardinalityLimits().maxAggregates

    @Option(
        name: .customLong("run-as"),
        help: ArgumentHelp(
            "Once the flow source is open and the port bound, switch to this user and drop every capability (start as root).",
            valueName: "user[:group]"))
    var runAs: String?

    func run() async throws {
        let logger = bootstrapLogging(level: logLevel.level)
        do {
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
        let address = try resolvedListenAddress()
        guard (1...(1 << 24)).contains(mapEntries) else {
            throw StartupError(
                problem: "--map-entries \(mapEntries) is out of range", fix: "use a value from 1 to 16777216")
        }

        let runAsUser = try runAs.map(RunAsUser.init(parsing:))
        try runAsUser?.checkCanSwitch()

        let flowSource: any FlowSource
        do {
            flowSource = try makeSource(
                SourceOptions(choice: source, bpf: try bpfOptions(), logger: Logger(label: "flowstat.source")))
        } catch let error as StartupError {
            throw error
        } catch {
            throw StartupError(
                problem: "cannot open the \(source.rawValue) flow source: \(error)",
                fix: "see the log lines above; --source fake serves demo data without kernel access")
        }
        let scraper = Scraper(
            source: flowSource, options: MetricsEncoder.Options(netnsLabel: netnsLabel), limits: try cardinalityLimits())

        let server: MetricsServer
        do {
            server = try await MetricsServer.start(
                configuration: MetricsServer.Configuration(listenAddress: address),
                scraper: scraper,
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
            "serving on \(server.listenAddress)",
            metadata: ["source": "\(flowSource.info.kind)", "hooks": "\(hooks.joined(separator: ","))"])

        let stop = await waitForStop(signals: signals.stream, server: server, logger: logger)
        flowSource.shutdown()
        logger.info("stopped")
        if case .serverClosed = stop { throw ExitCode.failure }
    }

    private func bpfOptions() throws -> BPFOptions {
        var options = BPFOptions()
        options.mapEntries = UInt32(mapEntries)
        let variants = receiveHooks.split(separator: ",").map { String($0.filter { !$0.isWhitespace }) }
        let known: Set<String> = ["fentry", "tp_btf", "tracepoint"]
        guard !variants.isEmpty, variants.allSatisfy(known.contains) else {
            throw StartupError(
                problem: "--bpf.tcp-rcv-hooks \"\(receiveHooks)\" names no variant or an unknown one",
                fix: "list one or more of fentry, tp_btf, tracepoint, comma-separated")
        }
        options.receiveVariants = Set(variants)
        guard minUpdateInterval.isFinite, (0...60).contains(minUpdateInterval) else {
            throw StartupError(
                problem: "--bpf.min-update-interval \(minUpdateInterval) is out of range",
                fix: "use seconds from 0 to 60, e.g. 0.01")
        }
        options.minUpdateInterval = UInt64(minUpdateInterval * 1e9)
        options.cgroupPath = cgroupPath
        options.refreshBeforeSnapshot = refresh
        return options
    }

    private func cardinalityLimits() throws -> CardinalityLimits {
        guard maxFlows >= 0 else {
            throw StartupError(
                problem: "--cardinality.max-flows \(maxFlows) is negative", fix: "use 0 (no cap) or a positive number")
        }
        guard maxAggregates >= 1 else {
            throw StartupError(
                problem: "--cardinality.max-aggregates \(maxAggregates) is below 1",
                fix: "use a positive number; 1 folds every aggregate into peer=\"other\",port=\"other\"")
        }
        return CardinalityLimits(maxFlows: maxFlows, rankBy: rankBy, maxAggregates: maxAggregates)
    }

    private func resolvedListenAddress() throws -> ListenAddress {
        var address: ListenAddress
        do {
            address = try ListenAddress(parsing: listenAddress)
        } catch {
            throw StartupError(
                problem: error.description, fix: "write --web.listen-address as :8020, 127.0.0.1:8020 or [::1]:8020")
        }
        if let port {
            guard (0...65_535).contains(port) else {
                throw StartupError(
                    problem: "port \(port) is out of range", fix: "use -p with a port from 1 to 65535 (0 picks a free one)")
            }
            address = address.withPort(port)
        }
        return address
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
