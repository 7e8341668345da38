// SPDX-License-Identifier: Apache-2.0

extension FlowStatConfig {
    /// The settings in a few indented lines, for `flowstat check-config`.
    public var summary: String {
        let enabled = FlowMetric.allCases.filter(metrics.contains).map(\.rawValue)
        let histogram =
            rttHistogram
            ? "\(rttBucketBounds.count) buckets, \(PrometheusText.format(rttBucketBounds.first ?? 0)) s to "
                + "\(PrometheusText.format(rttBucketBounds.last ?? 0)) s, 1 in \(sampling.rttSampleEvery) samples"
                + (rttServicePorts > 0 ? ", per service: \(rttServicePorts) ports and other" : "")
                + (rttPeerGroups.isEmpty
                    ? "" : ", peer groups: " + rttPeerGroups.map(\.name).joined(separator: ", "))
            : "off"
        let cap =
            cardinality.maxFlows == 0
            ? "off"
            : "\(cardinality.maxFlows) flows by \(cardinality.rankBy.rawValue), \(cardinality.maxAggregates) aggregates"
        let aggregateKeys = AggregateLabel.allCases.filter(cardinality.aggregateBy.contains).map(\.rawValue)
        let optionalLabels = [
            ("netns", labels.netns), ("pid", labels.pid), ("comm", labels.comm), ("container", labels.container),
            ("pod", labels.pod), ("namespace", labels.namespace),
        ].filter(\.1).map(\.0)
        var lines = [
            "  per-flow metrics: \(enabled.isEmpty ? "none" : enabled.joined(separator: ", "))"
                + " (\(enabled.count) of \(FlowMetric.allCases.count))",
            "  RTT histogram: \(histogram)",
            "  output: \(output.rawValue), label folding: \(labelFolding.rawValue)"
                + ", extra labels: \(optionalLabels.isEmpty ? "none" : optionalLabels.joined(separator: ", "))",
            "  selection: \(selection.summary)",
            "  listen: \(listenAddress), map entries: \(bpf.mapEntries), refresh: \(bpf.refresh ? "on" : "off")"
                + ", min update interval: \(PrometheusText.format(sampling.minUpdateInterval)) s",
            "  cardinality cap: \(cap)",
        ]
        if !aggregateKeys.isEmpty {
            lines.append("  aggregates keyed also by: \(aggregateKeys.joined(separator: ", "))")
        }
        if needsKubelet {
            let url = kubelet.url?.description ?? "https://$NODE_IP:10250/pods (else $NODE_NAME)"
            lines.append("  kubelet: \(url), every \(PrometheusText.format(kubelet.refreshInterval)) s")
        }
        return lines.joined(separator: "\n")
    }
}

extension FlowSelection {
    /// `every flow`, or the groups that have entries joined by AND.
    public var summary: String {
        var groups: [String] = []
        let process = pids.map { "pid \($0)" } + cmds.map { "cmd \($0)" }
        if !process.isEmpty { groups.append("process (\(process.joined(separator: " or ")))") }
        let peers = addresses.map(\.description) + networks.map(\.description) + hosts.map { "host \($0)" }
        if !peers.isEmpty { groups.append("peer (\(peers.joined(separator: " or ")))") }
        if !remotePorts.isEmpty {
            groups.append("remote port (\(remotePorts.map(\.description).joined(separator: " or ")))")
        }
        if !localPorts.isEmpty {
            groups.append("local port (\(localPorts.map(\.description).joined(separator: " or ")))")
        }
        // Within the kubernetes group each list must match (AND), any entry of a list (OR).
        let workloads = [("namespace", namespaces), ("pod", pods), ("container", containers)].filter { !$0.1.isEmpty }
            .map { kind, values in values.map { "\(kind) \($0)" }.joined(separator: " or ") }
        if !workloads.isEmpty { groups.append("kubernetes (\(workloads.joined(separator: ") and (")))") }
        return groups.isEmpty ? "every flow" : groups.joined(separator: " and ")
    }
}
