// SPDX-License-Identifier: Apache-2.0

/// Everything flowstat's YAML configuration file sets, with every value defaulted.
///
/// Read with `FlowStatConfig(yaml:file:)` or `FlowStatConfig(contentsOf:)`. The file may be
/// written in the seed exporter's 3.x schema (camelCase, under `logic:`), its 2.x schema
/// (snake_case, `portranges`, a `latency` histogram) or a mix; flowstat's own settings live
/// under a top-level `flowstat:` section. `FlowStatConfig()` is what an empty file gives.
/// Command-line flags override the values here (see `flowstat serve --help`).
public struct FlowStatConfig: Sendable, Equatable {
    /// Per-flow metric families that are exported. Default: those the catalogue marks
    /// `defaultOn` (all but the loss and window detail).
    public var metrics: Set<FlowMetric> = FlowMetricCatalogue.defaultMetrics
    /// Whether the RTT histogram (`tcp_rtt_seconds`) is counted and exported:
    /// `logic.metrics.histograms.active` and `…histograms.rtt.active`. Default: on.
    public var rttHistogram = true
    /// Upper bounds of the RTT histogram's buckets, in seconds (the file gives milliseconds,
    /// as the seed did). Default: 1 µs to 1 s in 1-2.5-5 steps.
    public var rttBucketBounds: [Double] = BPFOptions.defaultRTTBucketBounds
    /// Service ports with an RTT histogram of their own (`tcp_service_rtt_seconds`), the first
    /// seen; later ports share `port="other"` (`…histograms.rtt.maxServicePorts`). 0: off.
    /// Default 32.
    public var rttServicePorts = 32
    /// Named lists of networks with an RTT histogram each (`tcp_peer_group_rtt_seconds`):
    /// `…histograms.rtt.peerGroups: {db: [10.1.0.0/16, fd00:1::/48]}`. Default: none.
    public var rttPeerGroups: [RTTPeerGroup] = []
    /// How per-flow label sets are written (`logic.compression.labelFolding`). Default: none.
    public var labelFolding: LabelFolding = .none
    /// Which flows are exported (`logic.selection`). Default: every flow.
    public var selection = FlowSelection()
    /// Metric names and labels: flowstat's own, or the seed's (`flowstat.output`).
    public var output: OutputMode = .flowstat
    /// The per-flow series cap (`flowstat.cardinality`).
    public var cardinality = Cardinality()
    /// Bounds on the BPF programs' cost (`flowstat.sampling`).
    public var sampling = Sampling()
    /// Where the HTTP server listens (`flowstat.web.listenAddress`). Default: `:8020`.
    public var listenAddress = ListenAddress.default
    /// The kernel side (`flowstat.bpf`).
    public var bpf = BPF()
    /// Optional per-flow labels (`flowstat.labels`).
    public var labels = Labels()
    /// Where flows come from (`flowstat.source`). Default: auto.
    public var source = SourceChoice.auto
    /// The kubelet that names pods (`flowstat.kubelet`).
    public var kubelet = Kubelet()

    public init() {}

    /// Valid values, for the file and the command line alike.
    public static let mapEntriesRange = 1...(1 << 24)
    public static let maxFlowsRange = 0...(1 << 24)
    public static let maxAggregatesRange = 1...(1 << 20)
    public static let minUpdateIntervalRange = 0.0...60.0
    public static let kubeletRefreshIntervalRange = 1.0...3600.0
    public static let rttServicePortsRange = 0...1024
    public static let maxRTTPeerGroups = 16

    /// `flowstat.cardinality`: at most `maxFlows` flows get their own series, ranked by
    /// `rankBy`; the rest fold into at most `maxAggregates` per-peer/per-port aggregates.
    public struct Cardinality: Sendable, Equatable {
        /// Flows with their own series; 0 turns the cap off. Default 2000.
        public var maxFlows = 2000
        /// Which flows keep their own series when there are more than `maxFlows`. Default bytes.
        public var rankBy: FlowRank = .bytes
        /// Aggregate series the folded flows may use before they fold into `other`. Default 500.
        public var maxAggregates = 500
        /// Workload labels (`namespace`, `pod`, `container`) that key the aggregates besides
        /// peer and port (`aggregateBy`). Default none.
        public var aggregateBy: Set<AggregateLabel> = []
        public init() {}
    }

    /// `flowstat.sampling`.
    public struct Sampling: Sendable, Equatable {
        /// Per flow, least seconds between updates from per-packet and RTT events; 0: every
        /// event. Default 0. (`--bpf.min-update-interval` overrides it.)
        public var minUpdateInterval = 0.0
        /// Count 1 in N RTT samples in the histogram. Default 1 (all).
        public var rttSampleEvery: UInt32 = 1
        public init() {}
    }

    /// `flowstat.bpf`.
    public struct BPF: Sendable, Equatable {
        /// Capacity of the kernel flow map. Default 65536.
        public var mapEntries: UInt32 = 65_536
        /// Refresh every flow from its socket before each scrape. Default true.
        public var refresh = true
        /// Snapshot modes the agent may run in, the best the kernel allows first (`mode`:
        /// `auto` or a list). Default: all.
        public var modes: Set<BPFMode> = Set(BPFMode.allCases)
        /// `tcp_rcv_established` variants to try (`tcpRcvHooks`). Default: all, fastest first.
        public var receiveVariants: Set<String> = Set(BPFOptions.receiveVariantNames)
        /// cgroup v2 directory to attach sockops to (`cgroupPath`); nil: from /proc/mounts.
        public var cgroupPath: String?
        public init() {}
    }

    /// `flowstat.labels`: labels added to every flow's series.
    public struct Labels: Sendable, Equatable {
        /// `netns` on every flow (it is always added where a 4-tuple is in several). Default false.
        public var netns = false
        /// `pid` of the owning process. Default false.
        public var pid = false
        /// `comm` (command name) of the owning process. Default false.
        public var comm = false
        /// `container`: the flow's container (its name in the pod from the kubelet, else its
        /// id). Default false.
        public var container = false
        /// `pod`: the flow's Kubernetes pod (its name from the kubelet, else its UID). Default false.
        public var pod = false
        /// `namespace`: the pod's Kubernetes namespace (from the kubelet). Default false.
        public var namespace = false
        public init() {}
    }

    /// `flowstat.kubelet`: where the pod list comes from, read-only, on Kubernetes.
    public struct Kubelet: Sendable, Equatable {
        /// `url`: the kubelet's pod list; nil: `https://$NODE_IP:10250/pods` (else `$NODE_NAME`),
        /// the variables the DaemonSet sets from the downward API.
        public var url: KubeletURL?
        /// `refreshInterval`: seconds between pod list refreshes. Default 30.
        public var refreshInterval = 30.0
        /// `tokenFile`: the service account's bearer token, re-read at every refresh (it rotates).
        public var tokenFile = "/var/run/secrets/kubernetes.io/serviceaccount/token"
        /// `caFile`: the CA the kubelet's serving certificate must be signed by.
        public var caFile = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
        public init() {}
    }

    /// Whether flows need their cgroup looked up on every scrape: container, pod or namespace
    /// labels.
    public var needsWorkloads: Bool {
        labels.container || labels.pod || labels.namespace || selection.needsWorkload
            || !cardinality.aggregateBy.isEmpty
    }

    /// Whether pod names are needed, so the kubelet client runs: pod or namespace labels, or
    /// selection by namespace or pod. The container label alone shows container ids.
    public var needsKubelet: Bool {
        labels.pod || labels.namespace || !selection.namespaces.isEmpty || !selection.pods.isEmpty
            || cardinality.aggregateBy.contains(.pod) || cardinality.aggregateBy.contains(.namespace)
    }

    /// Whether flows need their owning process (pid, comm) looked up: selection by process
    /// or process labels.
    public var needsProcessAttribution: Bool {
        selection.needsProcess || labels.pid || labels.comm || labelFolding == .pidCondensed
    }
}

/// The seed's `labelFolding`: how a flow's endpoints become labels.
public enum LabelFolding: String, Sendable, Hashable, CaseIterable {
    /// flowstat's separate `src`, `sport`, `dst`, `dport` labels.
    case none
    /// One label `flow="(SRC#<ip>|<port>)(DST#<ip>|<port>)"`.
    case rawEndpoint = "raw_endpoint"
    /// One label `flow="(<pid>)(DST#<ip>|<port>)"`.
    case pidCondensed = "pid_condensed"
}

/// Which metric names and labels the exposition uses.
public enum OutputMode: String, Sendable, Hashable, CaseIterable {
    /// flowstat's names in base units (`tcp_flow_rtt_seconds` …).
    case flowstat
    /// The seed's names (`tcp_rtt` in ms, `tcp_cwnd`, … `tcp_rtt_hist_ms`, `tcp_flows_total`).
    case ssExporter = "ss-exporter"
}
