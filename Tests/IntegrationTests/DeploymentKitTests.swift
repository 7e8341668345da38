// SPDX-License-Identifier: Apache-2.0

import FlowStatCore
import Foundation
import NIOCore
import Testing

/// The deployment files in deploy/ are checked by the tools that will consume them.
@Suite("Deployment kit")
struct DeploymentKitTests {
    @Test("promtool accepts the example Prometheus configuration")
    func prometheusConfig() throws {
        let path = packageRoot.appendingPathComponent("deploy/prometheus/prometheus.yml").path
        let result = try run(["promtool", "check", "config", path], check: false)
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
    }

    @Test("systemd accepts the unit (with ExecStart pointed at the built binary)")
    func systemdUnit() throws {
        let unit = try String(
            contentsOf: packageRoot.appendingPathComponent("deploy/systemd/flowstat.service"),
            encoding: .utf8)
        #expect(unit.contains("ExecStart=/usr/local/bin/flowstat "))
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("flowstat-unit-\(getpid())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let copy = directory.appendingPathComponent("flowstat.service")
        try unit.replacingOccurrences(of: "/usr/local/bin/flowstat", with: flowstatBinary)
            .write(to: copy, atomically: true, encoding: .utf8)
        let result = try run(["systemd-analyze", "verify", copy.path], check: false)
        // Only lines about this unit count; the host's own units may have warnings of their own.
        let complaints = (result.stdout + result.stderr).split(separator: "\n").filter {
            $0.contains("flowstat.service")
        }
        #expect(complaints.isEmpty, "\(complaints.joined(separator: "\n"))")
    }

    static func path(_ relative: String) -> String { packageRoot.appendingPathComponent(relative).path }

    static func helper(_ arguments: [String]) throws -> Any {
        let script = path("Tests/Support/deploy_check.py")
        let output = try run(["python3", script] + arguments).stdout
        return try JSONSerialization.jsonObject(with: Data(output.utf8))
    }

    @Test("promtool accepts the recording and alerting rules")
    func rulesCheck() throws {
        let result = try run(["promtool", "check", "rules", Self.path("deploy/prometheus/rules.yml")], check: false)
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
        #expect(result.stdout.contains("SUCCESS"))
    }

    @Test("promtool's rule unit tests pass: high RTT and retransmit alerts fire for the slow host only")
    func rulesUnitTests() throws {
        let result = try run(
            ["promtool", "test", "rules", Self.path("deploy/prometheus/rules_test.yml")], check: false)
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
        let tests = try String(contentsOfFile: Self.path("deploy/prometheus/rules_test.yml"), encoding: .utf8)
        for alert in [
            "FlowstatHighRTT", "FlowstatHighRetransmitRate", "FlowstatFlowChurnSpike", "FlowstatAgentDown",
            "FlowstatMapEvictions", "FlowstatKubeletStale", "FlowstatRTOTimeouts",
        ] {
            #expect(tests.contains("alertname: \(alert)"), "no unit test for \(alert)")
        }
    }

    /// Every name in an exposition: its families (`# TYPE` lines) and the series of its
    /// samples (a histogram's `_bucket`, `_sum` and `_count` among them).
    static func names(in text: String) throws -> Set<String> {
        var names = Set(try Exposition(text).samples.map(\.name))
        for line in text.split(separator: "\n") where line.hasPrefix("# TYPE ") {
            names.insert(String(line.split(separator: " ")[2]))
        }
        return names
    }

    /// The exposition of every path a live agent can take that the fake source alone does
    /// not show, built through the library with no BPF: the demo flows plus closed-flow
    /// histograms and closed flows (as the BPF source reports them), a cardinality cap that
    /// folds flows into aggregates, and a config reload; scraped twice, so that the scrape
    /// durations have samples.
    static func fullLibraryExposition() throws -> String {
        var snapshot = FakeFlowSource.demoSnapshot
        snapshot.flowDurationHistogram = Histogram(bounds: [0.1, 1, 10], counts: [2, 3, 1, 0], sum: 9.5)
        snapshot.flowBytesHistogram = Histogram(bounds: [1_000, 1_000_000], counts: [1, 4, 1], sum: 3_000_000)
        let closed = FlowTotals(
            flows: 6, bytesAcked: 6_000, bytesReceived: 600, dataSegmentsIn: 12, dataSegmentsOut: 18, retransmits: 1)
        snapshot.closedSinceLastSnapshot = [
            AggregateKey(peer: .address(IPAddress("192.0.2.7")!), port: .port(443)): closed
        ]
        // The kernel's host-wide retransmit counts and the RTT histograms per service and peer group.
        snapshot.kernelEvents = KernelEventCounts(
            updates: 0, updatesSkipped: 0, insertFailures: 0, evictions: 0,
            retransmits: RetransmitCounts(fast: 9, rto: 3, lossProbe: 1, rtoTimeouts: 2))
        let rtt = Histogram(bounds: [0.001, 0.01], counts: [5, 2, 1], sum: 0.05)
        snapshot.serviceRTTHistograms = [443: rtt, 0: rtt]
        snapshot.peerGroupRTTHistograms = ["db": rtt]
        // Flows whose kernel filled every optional field, so the families off by default show too.
        for index in snapshot.flows.indices {
            snapshot.flows[index].fields = [.timeLimits, .lossDetail, .rtoTotals, .detail]
        }
        // Described as a BPF source in event mode without its receive hook: the self-metrics of that path.
        let info = SourceInfo(
            kind: .bpf, hooks: [HookStatus(name: "sockops", variant: "cgroup_sockops", attached: true)],
            mode: .event, missingHooks: ["tcp_rcv_established"])
        let source = FakeFlowSource(snapshot: snapshot, info: info)
        var config = FlowStatConfig()
        config.cardinality.maxFlows = 1
        config.metrics = Set(FlowMetric.allCases)
        // Pod names asked for, from a kubelet that does not answer: the kubelet self-metrics.
        config.labels.pod = true
        config.kubelet.url = KubeletURL(host: "127.0.0.1", port: try Agent.freePort())
        let pipeline = ExportPipeline(source: source, config: config)
        defer { pipeline.stop() }
        pipeline.recordReload(successful: true)
        _ = try pipeline.scrape()
        let buffer = try pipeline.scrape()
        return buffer.getString(at: buffer.readerIndex, length: buffer.readableBytes) ?? ""
    }

    /// Every metric name flowstat emits, each taken from a real exposition: the agent binary
    /// serving its fake source, and the library's exposition of the paths that need live
    /// kernel data or a config. Plus `up`, which Prometheus adds itself.
    static func emittedNames() throws -> Set<String> {
        let agent = try Agent(["--source", "fake"])
        defer { agent.stop() }
        _ = try agent.scrape()
        let served = try agent.scrape().text  // the second scrape has a scrape duration too
        let library = try fullLibraryExposition()
        var names: Set<String> = ["up"]
        names.formUnion(try Self.names(in: served))
        names.formUnion(try Self.names(in: library))
        // The paths above are taken: renaming a metric on one of them removes its old name here.
        for name in [
            "tcp_rtt_seconds_bucket", "tcp_flow_rtt_seconds", "tcp_flow_duration_seconds_bucket",
            "tcp_flow_bytes_count", "tcp_peer_flows_closed_total", "flowstat_series_dropped_total",
            "flowstat_config_last_reload_successful", "flowstat_events_lost_total",
            "flowstat_source_hook_missing", "flowstat_kubelet_last_success_timestamp_seconds",
            "tcp_retransmits_total", "tcp_rto_timeouts_total",
            "tcp_service_rtt_seconds_bucket", "tcp_peer_group_rtt_seconds_bucket",
        ] {
            #expect(names.contains(name), "\(name) is in no exposition: the path that emits it was not taken")
        }
        return names
    }

    @Test("the dashboard and the rules read only metrics flowstat emits (or rules record)")
    func metricNames() throws {
        let emitted = try Self.emittedNames()
        let dashboard = try #require(
            try Self.helper(["names", Self.path("deploy/grafana/flowstat-dashboard.json")]) as? [String: [String]])
        let rules = try #require(
            try Self.helper(["names", Self.path("deploy/prometheus/rules.yml")]) as? [String: [String]])
        #expect(dashboard.count >= 15, "expressions found in the dashboard: \(dashboard.count)")
        #expect(rules.count >= 15)
        let recorded = Set(
            rules.keys.compactMap { key -> String? in
                guard key.hasPrefix("rule "), let colon = key.firstIndex(of: " ", after: 5) else { return nil }
                let name = String(key[key.index(key.startIndex, offsetBy: 5)..<colon]).trimmingCharacters(in: [":"])
                return name.contains(":") ? name : nil
            })
        #expect(recorded.contains("instance:tcp_rtt_seconds:p99_5m"))
        for (where_, names) in dashboard {
            #expect(!names.isEmpty, "no metric in \(where_)")
            for name in names {
                #expect(emitted.contains(name), "the dashboard reads \(name), which flowstat does not emit: \(where_)")
            }
        }
        for (where_, names) in rules {
            for name in names {
                #expect(
                    emitted.contains(name) || recorded.contains(name),
                    "the rules read \(name), which flowstat does not emit: \(where_)")
            }
        }
    }

    @Test("the Grafana dashboard: schema, datasource variable, the promised panels")
    func dashboard() throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: Self.path("deploy/grafana/flowstat-dashboard.json")))
        let dashboard = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect((dashboard["schemaVersion"] as? Int ?? 0) >= 36)
        #expect(dashboard["uid"] as? String == "flowstat")
        let variables = try #require((dashboard["templating"] as? [String: Any])?["list"] as? [[String: Any]])
        let datasource = try #require(variables.first { $0["name"] as? String == "datasource" })
        #expect(datasource["type"] as? String == "datasource" && datasource["query"] as? String == "prometheus")
        let panels = try #require(dashboard["panels"] as? [[String: Any]])
        let ids = panels.compactMap { $0["id"] as? Int }
        #expect(Set(ids).count == panels.count, "panel ids must be unique")
        var exprsByType: [String: [String]] = [:]
        for panel in panels {
            #expect(panel["gridPos"] is [String: Any], "panel without gridPos: \(panel["title"] ?? "")")
            guard panel["type"] as? String != "row" else { continue }
            let source = panel["datasource"] as? [String: Any]
            #expect(source?["uid"] as? String == "${datasource}", "panel \(panel["title"] ?? "") ignores the variable")
            let targets = panel["targets"] as? [[String: Any]] ?? []
            #expect(!targets.isEmpty)
            for target in targets {
                exprsByType[panel["type"] as! String, default: []].append(target["expr"] as? String ?? "")
            }
        }
        #expect(exprsByType["heatmap"]?.contains { $0.contains("tcp_rtt_seconds_bucket") } == true)
        let tables = exprsByType["table"] ?? []
        #expect(tables.contains { $0.contains("topk(") && $0.contains("tcp_flow_rtt_seconds") })
        #expect(tables.contains { $0.contains("topk(") && $0.contains("tcp_flow_retransmits_total") })
        let all = exprsByType.values.flatMap { $0 }
        for name in [
            "tcp_flows_opened_total", "tcp_flows_closed_total", "tcp_flows{", "flowstat_scrape_duration_seconds",
            "flowstat_map_entries", "flowstat_map_capacity", "flowstat_map_evictions_total",
            "flowstat_events_lost_total", "flowstat_series_dropped_total", "tcp_retransmits_total",
            "tcp_rto_timeouts_total", "tcp_service_rtt_seconds_bucket", "tcp_peer_group_rtt_seconds_bucket",
        ] {
            #expect(all.contains { $0.contains(name) }, "no panel shows \(name)")
        }
    }

    @Test("the DaemonSet: host network and PID, capabilities not privileged, probes on /health, limits, valid flags")
    func daemonSet() throws {
        let documents = try #require(
            try Self.helper(["yaml", Self.path("deploy/kubernetes/daemonset.yaml")]) as? [[String: Any]])
        let daemonSet = try #require(documents.first { $0["kind"] as? String == "DaemonSet" })
        let spec = try #require(
            ((daemonSet["spec"] as? [String: Any])?["template"] as? [String: Any])?["spec"] as? [String: Any])
        #expect(spec["hostNetwork"] as? Bool == true, "sockets of the node's network namespace")
        #expect(spec["hostPID"] as? Bool == true, "/proc/PID/ns/net of other pods")
        let container = try #require((spec["containers"] as? [[String: Any]])?.first)
        let security = try #require(container["securityContext"] as? [String: Any])
        #expect(security["privileged"] as? Bool != true)
        #expect(security["allowPrivilegeEscalation"] as? Bool == false)
        let capabilities = try #require(security["capabilities"] as? [String: [String]])
        #expect(capabilities["drop"] == ["ALL"])
        #expect(
            Set(capabilities["add"] ?? []).isSuperset(of: ["BPF", "PERFMON", "NET_ADMIN", "SYS_ADMIN", "SYS_RESOURCE"]))

        let ports = container["ports"] as? [[String: Any]] ?? []
        for probeName in ["readinessProbe", "livenessProbe"] {
            let get = try #require(
                (container[probeName] as? [String: Any])?["httpGet"] as? [String: Any], "\(probeName)")
            #expect(get["path"] as? String == "/health")
            let port = get["port"]
            #expect(
                ports.contains {
                    ($0["name"] as? String).map { $0 == port as? String } ?? false
                        || ($0["containerPort"] as? Int) == port as? Int
                }, "\(probeName) port \(port ?? "") is no container port")
        }
        let resources = try #require(container["resources"] as? [String: [String: Any]])
        #expect(resources["limits"]?["memory"] != nil)
        #expect(resources["requests"]?["cpu"] != nil && resources["requests"]?["memory"] != nil)
        let mounts = (container["volumeMounts"] as? [[String: Any]] ?? []).compactMap { $0["mountPath"] as? String }
        #expect(mounts.contains("/sys/fs/cgroup") && mounts.contains("/sys/kernel/btf"))

        // The arguments must be flags the binary knows, and listen where the port says.
        let arguments = try #require(container["args"] as? [String])
        let help = try run([flowstatBinary, "serve", "--help"]).stdout
        for argument in arguments where argument.hasPrefix("--") {
            let flag = String(argument.split(separator: "=")[0])
            #expect(help.contains(flag), "flowstat serve has no \(flag)")
        }
        let containerPort = try #require(ports.first?["containerPort"] as? Int)
        #expect(arguments.contains { $0.hasSuffix(":\(containerPort)") })
        let annotations =
            ((((daemonSet["spec"] as? [String: Any])?["template"] as? [String: Any])?["metadata"]
                as? [String: Any])?["annotations"] as? [String: String]) ?? [:]
        #expect(annotations["prometheus.io/port"] == String(containerPort))
    }

    @Test(
        "the DaemonSet's RBAC grants what the kubelet client asks (GET /pods: get on nodes/proxy), to the service account it runs as; its env and config give the client a URL"
    )
    func kubeletAccess() throws {
        let documents = try #require(
            try Self.helper(["yaml", Self.path("deploy/kubernetes/daemonset.yaml")]) as? [[String: Any]])
        func named(_ kind: String) -> [[String: Any]] { documents.filter { $0["kind"] as? String == kind } }
        func metadata(_ document: [String: Any]) -> [String: Any] { document["metadata"] as? [String: Any] ?? [:] }
        let daemonSet = try #require(named("DaemonSet").first)
        let namespace = try #require(metadata(daemonSet)["namespace"] as? String)
        let spec = try #require(
            ((daemonSet["spec"] as? [String: Any])?["template"] as? [String: Any])?["spec"] as? [String: Any])
        let account = try #require(spec["serviceAccountName"] as? String)
        #expect(spec["automountServiceAccountToken"] as? Bool != false, "the client reads the mounted token")
        #expect(
            named("ServiceAccount").contains {
                metadata($0)["name"] as? String == account && metadata($0)["namespace"] as? String == namespace
            }, "no ServiceAccount \(namespace)/\(account)")

        // What the client requests, from its own defaults: GET of KubeletURL's default path.
        // The kubelet authorizes a path outside /stats, /metrics, /logs and /spec as the
        // nodes/proxy subresource, and GET as verb get (kubelet authn/authz documentation).
        let path = KubeletURL(host: "node").path
        #expect(path == "/pods")
        let (resource, verb) = ("nodes/proxy", "get")
        let bindings = named("ClusterRoleBinding").filter { binding in
            (binding["subjects"] as? [[String: Any]] ?? []).contains {
                $0["kind"] as? String == "ServiceAccount" && $0["name"] as? String == account
                    && $0["namespace"] as? String == namespace
            }
        }
        let granted = bindings.contains { binding in
            guard let reference = binding["roleRef"] as? [String: Any], reference["kind"] as? String == "ClusterRole",
                reference["apiGroup"] as? String == "rbac.authorization.k8s.io",
                let role = named("ClusterRole").first(where: {
                    metadata($0)["name"] as? String == reference["name"] as? String
                })
            else { return false }
            return (role["rules"] as? [[String: Any]] ?? []).contains { rule in
                (rule["apiGroups"] as? [String] ?? []).contains("")
                    && (rule["resources"] as? [String] ?? []).contains(resource)
                    && (rule["verbs"] as? [String] ?? []).contains(verb)
            }
        }
        #expect(granted, "no ClusterRole bound to \(namespace)/\(account) grants \(verb) on \(resource)")
        // Least privilege: nothing that writes, nor secrets.
        for role in named("ClusterRole") {
            for rule in role["rules"] as? [[String: Any]] ?? [] {
                #expect(Set(rule["verbs"] as? [String] ?? []).isSubset(of: ["get", "list", "watch"]), "\(rule)")
                #expect(!(rule["resources"] as? [String] ?? []).contains("secrets"), "\(rule)")
            }
        }

        // The env the client's default URL reads, from the downward API.
        let container = try #require((spec["containers"] as? [[String: Any]])?.first)
        var fields: [String: String] = [:]
        for variable in container["env"] as? [[String: Any]] ?? [] {
            let reference = ((variable["valueFrom"] as? [String: Any])?["fieldRef"] as? [String: Any])?["fieldPath"]
            if let name = variable["name"] as? String, let field = reference as? String { fields[name] = field }
        }
        #expect(fields["NODE_IP"] == "status.hostIP" && fields["NODE_NAME"] == "spec.nodeName", "\(fields)")
        let resolved = KubeletURL.fromEnvironment { fields[$0] == nil ? nil : "10.0.0.7" }
        #expect(resolved?.description == "https://10.0.0.7:10250/pods")

        // The config it mounts loads, and turns the labels (and so the client) on.
        let configMap = try #require(named("ConfigMap").first)
        let text = try #require((configMap["data"] as? [String: String])?["config.yml"])
        let config = try FlowStatConfig(yaml: text)
        #expect(config.labels.pod && config.labels.namespace && config.labels.container && config.needsKubelet)
        let arguments = try #require(container["args"] as? [String])
        let mounts = container["volumeMounts"] as? [[String: Any]] ?? []
        let mount = try #require(mounts.first { $0["name"] as? String == "config" }?["mountPath"] as? String)
        #expect(arguments.contains("--config=\(mount)/config.yml"))
        // The image make image names (scripts/image.py: flowstat:TAG).
        #expect((container["image"] as? String)?.hasPrefix("flowstat:") == true)
    }
}

extension String {
    fileprivate func firstIndex(of character: Character, after offset: Int) -> Index? {
        self[index(startIndex, offsetBy: offset)...].firstIndex(of: character)
    }
}
