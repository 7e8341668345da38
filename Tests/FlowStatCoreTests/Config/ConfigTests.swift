// SPDX-License-Identifier: Apache-2.0

import FlowStatCore
import Testing

@Suite("Config")
struct ConfigTests {
    static func fixture(_ name: String) -> String {
        "\(Fixtures.directory)/\(name)"
    }

    @Test("an empty document gives every default")
    func emptyIsDefault() throws {
        #expect(try FlowStatConfig(yaml: "") == FlowStatConfig())
        #expect(try FlowStatConfig(yaml: "# only a comment\n") == FlowStatConfig())
        #expect(try FlowStatConfig(yaml: "logic:\nflowstat:\n") == FlowStatConfig())
    }

    @Test("the defaults are the documented ones")
    func defaults() {
        let config = FlowStatConfig()
        // The detail families (loss, windows, RTO) are off by default; where time goes is on.
        #expect(
            config.metrics == [
                .rtt, .rttVariance, .minRTT, .cwnd, .ssthresh, .deliveryRate, .dataSegmentsIn, .dataSegmentsOut,
                .bytesAcked, .bytesReceived, .retransmits, .limitedSeconds,
            ])
        #expect(config.rttHistogram)
        #expect(config.rttBucketBounds == BPFOptions.defaultRTTBucketBounds)
        #expect(config.labelFolding == .none)
        #expect(config.selection.selectsEverything)
        #expect(config.output == .flowstat)
        #expect(config.cardinality.maxFlows == 2000 && config.cardinality.rankBy == .bytes)
        #expect(config.cardinality.maxAggregates == 500)
        #expect(config.sampling.minUpdateInterval == 0 && config.sampling.rttSampleEvery == 1)
        #expect(config.listenAddress == .default)
        #expect(config.bpf.mapEntries == 65_536 && config.bpf.refresh)
        #expect(!config.labels.netns && !config.labels.pid && !config.labels.comm)
    }

    @Test("the sample config written by --create-config parses to the defaults")
    func sampleIsDefault() throws {
        #expect(try FlowStatConfig(yaml: FlowStatConfig.sampleYAML, file: "sample.yml") == FlowStatConfig())
    }

    @Test("the seed's 3.x example config")
    func seed3() throws {
        let config = try FlowStatConfig(contentsOf: Self.fixture("seed-3.x.yml"))
        var expected = FlowStatConfig()
        expected.metrics.remove(.cwnd)
        expected.metrics.remove(.dataSegmentsOut)
        expected.rttBucketBounds = [0.0001, 0.001, 0.01, 0.1]
        expected.labelFolding = .pidCondensed
        expected.selection = FlowSelection(
            pids: [1000, 1001], cmds: ["nginx", "postgres"],
            addresses: [IPAddress("10.1.2.3")!, IPAddress("2001:db8::7")!],
            networks: [try IPNetwork(parsing: "10.0.0.0/8"), try IPNetwork(parsing: "fd00::/8")],
            hosts: ["db.example"],
            remotePorts: [PortRange(lower: 80, upper: 443), PortRange(lower: 5432, upper: 5432)])
        #expect(config == expected)
        #expect(config.needsProcessAttribution)
    }

    @Test("the seed's 2.x example config (snake_case, portranges, latency)")
    func seed2() throws {
        let config = try FlowStatConfig(contentsOf: Self.fixture("seed-2.x.yml"))
        var expected = FlowStatConfig()
        expected.metrics = [.rtt, .cwnd, .rttVariance, .minRTT, .ssthresh]  // counters group off
        expected.rttBucketBounds = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5]
        expected.labelFolding = .rawEndpoint
        expected.selection = FlowSelection(
            cmds: ["sshd"], networks: [try IPNetwork(parsing: "192.168.0.0/16")],
            remotePorts: [PortRange(lower: 22, upper: 22), PortRange(lower: 8000, upper: 8999)])
        #expect(config == expected)
    }

    @Test("flowstat's own section")
    func extensions() throws {
        let config = try FlowStatConfig(
            yaml: """
                logic:
                  metrics:
                    histograms: {active: false}
                    gauges: {rtt: false, minRtt: {active: false}}
                  selection:
                    localPortRanges: [8080, {lower: 9000}]
                flowstat:
                  output: ss-exporter
                  web: {listenAddress: "127.0.0.1:9020"}
                  bpf: {mapEntries: 4096, refresh: false}
                  sampling: {minUpdateInterval: 0.01, rttSampleEvery: 8}
                  cardinality: {maxFlows: 0, rankBy: retransmits, maxAggregates: 10}
                  labels: {netns: true, pid: true, comm: true}
                """)
        #expect(!config.rttHistogram)
        #expect(!config.metrics.contains(.rtt) && !config.metrics.contains(.minRTT) && config.metrics.contains(.cwnd))
        #expect(
            config.selection.localPorts == [PortRange(lower: 8080, upper: 8080), PortRange(lower: 9000, upper: 65_535)])
        #expect(config.output == .ssExporter)
        #expect(config.listenAddress == ListenAddress(host: "127.0.0.1", port: 9020))
        #expect(
            config.bpf
                == {
                    var bpf = FlowStatConfig.BPF()
                    bpf.mapEntries = 4096
                    bpf.refresh = false
                    return bpf
                }())
        #expect(config.sampling.minUpdateInterval == 0.01 && config.sampling.rttSampleEvery == 8)
        #expect(config.cardinality.maxFlows == 0 && config.cardinality.rankBy == .retransmits)
        #expect(config.cardinality.maxAggregates == 10)
        #expect(config.labels.netns && config.labels.pid && config.labels.comm)
        #expect(config.needsProcessAttribution)
    }

    @Test(
        "a broken config names file, line, key and fix",
        arguments: [
            // unknown keys, with the nearest known one
            (
                "logic:\n  metrics:\n    gauge: {active: true}\n",
                "config.yml:3: logic.metrics.gauge: unknown key \"gauge\"; did you mean gauges? known keys here: histograms, gauges, counters"
            ),
            (
                "logic:\n  selection:\n    portRange: []\n",
                "config.yml:3: logic.selection.portRange: unknown key \"portRange\"; did you mean portRanges? known keys here: process, peering, portRanges, localPortRanges, kubernetes"
            ),
            (
                "flowstat:\n  zzz: 1\n",
                "config.yml:2: flowstat.zzz: unknown key \"zzz\"; known keys here: output, source, web, bpf, sampling, cardinality, labels, kubelet"
            ),
            // wrong types
            (
                "logic:\n  metrics:\n    gauges:\n      active: maybe\n",
                "config.yml:4: logic.metrics.gauges.active: expected true or false, found \"maybe\"; write true or false"
            ),
            (
                "logic:\n  selection: [1, 2]\n",
                "config.yml:2: logic.selection: expected a mapping with keys process, peering, portRanges, localPortRanges, kubernetes, found a list; indent the keys under it, one per line"
            ),
            (
                "flowstat:\n  bpf:\n    mapEntries: lots\n",
                "config.yml:3: flowstat.bpf.mapEntries: expected a whole number, found \"lots\"; write a number from 1 to 16777216"
            ),
            // addresses and networks
            (
                "logic:\n  selection:\n    peering:\n      networks:\n        - 10.0.0.0/8\n        - 10.0.0.0/33\n",
                "config.yml:6: logic.selection.peering.networks[1]: \"10.0.0.0/33\" is not a network: bad prefix length; write a prefix length of 0-32 for IPv4 or 0-128 for IPv6, e.g. 10.0.0.0/8"
            ),
            (
                "logic:\n  selection:\n    peering:\n      networks: [10.0.0.300/8]\n",
                "config.yml:4: logic.selection.peering.networks[0]: \"10.0.0.300/8\" is not a network: the address is not IPv4 or IPv6; write a CIDR such as 10.0.0.0/8 or fd00::/8"
            ),
            (
                "logic:\n  selection:\n    peering:\n      networks: [\"fd00::1/8\"]\n",
                "config.yml:4: logic.selection.peering.networks[0]: \"fd00::1/8\" has host bits set; write the network address (fd00::/8), or the host under addresses"
            ),
            (
                "logic:\n  selection:\n    peering:\n      addresses: [10.1.2]\n",
                "config.yml:4: logic.selection.peering.addresses[0]: \"10.1.2\" is not an IP address; write an IPv4 or IPv6 address, e.g. 10.1.2.3 or fd00::1"
            ),
            // ports
            (
                "logic:\n  selection:\n    portRanges:\n      - lower: 443\n        upper: 80\n",
                "config.yml:4: logic.selection.portRanges[0]: lower 443 is above upper 80; write lower <= upper"
            ),
            (
                "logic:\n  selection:\n    portranges:\n      - {lower: 1, upper: 70000}\n",
                "config.yml:4: logic.selection.portranges[0].upper: 70000 is out of range; write a number from 0 to 65535 (a TCP port)"
            ),
            // bucket bounds
            // (out of order, repeated, 0 and empty lists load with a warning: SeedConfigToleranceTests)
            (
                "logic:\n  metrics:\n    histograms:\n      rtt:\n        bucketBounds: [1, fast]\n",
                "config.yml:5: logic.metrics.histograms.rtt.bucketBounds[1]: expected a number, found \"fast\"; write a number such as 0.5"
            ),
            // enum values
            (
                "logic:\n  compression:\n    labelFolding: condensed\n",
                "config.yml:3: logic.compression.labelFolding: \"condensed\" is not one of none, raw_endpoint, pid_condensed; write one of none, raw_endpoint, pid_condensed"
            ),
            (
                "flowstat:\n  output: prometheus\n",
                "config.yml:2: flowstat.output: \"prometheus\" is not one of flowstat, ss-exporter; write flowstat or ss-exporter"
            ),
            (
                "flowstat:\n  cardinality:\n    rankBy: age\n",
                "config.yml:3: flowstat.cardinality.rankBy: \"age\" is not one of bytes, retransmits, rtt; write one of bytes, retransmits, rtt"
            ),
            // the rest
            (
                "logic:\n  selection:\n    process:\n      cmds: [/usr/sbin/nginx]\n",
                "config.yml:4: logic.selection.process.cmds[0]: \"/usr/sbin/nginx\" is a path; cmds match a process name; write the name alone, e.g. nginx"
            ),
            (
                "logic:\n  metrics:\n    histograms:\n      rtt: {bucketBounds: [1], bucket_bounds: [2]}\n",
                "config.yml:4: logic.metrics.histograms.rtt.bucket_bounds: \"bucket_bounds\" repeats \"bucketBounds\" (both mean bucketBounds); keep one of them"
            ),
            (
                "logic:\n  metrics: [\n",
                "config.yml:3: invalid YAML: did not find expected node content; check the YAML syntax near that line (indentation, a missing \":\", unbalanced quotes or brackets)"
            ),
            (
                "flowstat:\n  cardinality: {maxAggregates: 0}\n",
                "config.yml:2: flowstat.cardinality.maxAggregates: 0 is out of range; write a number from 1 to 1048576"
            ),
            (
                "flowstat:\n  bpf: {mode: [live_tcp_iter, fast]}\n",
                "config.yml:2: flowstat.bpf.mode[1]: \"fast\" is not one of live_storage_iter, live_tcp_iter, event; write one of live_storage_iter, live_tcp_iter, event"
            ),
            (
                "flowstat:\n  bpf: {tcpRcvHooks: [kprobe]}\n",
                "config.yml:2: flowstat.bpf.tcpRcvHooks[0]: \"kprobe\" is not a tcp_rcv_established variant; list one or more of fentry, tp_btf, raw_tp, tracepoint"
            ),
            (
                "flowstat:\n  source: ebpf\n",
                "config.yml:2: flowstat.source: \"ebpf\" is not one of auto, bpf, inet_diag, fake; write one of auto, bpf, inet_diag, fake"
            ),
            (
                "flowstat:\n  web: {listenAddress: \"localhost\"}\n",
                "config.yml:2: flowstat.web.listenAddress: invalid listen address \"localhost\": missing port; write :8020, 127.0.0.1:8020 or [::1]:8020"
            ),
        ] as [(String, String)])
    func brokenConfig(yaml: String, message: String) {
        #expect(throws: ConfigError.self) { try FlowStatConfig(yaml: yaml, file: "config.yml") }
        do {
            _ = try FlowStatConfig(yaml: yaml, file: "config.yml")
        } catch {
            #expect(error.description == message)
        }
    }

    @Test("flowstat.source and flowstat.bpf's mode, receive hooks and cgroup path reach the config")
    func sourceSettings() throws {
        let config = try FlowStatConfig(
            yaml: """
                flowstat:
                  source: inet_diag
                  bpf:
                    mode: [live_tcp_iter, event]
                    tcpRcvHooks: [raw_tp, tracepoint]
                    cgroupPath: /sys/fs/cgroup/unified
                """)
        #expect(config.source == .inetDiag)
        #expect(config.bpf.modes == [.liveTCPIterator, .event])
        #expect(config.bpf.receiveVariants == ["raw_tp", "tracepoint"])
        #expect(config.bpf.cgroupPath == "/sys/fs/cgroup/unified")
        let auto = try FlowStatConfig(yaml: "flowstat: {bpf: {mode: auto, cgroupPath: \"\"}}")
        #expect(auto.bpf.modes == Set(BPFMode.allCases) && auto.bpf.cgroupPath == nil)
        let options = BPFOptions(config: config, keepsNamespaceAccess: false)
        #expect(options.modes == config.bpf.modes && options.receiveVariants == config.bpf.receiveVariants)
        #expect(options.cgroupPath == "/sys/fs/cgroup/unified" && !options.keepsNamespaceAccess)
    }

    @Test("a missing file is a located error")
    func missingFile() {
        #expect(
            throws: ConfigError(
                file: "/nonexistent/flowstat.yml", line: nil, keyPath: "",
                problem: "cannot read the file: open: No such file or directory",
                fix: "check the path, or write a sample config there")
        ) { try FlowStatConfig(contentsOf: "/nonexistent/flowstat.yml") }
    }

    @Test("any key may be written in snake_case")
    func snakeCase() throws {
        let config = try FlowStatConfig(
            yaml: """
                logic:
                  metrics:
                    gauges: {rtt_variance: false, min_rtt: {active: false}}
                    counters: {bytes_acked: false}
                  selection:
                    local_portranges: [22]
                flowstat:
                  web: {listen_address: ":9000"}
                  bpf: {map_entries: 1024}
                  sampling: {min_update_interval: 0.5, rtt_sample_every: 2}
                  cardinality: {max_flows: 10, rank_by: rtt, max_aggregates: 1}
                """)
        #expect(!config.metrics.contains(.rttVariance) && !config.metrics.contains(.minRTT))
        #expect(!config.metrics.contains(.bytesAcked) && config.metrics.contains(.bytesReceived))
        #expect(config.selection.localPorts == [PortRange(lower: 22, upper: 22)])
        #expect(config.listenAddress == ListenAddress(host: nil, port: 9000))
        #expect(config.bpf.mapEntries == 1024)
        #expect(config.sampling.minUpdateInterval == 0.5 && config.sampling.rttSampleEvery == 2)
        #expect(config.cardinality.maxFlows == 10 && config.cardinality.rankBy == .rtt)
        #expect(config.cardinality.maxAggregates == 1)
    }

    @Test("bucket bounds in ms become exactly the seconds written")
    func boundsConversion() throws {
        let config = try FlowStatConfig(
            yaml: "logic: {metrics: {histograms: {rtt: {bucketBounds: [0.0025, 2.5e-2, 1_000, 3E3]}}}}")
        #expect(config.rttBucketBounds == [0.0000025, 0.000025, 1, 3])
    }

    @Test("the RTT histogram per service and per peer group: limits, groups, and mistakes named with their fix")
    func rttBreakdown() throws {
        #expect(FlowStatConfig().rttServicePorts == 32 && FlowStatConfig().rttPeerGroups.isEmpty)
        let config = try FlowStatConfig(
            yaml: """
                logic:
                  metrics:
                    histograms:
                      rtt:
                        max_service_ports: 0
                        peerGroups:
                          db: [10.1.0.0/16, "fd00:1::/48"]
                          cache: 10.2.3.4
                """)
        #expect(config.rttServicePorts == 0)
        #expect(config.rttPeerGroups.map(\.name) == ["db", "cache"])
        #expect(config.rttPeerGroups[0].networks.map(\.description) == ["10.1.0.0/16", "fd00:1::/48"])
        #expect(config.rttPeerGroups[1].networks.map(\.description) == ["10.2.3.4/32"])

        func problem(_ yaml: String) -> String {
            do {
                _ = try FlowStatConfig(yaml: yaml)
                return "accepted"
            } catch {
                return "\(error)"
            }
        }
        let prefix = "logic: {metrics: {histograms: {rtt: "
        #expect(
            problem(prefix + "{maxServicePorts: 5000}}}}").contains(
                "5000 is out of range; write a number from 0 to 1024"))
        #expect(
            problem(prefix + "{peerGroups: [db]}}}}").contains("expected a mapping of group names to lists of networks")
        )
        #expect(
            problem(prefix + "{peerGroups: {db: [10.1.0.0/8]}}}}}").contains(
                "has host bits set; write the network address (10.0.0.0/8)"))
        #expect(problem(prefix + "{peerGroups: {db: [10.1.0.0/33]}}}}}").contains("bad prefix length"))
        #expect(problem(prefix + "{peerGroups: {db: []}}}}}").contains("peer group db has no networks"))
        #expect(
            problem(prefix + "{peerGroups: {a: [10.0.0.0/8], b: [10.0.0.0/8]}}}}}")
                .contains("10.0.0.0/8 is already in peer group a; keep each network in one group"))
        #expect(problem(prefix + "{peerGroups: {\"a\\\"b\": [10.0.0.0/8]}}}}}").contains("printable ASCII"))
        let seventeen = (0..<17).map { "g\($0): [10.\($0).0.0/16]" }.joined(separator: ", ")
        #expect(problem(prefix + "{peerGroups: {\(seventeen)}}}}}").contains("17 peer groups, at most 16"))
    }
}
