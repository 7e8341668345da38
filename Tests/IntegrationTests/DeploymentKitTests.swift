import Foundation
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
        let unit = try String(contentsOf: packageRoot.appendingPathComponent("deploy/systemd/flowstat.service"),
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
        let complaints = (result.stdout + result.stderr).split(separator: "\n").filter { $0.contains("flowstat.service") }
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
        let result = try run(["promtool", "test", "rules", Self.path("deploy/prometheus/rules_test.yml")], check: false)
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
        let tests = try String(contentsOfFile: Self.path("deploy/prometheus/rules_test.yml"), encoding: .utf8)
        for alert in ["FlowstatHighRTT", "FlowstatHighRetransmitRate", "FlowstatFlowChurnSpike", "FlowstatAgentDown",
                      "FlowstatMapEvictions"] {
            #expect(tests.contains("alertname: \(alert)"), "no unit test for \(alert)")
        }
    }

    /// Every metric family a fake-source agent serves (its `# TYPE` lines; histograms with
    /// their `_bucket`, `_sum` and `_count` series), plus those that need live kernel data or
    /// other work in progress, plus what Prometheus adds itself.
    static func emittedNames() throws -> Set<String> {
        let agent = try Agent(["--source", "fake"])
        defer { agent.stop() }
        _ = try agent.scrape()
        let text = try agent.scrape().text  // the second scrape has a scrape duration too
        var names: Set<String> = ["up"]
        func add(_ name: String, _ type: String) {
            names.insert(name)
            if type == "histogram" { names.formUnion(["_bucket", "_sum", "_count"].map { name + $0 }) }
        }
        for line in text.split(separator: "\n") where line.hasPrefix("# TYPE ") {
            let words = line.split(separator: " ")
            add(String(words[2]), String(words[3]))
        }
        #expect(names.contains("tcp_rtt_seconds_bucket") && names.contains("tcp_flow_rtt_seconds"))
        // Closed-flow histograms, ring-buffer losses, the cardinality cap and config reload:
        // emitted by the BPF source with closed flows, or being added by other work.
        for (name, type) in [("tcp_flow_duration_seconds", "histogram"), ("tcp_flow_bytes", "histogram"),
                             ("flowstat_events_lost_total", "counter"), ("flowstat_series_dropped_total", "counter"),
                             ("flowstat_config_last_reload_successful", "gauge")] {
            add(name, type)
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
        let recorded = Set(rules.keys.compactMap { key -> String? in
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
                #expect(emitted.contains(name) || recorded.contains(name),
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
        for name in ["tcp_flows_opened_total", "tcp_flows_closed_total", "tcp_flows{", "flowstat_scrape_duration_seconds",
                     "flowstat_map_entries", "flowstat_map_capacity", "flowstat_map_evictions_total",
                     "flowstat_events_lost_total", "flowstat_series_dropped_total"] {
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
        #expect(Set(capabilities["add"] ?? []).isSuperset(of: ["BPF", "PERFMON", "NET_ADMIN", "SYS_ADMIN", "SYS_RESOURCE"]))

        let ports = container["ports"] as? [[String: Any]] ?? []
        for probeName in ["readinessProbe", "livenessProbe"] {
            let get = try #require((container[probeName] as? [String: Any])?["httpGet"] as? [String: Any], "\(probeName)")
            #expect(get["path"] as? String == "/health")
            let port = get["port"]
            #expect(ports.contains { ($0["name"] as? String).map { $0 == port as? String } ?? false
                || ($0["containerPort"] as? Int) == port as? Int }, "\(probeName) port \(port ?? "") is no container port")
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
        let annotations = ((((daemonSet["spec"] as? [String: Any])?["template"] as? [String: Any])?["metadata"]
            as? [String: Any])?["annotations"] as? [String: String]) ?? [:]
        #expect(annotations["prometheus.io/port"] == String(containerPort))
    }
}

extension String {
    fileprivate func firstIndex(of character: Character, after offset: Int) -> Index? {
        self[index(startIndex, offsetBy: offset)...].firstIndex(of: character)
    }
}
