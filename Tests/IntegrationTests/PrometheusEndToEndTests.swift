// SPDX-License-Identifier: Apache-2.0

import Foundation
import Testing

/// flowstat scraped by a real Prometheus server: the series of real flows reach the query
/// API with the right labels, the RTT histogram's quantile agrees with `ss -tin`, and the
/// shipped rules load and evaluate.
///
/// Needs root (BPF, network namespaces). Its own serialized suite; its namespaces, veths and
/// temporary directory carry "prom" / "fsprom" and the process id.
@Suite(.serialized, .enabled(if: isRoot, "needs root: loads BPF programs and creates network namespaces"))
struct PrometheusEndToEndTests {
    @Test(
        "Prometheus stores the flows' series with their 4-tuples; histogram_quantile over tcp_rtt_seconds matches ss; rules are healthy"
    )
    func prometheusEndToEnd() throws {
        let network = try TestNetwork(tag: "prom")
        defer { network.remove() }
        // A token bucket on the client's data path: bulk data queues, so these flows' RTTs
        // (a hundred milliseconds and more) stand far above other traffic on the host.
        try run([
            "ip", "netns", "exec", network.client, "tc", "qdisc", "add", "dev", network.clientLink, "root",
            "tbf", "rate", "1mbit", "burst", "16kbit", "latency", "1s",
        ])
        let agent = try Agent()
        defer { agent.stop() }
        let server = try EndToEndTests.startServer(network, network.serverIPv4, 5001)
        defer { server.stop() }
        let prometheus = try PrometheusServer(
            name: "fsprom", target: "127.0.0.1:\(agent.port)",
            ruleFiles: [packageRoot.appendingPathComponent("deploy/prometheus/rules.yml").path])
        defer { prometheus.stop() }

        // Bounded waits: Prometheus scrapes every second.
        let scraping = try prometheus.wait(seconds: 30) {
            try prometheus.query(#"up{job="flowstat"}"#).first?.value == 1
        }
        try #require(scraping, "Prometheus never scraped the agent: \(prometheus.logText)")

        let started = Date().timeIntervalSince1970
        // Rounds of 80 kB over 4 flows: each round queues up to 640 ms behind the bucket, and
        // its ACKs give RTT samples all along that queue (GRO merges fewer ACKs than in one
        // long transfer).
        let client = try network.peer(in: network.client, ["connect", network.serverIPv4, "5001", "4", "20000"])
        defer { client.stop() }
        let flows = try EndToEndTests.readFlows(client)  // returns once everything is acknowledged
        for _ in 0..<5 {
            client.send("send 20000")
            #expect(client.readLine() == "sent")
        }
        let finished = Date().timeIntervalSince1970
        let kernel = try network.socketStats(in: network.client)
        let kernelRTTs = flows.compactMap { flow in
            kernel.first { $0.localPort == flow.localPort && $0.peerPort == flow.remotePort }?.rttMilliseconds
        }.map { $0 / 1000 }
        try #require(kernelRTTs.count == flows.count, "ss does not show the flows: \(kernel)")

        // Every flow, both ends, with the labels flowstat gives it, once a scrape after the
        // transfer is stored.
        func selector(_ src: String, _ sport: UInt16, _ dst: String, _ dport: UInt16) -> String {
            #"tcp_flow_rtt_seconds{job="flowstat",src="\#(src)",sport="\#(sport)",dst="\#(dst)",dport="\#(dport)"}"#
        }
        let evaluation = finished + 3
        let stored = try prometheus.wait(seconds: 30) {
            guard Date().timeIntervalSince1970 > evaluation + 1 else { return false }
            return (try prometheus.query("max(timestamp(up))").first?.value ?? 0) >= evaluation
        }
        try #require(stored, "no scrape stored after the transfer")
        for (flow, kernelRTT) in zip(flows, kernelRTTs) {
            let clientEnd = try prometheus.query(
                selector(flow.local, flow.localPort, flow.remote, flow.remotePort), at: evaluation)
            try #require(clientEnd.count == 1, "client end of \(flow) in Prometheus: \(clientEnd)")
            #expect(clientEnd[0].labels["instance"] == "127.0.0.1:\(agent.port)")
            // The flows are idle after the transfer: the smoothed RTT stays as ss shows it.
            #expect(
                abs(clientEnd[0].value - kernelRTT) <= 0.1 * kernelRTT,
                "Prometheus \(clientEnd[0].value) s vs ss \(kernelRTT) s for \(flow)")
            let serverEnd = try prometheus.query(
                selector(flow.remote, flow.remotePort, flow.local, flow.localPort), at: evaluation)
            #expect(serverEnd.count == 1, "server end of \(flow) in Prometheus: \(serverEnd)")
        }

        // The median RTT sample during the transfer, from the host-wide histogram, against the
        // flows' smoothed RTTs from the kernel. The histogram counts every flow on the host: on
        // a busy machine, other processes' loopback flows add tens of thousands of samples of
        // microseconds to a few milliseconds. The shaped path queues for a hundred milliseconds
        // and more, so the quantile is taken over the samples above 50 ms: each cumulative
        // bucket less the count at 50 ms.
        let window = Int((evaluation - started).rounded(.up)) + 1
        let increase = "sum by (le) (increase(tcp_rtt_seconds_bucket[\(window)s]))"
        let floor = #"on() group_left() sum(increase(tcp_rtt_seconds_bucket{le="0.05"}[\#(window)s]))"#
        let aboveFloor = "clamp_min(\(increase) - \(floor), 0)"
        let median = try #require(
            try prometheus.query("histogram_quantile(0.5, \(aboveFloor))", at: evaluation).first,
            "no tcp_rtt_seconds histogram in Prometheus")
        let bucketSeries = try prometheus.query(increase, at: evaluation)
        let buckets = bucketSeries.map { "\($0.labels["le"] ?? ""): \(Int($0.value))" }.sorted()
        let slowest = kernelRTTs.max()!
        let fastest = kernelRTTs.min()!
        #expect(fastest > 0.05, "the token bucket should queue the transfer: ss says \(kernelRTTs)")
        // The bound is the histogram's resolution, taken from the bucket edges Prometheus
        // stored. histogram_quantile finds the bucket (lower, upper] that holds the median
        // sample and interpolates linearly inside it, so its answer lies in [lower, upper] of
        // that bucket (in the +Inf bucket it answers the highest finite edge). The samples run
        // from slow start to the queue the flows end with, and their median lies between the
        // flows' smoothed RTTs as ss shows them at the end; so the answer lies between the
        // lower edge of the bucket that holds the fastest flow's RTT and the upper edge of
        // the one that holds the slowest's. (Above the 50 ms floor, itself an edge, the
        // buckets are unchanged.)
        let edges = bucketSeries.compactMap { $0.labels["le"].flatMap(Double.init) }
            .filter { $0.isFinite }.sorted()
        try #require(edges.contains(0.05), "no le=\"0.05\" bucket to take the floor at: \(buckets)")
        /// The (lower, upper] edges of the bucket that holds `value`; the +Inf bucket's upper
        /// edge is reported as the highest finite one, as histogram_quantile does.
        func bucket(holding value: Double) -> (lower: Double, upper: Double) {
            guard let index = edges.firstIndex(where: { value <= $0 }) else {
                return (edges.last!, edges.last!)
            }
            return (index == 0 ? 0 : edges[index - 1], edges[index])
        }
        let lowest = bucket(holding: fastest).lower
        let highest = bucket(holding: slowest).upper
        // Interpolation in floating point may land an ulp outside an edge.
        let rounding = 1e-9 * highest
        #expect(
            median.value >= lowest - rounding && median.value <= highest + rounding,
            "histogram median \(median.value) s outside [\(lowest), \(highest)] s, the buckets of ss's RTTs \(kernelRTTs); buckets \(buckets)"
        )
        let samples = try prometheus.query("sum(\(aboveFloor))", at: evaluation)
        #expect((samples.first?.value ?? 0) >= 50, "RTT samples above 50 ms during the transfer: \(buckets)")

        // The shipped rules: loaded, evaluated, healthy; a recording rule has a value.
        let healthy = try prometheus.wait(seconds: 30) {
            let groups = (try prometheus.api("/api/v1/rules") as? [String: Any])?["groups"] as? [[String: Any]] ?? []
            let rules = groups.flatMap { $0["rules"] as? [[String: Any]] ?? [] }
            return rules.count >= 16 && rules.allSatisfy { $0["health"] as? String == "ok" }
        }
        let rules = (try prometheus.api("/api/v1/rules") as? [String: Any])?["groups"] as? [[String: Any]] ?? []
        #expect(healthy, "rules not all healthy: \(rules)")
        #expect(Set(rules.compactMap { $0["name"] as? String }) == ["flowstat.recording", "flowstat.alerts"])
        let recorded = try prometheus.wait(seconds: 30) {
            !(try prometheus.query("instance:tcp_flows_opened:rate5m").isEmpty)
        }
        #expect(recorded, "the recording rule instance:tcp_flows_opened:rate5m has no value")

        prometheus.stop()
        #expect(agent.stop() == 0, "agent did not exit cleanly: \(agent.stderrText)")
    }
}
