// SPDX-License-Identifier: Apache-2.0

import NIOConcurrencyHelpers

/// The flows that closed since the last snapshot, selected and summed per aggregate key.
///
/// A source that sees flows close (BPF: the closed-flow ring buffer) feeds their final
/// state here as it reads it, on a thread of its own; each snapshot takes the sums. Closed
/// flows pass the same selection as live ones (the export pipeline sets it), so the
/// `tcp_peer_*` aggregates never count a flow the config leaves out. Summing on arrival keeps
/// memory bounded by the number of keys, not of flows: past `maxPendingKeys` keys, a new key
/// folds into `peer="other"` for its port where that key exists, else into `other`.
public final class ClosedFlowAggregates: Sendable {
    /// Keys of one batch past this many fold: a bound for hosts that talk to very many
    /// peers between two scrapes.
    public static let maxPendingKeys = 65_536

    private struct State {
        var pending: [AggregateKey: FlowTotals] = [:]
        var selection: FlowFilter?
        var labels: Set<AggregateLabel> = []
        var workloads: WorkloadResolver?
    }

    private let state = NIOLockedValueBox(State())
    private let servicePorts: ServicePorts

    public init(servicePorts: ServicePorts = .system()) {
        self.servicePorts = servicePorts
    }

    /// Counts only the closed flows `filter` selects from now on; nil counts every flow.
    public func select(with filter: FlowFilter?) {
        state.withLockedValue { $0.selection = filter?.selectsEverything == true ? nil : filter }
    }

    /// From now on: counts only the flows `filter` selects (nil: every flow), keys them by
    /// `labels` besides peer and port, and resolves their cgroups with `workloads` (nil:
    /// not needed) so that both can use the container and pod of a flow that closed.
    public func configure(selection filter: FlowFilter?, labels: Set<AggregateLabel>, workloads: WorkloadResolver?) {
        state.withLockedValue { state in
            state.selection = filter?.selectsEverything == true ? nil : filter
            state.labels = labels
            state.workloads = workloads
        }
    }

    /// Adds closed flows (their state at the close, owner included: there is no process
    /// left to look up).
    public func add(_ flows: [FlowSample]) {
        guard !flows.isEmpty else { return }
        let (filter, labels, workloads) = state.withLockedValue { ($0.selection, $0.labels, $0.workloads) }
        var flows = flows
        // The cgroup recorded at the close names the container; its cgroup is usually still
        // there (or cached from the scrapes that saw the flow live).
        workloads?.fill(&flows)
        var keyed: [(AggregateKey, FlowTotals)] = []
        keyed.reserveCapacity(flows.count)
        let matcher = filter?.matcher()
        for flow in flows where matcher?.selects(flow) ?? true {
            var totals = FlowTotals()
            totals.add(flow)
            keyed.append((servicePorts.key(of: flow, labels: labels), totals))
        }
        state.withLockedValue { state in
            for (key, totals) in keyed {
                var target = key
                if state.pending[target] == nil, state.pending.count >= Self.maxPendingKeys {
                    target = AggregateKey(peer: .other, port: key.port)
                    if state.pending[target] == nil { target = .other }
                }
                state.pending[target, default: FlowTotals()].add(totals)
            }
        }
    }

    /// Takes what closed since the last call.
    public func drain() -> [AggregateKey: FlowTotals] {
        state.withLockedValue { state in
            defer { state.pending = [:] }
            return state.pending
        }
    }
}
