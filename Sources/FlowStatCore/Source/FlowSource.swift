// SPDX-License-Identifier: Apache-2.0

/// Where flow data comes from: the BPF maps, an inet_diag dump, or a fixed snapshot in tests.
///
/// The HTTP server calls `snapshot()` once per scrape, from a dedicated thread, never from
/// the event loop, and never twice at the same time; it may block for as long as a read of
/// the flow map takes. Implementations must be safe to share between threads (`Sendable`).
public protocol FlowSource: Sendable {
    /// Reads every flow the source currently knows about, every field it can fill.
    func snapshot() throws -> FlowSnapshot

    /// Reads every flow, filling the optional fields in `needed` where the kernel has them; it
    /// may leave the others out when that is cheaper (a scrape whose metrics need none of the
    /// `detail` fields). Defaults to `snapshot()`.
    func snapshot(needing needed: FlowFields) throws -> FlowSnapshot

    /// What the source is and which kernel hooks it attached, for logs, the landing page and
    /// `flowstat_source_info`. Read on the event loop for the landing page: it must not block
    /// (a stored `let` is ideal).
    var info: SourceInfo { get }

    /// Whether the source can still produce snapshots (for `/health`). A BPF source reports
    /// `false` once its programs are detached or its maps closed. Defaults to `true`. Read on
    /// the scrape thread; best cheap and independent of a snapshot in progress (an atomic
    /// rather than the snapshot's lock), or `/health` waits for the scrape.
    var isServing: Bool { get }

    /// Releases kernel resources (detaches programs, closes maps) before the process exits.
    /// Called once, after the HTTP server has stopped; later `snapshot()` calls may throw.
    /// Defaults to doing nothing.
    func shutdown()

    /// Where the source sums the flows that close between snapshots (the pipeline sets its
    /// selection); nil for sources that do not see flows close. Defaults to nil.
    var closedFlows: ClosedFlowAggregates? { get }

    /// Takes back the flow array of a snapshot the caller is done with, so that the next
    /// snapshot fills the same memory: at tens of thousands of flows a fresh array costs a
    /// page fault per 4 KiB each scrape. Defaults to dropping it.
    func recycle(_ flows: inout [FlowSample])
}

extension FlowSource {
    public func snapshot(needing needed: FlowFields) throws -> FlowSnapshot { try snapshot() }
    public var isServing: Bool { true }
    public var closedFlows: ClosedFlowAggregates? { nil }
    public func shutdown() {}
    public func recycle(_ flows: inout [FlowSample]) {}
}

/// The kind of a flow source, as shown in the `source` label of `flowstat_source_info`.
public enum SourceKind: String, Sendable, Hashable, CustomStringConvertible {
    /// eBPF programs and maps (the normal case).
    case bpf
    /// An inet_diag netlink dump at scrape time (the fallback where BPF cannot load).
    case inetDiag = "inet_diag"
    /// Fixed data for tests and demos.
    case fake

    public var description: String { rawValue }
}

/// Whether one kernel hook is attached, and how.
public struct HookStatus: Sendable, Hashable {
    /// What the hook observes: `sockops`, `tcp_rcv_established`, `inet_sock_set_state`,
    /// `tcp_retransmit_skb`, `iter_tcp`.
    public var name: String
    /// How it is attached: `cgroup_sockops`, `fentry`, `tp_btf`, `tracepoint`, `iter`.
    public var variant: String
    /// Whether the attachment succeeded.
    public var attached: Bool
    /// Why it is not attached (or a warning if it is), for the log and the landing page.
    public var error: String?

    public init(name: String, variant: String, attached: Bool, error: String? = nil) {
        self.name = name
        self.variant = variant
        self.attached = attached
        self.error = error
    }
}

/// How a BPF source takes its snapshots, best first; the kernel decides which it can run.
public enum BPFMode: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    /// Every tracked socket read at the scrape by one run of an iterator over flowstat's
    /// socket storage (iter/bpf_sk_storage_map), all network namespaces at once.
    case liveStorageIterator = "live_storage_iter"
    /// Every tracked socket read at the scrape by iter/tcp, one run per network namespace
    /// that holds tracked flows: where the kernel refuses storage-map iterators.
    case liveTCPIterator = "live_tcp_iter"
    /// A map the hooks rewrite on events, copied at the scrape: where no iterator loads, or
    /// with `--no-bpf.refresh`.
    case event

    public var description: String { rawValue }

    /// The modes' names, for messages: `live_storage_iter, live_tcp_iter, event`.
    public static var spellings: String { allCases.map(\.rawValue).joined(separator: ", ") }
}

/// Describes a flow source: its kind and the state of each hook it tried to attach.
public struct SourceInfo: Sendable, Hashable {
    /// The kind of source.
    public var kind: SourceKind
    /// Every hook the source tried, attached or not, in the order it tried them.
    public var hooks: [HookStatus]
    /// Why this source runs rather than the one asked for (`--source auto` fell back), or
    /// (BPF) why it runs in a worse mode than the best; short enough for a label; nil when
    /// it is the best asked for.
    public var reason: String?
    /// BPF sources: how snapshots are taken.
    public var mode: BPFMode?
    /// Hooks the mode needs that attached in no variant: what they would have kept up to
    /// date is stale. Empty when nothing is missing.
    public var missingHooks: [String]

    public init(
        kind: SourceKind, hooks: [HookStatus] = [], reason: String? = nil, mode: BPFMode? = nil,
        missingHooks: [String] = []
    ) {
        self.kind = kind
        self.hooks = hooks
        self.reason = reason
        self.mode = mode
        self.missingHooks = missingHooks
    }

    /// The hooks that are attached.
    public var attachedHooks: [HookStatus] {
        hooks.filter(\.attached)
    }
}
