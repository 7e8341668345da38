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
              rtt: {active: true}           # tcp_flow_rtt_seconds
              cwnd: {active: true}          # tcp_flow_cwnd_segments
              deliveryRate: {active: true}  # tcp_flow_delivery_rate_bytes_per_second
              rttVariance: {active: true}   # tcp_flow_rtt_variance_seconds (flowstat)
              minRtt: {active: true}        # tcp_flow_min_rtt_seconds (flowstat)
              ssthresh: {active: true}      # tcp_flow_ssthresh_segments (flowstat)
            # Per-flow counters.
            counters:
              active: true
              dataSegsIn: {active: true}    # tcp_flow_data_segments_in_total
              dataSegsOut: {active: true}   # tcp_flow_data_segments_out_total
              bytesAcked: {active: true}    # tcp_flow_bytes_acked_total (flowstat)
              bytesReceived: {active: true} # tcp_flow_bytes_received_total (flowstat)
              retransmits: {active: true}   # tcp_flow_retransmits_total (flowstat)
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
          web:
            listenAddress: ":8020"      # --web.listen-address / -p override it
          bpf:
            mapEntries: 65536           # kernel flow map capacity (--map-entries)
            refresh: true               # refresh flows from their sockets before each scrape
          sampling:
            minUpdateInterval: 0        # seconds between per-flow updates; 0: every event
            rttSampleEvery: 1           # count 1 in N RTT samples in the histogram
          cardinality:
            maxFlows: 2000              # flows with their own series; 0: no cap
            rankBy: bytes               # bytes, retransmits or rtt: which flows keep series
            maxAggregates: 500          # per-peer/per-port aggregates for the other flows
          labels:
            netns: false                # netns label on every flow (--netns-label)
            pid: false                  # pid label
            comm: false                 # comm label

        """#
}
