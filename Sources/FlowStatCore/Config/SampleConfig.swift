// SPDX-License-Identifier: Apache-2.0

extension FlowStatConfig {
    /// The file `flowstat --create-config FILE` writes: every key, set to its default, with a
    /// comment. It parses to `FlowStatConfig()` (a test checks).
    ///
    /// The `logic:` part is the seed exporter's 3.x schema (its 2.x snake_case spellings are
    /// accepted too); `flowstat:` holds flowstat's own settings.
    public static let sampleYAML = #"""
        # flowstat configuration. Every key is optional: a key left out takes the default
        # shown here. The seed exporter's config files (3.x camelCase or 2.x snake_case) are
        # read as they are. Command-line flags override this file. Check a file with
        # `flowstat check-config FILE`.

        logic:
          metrics:
            # RTT histogram tcp_rtt_seconds, counted in the kernel from every RTT sample.
            histograms:
              active: true              # false: no histograms
              rtt:                      # 2.x name: latency
                active: true
                # Bucket upper bounds in MILLISECONDS (as in the seed), increasing, at most 32.
                bucketBounds: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000]
            # Per-flow gauges. `active: false` on the group turns all of its metrics off.
            gauges:
              active: true
        \#(metricSwitches(.gauges))
            # Per-flow counters.
            counters:
              active: true
        \#(metricSwitches(.counters))
          compression:
            # none: labels src, sport, dst, dport. raw_endpoint: one label
            # flow="(SRC#ip|port)(DST#ip|port)". pid_condensed: flow="(pid)(DST#ip|port)".
            labelFolding: none
          # Which flows are exported. Within a group any entry may match (OR); a flow must
          # match every group that has entries (AND); an empty group selects every flow.
          selection:
            process:
              pids: []                  # owning process ids
              cmds: []                  # process names (comm, first 15 bytes) or executable basenames
            peering:                    # the remote end
              addresses: []             # e.g. [10.1.2.3, "fd00::1"]
              networks: []              # CIDR, e.g. [10.0.0.0/8, "fd00::/8"]
              hosts: []                 # names, resolved at start and every 60 s
            portRanges: []              # remote ports, e.g. [{lower: 80, upper: 443}]
            localPortRanges: []         # local ports (flowstat), e.g. [{lower: 8080, upper: 8080}]

        # flowstat's own settings.
        flowstat:
          output: flowstat              # or ss-exporter: the seed's metric names and flow label
          source: auto                  # bpf, inet_diag (no privileges), fake (demo); auto: bpf, else inet_diag
          web:
            listenAddress: ":8020"      # --web.listen-address / -p override it
          bpf:
            mapEntries: 65536           # kernel flow map capacity (--map-entries)
            refresh: true               # refresh flows from their sockets before each scrape
            mode: auto                  # or a list of live_storage_iter, live_tcp_iter, event (--bpf.mode)
            tcpRcvHooks: [fentry, tp_btf, raw_tp, tracepoint]  # receive hook variants to try, in this order
            cgroupPath: ""              # cgroup v2 directory for sockops; "": from /proc/mounts
          sampling:
            minUpdateInterval: 0        # seconds between per-flow updates; 0: every event
            rttSampleEvery: 1           # count 1 in N RTT samples in the histogram
          cardinality:
            maxFlows: 2000              # flows with their own series; 0: no cap
            rankBy: bytes               # bytes, retransmits or rtt: which flows keep series
            maxAggregates: 500          # per-peer/per-port aggregates for the other flows
            aggregateBy: []             # also key aggregates by namespace, pod, container
          labels:
            netns: false                # netns label on every flow (--netns-label)
            pid: false                  # pid label
            comm: false                 # comm label
            container: false            # container label: name (kubelet) or id, "" outside containers
            pod: false                  # pod label: name (kubelet) or UID, "" outside pods
            namespace: false            # namespace label: the pod's Kubernetes namespace
          kubelet:                      # pod names; runs only for pod/namespace labels or selection
            url: ""                     # "": https://$NODE_IP:10250/pods (else $NODE_NAME)
            refreshInterval: 30         # seconds between pod list refreshes
            tokenFile: /var/run/secrets/kubernetes.io/serviceaccount/token   # re-read at each refresh
            caFile: /var/run/secrets/kubernetes.io/serviceaccount/ca.crt     # verifies the kubelet

        """#

    /// The switch lines of one group of per-flow metrics, from the catalogue: the seed's
    /// metrics first, then flowstat's, each with its family name.
    private static func metricSwitches(_ group: ConfigSwitch.Group) -> String {
        let members = FlowMetricCatalogue.all.filter { $0.configSwitch.group == group }
        return (members.filter { $0.seed != nil } + members.filter { $0.seed == nil }).map { metric in
            let setting = "\(metric.configSwitch.key): {active: \(metric.defaultOn)}"
            let padding = String(repeating: " ", count: max(30 - setting.count, 1))
            return "      \(setting)\(padding)# \(metric.name)" + (metric.seed == nil ? " (flowstat)" : "")
        }.joined(separator: "\n")
    }
}
