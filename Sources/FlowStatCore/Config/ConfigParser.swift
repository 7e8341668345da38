// SPDX-License-Identifier: Apache-2.0

import Yams

#if canImport(Glibc)
import Glibc
#endif

extension FlowStatConfig {
    /// Parses a configuration document. `file` only names it in errors. Warnings are
    /// dropped: use `FlowStatConfig.load(yaml:file:)` where an operator should see them.
    public init(yaml text: String, file: String = "<string>") throws(ConfigError) {
        self = try Self.load(yaml: text, file: file).config
    }

    /// Reads and parses the file at `path` (warnings dropped, as `init(yaml:file:)`).
    public init(contentsOf path: String) throws(ConfigError) {
        self = try Self.load(contentsOf: path).config
    }

    /// Parses a configuration document, with a warning for each value it loads but ignores
    /// or adjusts (see `ConfigWarning`).
    ///
    /// Walks Yams' composed node tree rather than decoding with `Codable`, so that every
    /// error knows the line and key path of the value at fault and unknown keys are caught
    /// (a misspelt key silently falling back to its default is the worst config bug).
    public static func load(yaml text: String, file: String = "<string>") throws(ConfigError) -> LoadedConfig {
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch let error as YamlError {
            throw ConfigError(yamlError: error, file: file)
        } catch {
            throw ConfigError(
                file: file, line: nil, keyPath: "", problem: "cannot parse the YAML: \(error)",
                fix: "check the file's indentation and quoting")
        }
        var config = FlowStatConfig()
        guard let root else { return LoadedConfig(config: config) }  // An empty file: every default.
        let warnings = ConfigWarnings()
        try ConfigReader(file: file, warnings: warnings).read(
            ConfigNode(node: root, path: "", file: file), into: &config)
        return LoadedConfig(config: config, warnings: warnings.all)
    }

    /// Reads and parses the file at `path`, with its warnings.
    public static func load(contentsOf path: String) throws(ConfigError) -> LoadedConfig {
        let text: String
        do {
            text = try SystemFile.readText(path)
        } catch {
            throw ConfigError(
                file: path, line: nil, keyPath: "", problem: "cannot read the file: \(error.message)",
                fix: error.errno == ENOENT
                    ? "check the path, or write a sample config there"
                    : "check the path and its permissions")
        }
        return try load(yaml: text, file: path)
    }
}

extension ConfigError {
    /// Locates a YAML syntax error.
    init(yamlError: YamlError, file: String) {
        let fix = "check the YAML syntax near that line (indentation, a missing \":\", unbalanced quotes or brackets)"
        switch yamlError {
        case .scanner(_, let problem, let mark, _), .parser(_, let problem, let mark, _),
            .composer(_, let problem, let mark, _):
            self.init(file: file, line: mark.line, keyPath: "", problem: "invalid YAML: \(problem)", fix: fix)
        case .duplicatedKeysInMapping(let duplicates, let context):
            self.init(
                file: file, line: context.mark.line, keyPath: "",
                problem: "key \(duplicates.sorted().joined(separator: ", ")) given twice in one mapping",
                fix: "keep one of them")
        default:
            self.init(file: file, line: nil, keyPath: "", problem: "invalid YAML: \(yamlError)", fix: fix)
        }
    }
}

// MARK: - Typed access to the node tree

/// One node of the document with its key path, and typed accessors that throw errors
/// located at it.
struct ConfigNode {
    let node: Node
    let path: String
    let file: String

    var line: Int? { node.mark?.line }

    func error(_ problem: String, fix: String) -> ConfigError {
        ConfigError(file: file, line: line, keyPath: path, problem: problem, fix: fix)
    }

    func warning(_ problem: String, action: String) -> ConfigWarning {
        ConfigWarning(file: file, line: line, keyPath: path, problem: problem, action: action)
    }

    /// A scalar written as `""` or `''` (or an unquoted empty value inside a flow list).
    var isEmptyString: Bool {
        guard case .scalar(let scalar) = node else { return false }
        return scalar.string.isEmpty
    }

    /// `key:` with nothing after it, `~` or `null`: the same as leaving the key out.
    var isNull: Bool {
        guard case .scalar(let scalar) = node, scalar.style == .plain || scalar.style == .any else { return false }
        return ["", "~", "null", "Null", "NULL"].contains(scalar.string)
    }

    /// How the value looks, for "found …" in messages.
    var found: String {
        switch node {
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .alias: return "an alias"
        case .scalar(let scalar):
            if scalar.style == .plain, Double(scalar.string) != nil { return scalar.string }
            return "\"\(scalar.string)\""
        }
    }

    /// The entries of a mapping, by canonical key name; keys whose value is null are left
    /// out (they mean "default"). Keys are matched as written, through `aliases`, or after
    /// turning snake_case into camelCase (so both seed schemas share one table).
    func entries(_ keys: [String], aliases: [String: String] = [:]) throws(ConfigError) -> [String: ConfigNode] {
        if isNull { return [:] }
        guard case .mapping(let mapping) = node else {
            throw error(
                "expected a mapping with keys \(keys.joined(separator: ", ")), found \(found)",
                fix: "indent the keys under it, one per line")
        }
        var result: [String: ConfigNode] = [:]
        var spelling: [String: String] = [:]
        for (keyNode, value) in mapping {
            guard case .scalar(let keyScalar) = keyNode else {
                throw ConfigNode(node: keyNode, path: path, file: file).error(
                    "a key must be a plain name", fix: "use one of \(keys.joined(separator: ", "))")
            }
            let written = keyScalar.string
            let childPath = path.isEmpty ? written : "\(path).\(written)"
            guard let canonical = Self.canonical(written, keys: keys, aliases: aliases) else {
                let place = ConfigNode(node: keyNode, path: childPath, file: file)
                var fix = "known keys here: \(keys.joined(separator: ", "))"
                if let near = Self.nearest(written, among: keys + aliases.keys.sorted()) {
                    fix = "did you mean \(aliases[near] ?? near)? " + fix
                }
                throw place.error("unknown key \"\(written)\"", fix: fix)
            }
            if let first = spelling[canonical] {
                throw ConfigNode(node: keyNode, path: childPath, file: file).error(
                    "\"\(written)\" repeats \"\(first)\" (both mean \(canonical))", fix: "keep one of them")
            }
            spelling[canonical] = written
            let child = ConfigNode(node: value, path: childPath, file: file)
            if !child.isNull { result[canonical] = child }
        }
        return result
    }

    func bool() throws(ConfigError) -> Bool {
        guard case .scalar(let scalar) = node else {
            throw error("expected true or false, found \(found)", fix: "write true or false")
        }
        if let value = node.bool { return value }
        // Quoted: the seed's loader (NimYAML) read a value by the field's type, so
        // `active: "false"` was false.
        switch scalar.string.lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default: throw error("expected true or false, found \(found)", fix: "write true or false")
        }
    }

    func integer(in range: ClosedRange<Int>, unit: String = "") throws(ConfigError) -> Int {
        guard case .scalar(let scalar) = node, let value = Int(scalar.string.replacingUnderscores) else {
            throw error(
                "expected a whole number, found \(found)",
                fix: "write a number from \(range.lowerBound) to \(range.upperBound)\(unit)")
        }
        guard range.contains(value) else {
            throw error(
                "\(value) is out of range", fix: "write a number from \(range.lowerBound) to \(range.upperBound)\(unit)"
            )
        }
        return value
    }

    func number() throws(ConfigError) -> Double {
        guard case .scalar(let scalar) = node, let value = Double(scalar.string.replacingUnderscores), value.isFinite
        else {
            throw error("expected a number, found \(found)", fix: "write a number such as 0.5")
        }
        return value
    }

    func string() throws(ConfigError) -> String {
        guard case .scalar(let scalar) = node else {
            throw error("expected a single value, found \(found)", fix: "write one value on the key's line")
        }
        return scalar.string
    }

    /// A list's items; a single value is taken as a list of one.
    /// A string that is an absolute path (the agent's working directory is no place to look).
    func absolutePath() throws(ConfigError) -> String {
        let text = try string()
        guard text.hasPrefix("/") else {
            throw error("\(found) is not an absolute path", fix: "write the file's absolute path, starting with /")
        }
        return text
    }

    func list() throws(ConfigError) -> [ConfigNode] {
        switch node {
        case .sequence(let sequence):
            return sequence.enumerated().map { ConfigNode(node: $1, path: "\(path)[\($0)]", file: file) }
        case .scalar:
            return isNull ? [] : [self]
        default:
            throw error("expected a list, found \(found)", fix: "write the items as [a, b] or as \"- a\" lines")
        }
    }

    func choice<Value: RawRepresentable & CaseIterable>(_: Value.Type) throws(ConfigError) -> Value
    where Value.RawValue == String {
        let names = Value.allCases.map(\.rawValue)
        let text = try string()
        guard let value = Value(rawValue: text) else {
            throw error(
                "\"\(text)\" is not one of \(names.joined(separator: ", "))",
                fix: "write one of \(names.joined(separator: ", "))")
        }
        return value
    }

    /// Resolves a key as written to its canonical name.
    static func canonical(_ written: String, keys: [String], aliases: [String: String]) -> String? {
        if keys.contains(written) { return written }
        if let alias = aliases[written] { return alias }
        let camel = written.snakeToCamel
        if keys.contains(camel) { return camel }
        return aliases[camel]
    }

    /// The known key closest to a misspelt one, if any is close.
    static func nearest(_ written: String, among keys: [String]) -> String? {
        func normal(_ text: String) -> [Character] { Array(text.lowercased().filter { $0 != "_" && $0 != "-" }) }
        let target = normal(written)
        var best: (key: String, distance: Int)?
        for key in keys {
            let distance = editDistance(target, normal(key))
            if distance < (best?.distance ?? .max) { best = (key, distance) }
        }
        guard let best, best.distance <= max(2, target.count / 3) else { return nil }
        return best.key
    }

    private static func editDistance(_ a: [Character], _ b: [Character]) -> Int {
        var previous = Array(0...b.count)
        for (i, x) in a.enumerated() {
            var current = [i + 1]
            for (j, y) in b.enumerated() {
                current.append(min(previous[j + 1] + 1, current[j] + 1, previous[j] + (x == y ? 0 : 1)))
            }
            previous = current
        }
        return previous[b.count]
    }
}

extension String {
    /// `bucket_bounds` → `bucketBounds`.
    fileprivate var snakeToCamel: String {
        guard contains("_") else { return self }
        var result = ""
        var upper = false
        for character in self {
            if character == "_" {
                upper = true
            } else {
                result += upper ? character.uppercased() : String(character)
                upper = false
            }
        }
        return result
    }

    /// YAML 1.1 allows `65_536`.
    fileprivate var replacingUnderscores: String { filter { $0 != "_" } }
}

// MARK: - The schema

/// Reads the document into a `FlowStatConfig`, section by section.
private struct ConfigReader {
    let file: String
    let warnings: ConfigWarnings

    func read(_ root: ConfigNode, into config: inout FlowStatConfig) throws(ConfigError) {
        let sections = try root.entries(["logic", "flowstat"])
        if let logic = sections["logic"] {
            let parts = try logic.entries(["metrics", "compression", "selection"])
            if let metrics = parts["metrics"] { try readMetrics(metrics, into: &config) }
            if let compression = parts["compression"] {
                if let folding = try compression.entries(["labelFolding"])["labelFolding"] {
                    config.labelFolding = try readLabelFolding(folding) ?? config.labelFolding
                }
            }
            if let selection = parts["selection"] { config.selection = try readSelection(selection) }
        }
        if let flowstat = sections["flowstat"] { try readExtensions(flowstat, into: &config) }
    }

    /// One CIDR network; `hostFix` ends the fix for host bits set (where a host goes instead).
    private func network(_ item: ConfigNode, hostFix: String) throws(ConfigError) -> IPNetwork {
        let text = try item.string()
        do {
            return try IPNetwork(parsing: text)
        } catch {
            switch error {
            case .badAddress:
                throw item.error(
                    "\"\(text)\" is not a network: the address is not IPv4 or IPv6",
                    fix: "write a CIDR such as 10.0.0.0/8 or fd00::/8")
            case .badPrefix:
                throw item.error(
                    "\"\(text)\" is not a network: bad prefix length",
                    fix: "write a prefix length of 0-32 for IPv4 or 0-128 for IPv6, e.g. 10.0.0.0/8")
            case .hostBitsSet(let written):
                throw item.error(
                    "\"\(text)\" has host bits set", fix: "write the network address (\(written)), \(hostFix)")
            }
        }
    }

    /// `histograms.rtt.peerGroups`: `{name: [CIDR, ...], ...}`, at most 16 groups, each name a
    /// label value of its own and each network in one group only.
    private func readPeerGroups(_ node: ConfigNode) throws(ConfigError) -> [RTTPeerGroup] {
        guard case .mapping(let mapping) = node.node else {
            throw node.error(
                "expected a mapping of group names to lists of networks, found \(node.found)",
                fix: "write e.g. peerGroups: {db: [10.1.0.0/16, fd00:1::/48]}")
        }
        var groups: [RTTPeerGroup] = []
        var owner: [IPNetwork: String] = [:]
        for (keyNode, value) in mapping {
            let keyPlace = ConfigNode(node: keyNode, path: node.path, file: node.file)
            guard case .scalar(let key) = keyNode, !key.string.isEmpty,
                key.string.unicodeScalars.allSatisfy({ $0.isASCII && $0.value >= 0x20 && $0 != "\"" && $0 != "\\" })
            else {
                throw keyPlace.error(
                    "a peer group needs a name of printable ASCII, without quotes or backslashes",
                    fix: "name the group, e.g. db")
            }
            let place = ConfigNode(node: value, path: "\(node.path).\(key.string)", file: node.file)
            var networks: [IPNetwork] = []
            for item in try place.list() {
                let parsed = try network(item, hostFix: "or the host as a /32 or /128")
                if let other = owner[parsed] {
                    throw item.error(
                        "\(parsed) is already in peer group \(other)", fix: "keep each network in one group")
                }
                owner[parsed] = key.string
                networks.append(parsed)
            }
            guard !networks.isEmpty else {
                throw place.error("peer group \(key.string) has no networks", fix: "list its networks, or remove it")
            }
            groups.append(RTTPeerGroup(name: key.string, networks: networks))
        }
        guard groups.count <= FlowStatConfig.maxRTTPeerGroups else {
            throw node.error(
                "\(groups.count) peer groups, at most \(FlowStatConfig.maxRTTPeerGroups)",
                fix: "merge groups: the kernel keeps one histogram per group")
        }
        return groups
    }

    // MARK: logic.metrics

    /// A metric's switch: `{active: bool}`, or just `true`/`false`.
    private func isActive(_ node: ConfigNode, extraKeys: [String] = [], aliases: [String: String] = [:])
        throws(ConfigError) -> (Bool, [String: ConfigNode])
    {
        if case .scalar = node.node { return (try node.bool(), [:]) }
        let entries = try node.entries(["active"] + extraKeys, aliases: aliases)
        return (try entries["active"]?.bool() ?? true, entries)
    }

    private func readMetrics(_ node: ConfigNode, into config: inout FlowStatConfig) throws(ConfigError) {
        let groups = try node.entries(["histograms", "gauges", "counters"])
        var enabled = FlowMetricCatalogue.defaultMetrics

        if let histograms = groups["histograms"] {
            // 2.x called the RTT histogram `latency`. The seed's own reference config.yml puts
            // `bucketBounds` directly under `histograms`, where its loader never read them.
            let (groupOn, entries) = try isActive(
                histograms, extraKeys: ["rtt", "bucketBounds"], aliases: ["latency": "rtt"])
            if let misplaced = entries["bucketBounds"] {
                warnings.add(
                    misplaced.warning(
                        "bucket bounds directly under histograms are not the RTT histogram's (the seed never read them)",
                        action: "ignored; the RTT histogram's bounds go under histograms.rtt.bucketBounds"))
            }
            var rttOn = true
            var boundsNode: ConfigNode?
            if let rtt = entries["rtt"] {
                let (on, fields) = try isActive(rtt, extraKeys: ["bucketBounds", "maxServicePorts", "peerGroups"])
                rttOn = on
                boundsNode = fields["bucketBounds"]
                if let limit = fields["maxServicePorts"] {
                    config.rttServicePorts = try limit.integer(in: FlowStatConfig.rttServicePortsRange)
                }
                if let groups = fields["peerGroups"] { config.rttPeerGroups = try readPeerGroups(groups) }
            }
            config.rttHistogram = groupOn && rttOn
            // Bounds are checked only where they take effect: the seed loaded an inactive
            // histogram whatever its bounds (e.g. `rtt: {active: false, bucketBounds: []}`).
            if let bounds = boundsNode {
                if config.rttHistogram {
                    if let seconds = try readBucketBounds(bounds, report: warnings) { config.rttBucketBounds = seconds }
                } else {
                    do {
                        // Checked for the operator's sake, without effect: report only what
                        // would be refused once the histogram is switched on.
                        if let seconds = try readBucketBounds(bounds, report: ConfigWarnings()) {
                            config.rttBucketBounds = seconds
                        }
                    } catch {
                        warnings.add(
                            bounds.warning(
                                "not checked: the RTT histogram is off; switched on, this would be refused: "
                                    + "\(error.problem) (\(error.location))",
                                action: "ignored while the histogram is off"))
                    }
                }
            }
        }

        for group in ConfigSwitch.Group.allCases {
            guard let node = groups[group.rawValue] else { continue }
            let members = FlowMetricCatalogue.all.filter { $0.configSwitch.group == group }
            var aliases: [String: String] = [:]
            for member in members {
                for alias in member.configSwitch.aliases { aliases[alias] = member.configSwitch.key }
            }
            let (groupOn, entries) = try isActive(node, extraKeys: members.map(\.configSwitch.key), aliases: aliases)
            for member in members {
                // A member the group does not mention keeps its default.
                var on = groupOn && member.defaultOn
                if let entry = entries[member.configSwitch.key] {
                    let entryOn = try isActive(entry).0
                    on = groupOn && entryOn
                }
                if on { enabled.insert(member.metric) } else { enabled.remove(member.metric) }
            }
        }
        config.metrics = enabled
    }

    /// Bucket bounds are milliseconds in the file (the seed's unit) and seconds inside.
    ///
    /// What the seed loaded loads: an empty list (it exported only the `+Inf` bucket) gives
    /// the default bounds, bounds out of order are sorted, repeated ones kept once, and
    /// bounds of 0 or below (no RTT falls in them) left out, each with a warning. Nil: keep
    /// the default bounds. Not numbers, or more than the kernel holds: refused.
    private func readBucketBounds(_ node: ConfigNode, report: ConfigWarnings) throws(ConfigError) -> [Double]? {
        let items = try listItems(node, report: report, what: "bucket bound")
        let limit = Int(FlowStatConfig.maxRTTBuckets)
        var bounds: [(milliseconds: Double, seconds: Double)] = []
        for item in items {
            let value = try item.number()
            guard value > 0 else {
                report.add(
                    item.warning(
                        "bound \(item.found) is not positive: no round-trip time falls at or below it",
                        action: "left out (the seed's bucket for it was always 0)"))
                continue
            }
            bounds.append((value, try millisecondsToSeconds(item)))
        }
        guard !bounds.isEmpty else {
            report.add(
                node.warning(
                    "no bucket bounds (the seed exported only the +Inf bucket)",
                    action: "the default bounds are used: 0.001 ms to 1000 ms in 1-2.5-5 steps"))
            return nil
        }
        let ordered = bounds.sorted { $0.milliseconds < $1.milliseconds }
        var unique: [(milliseconds: Double, seconds: Double)] = []
        for bound in ordered where bound.milliseconds != unique.last?.milliseconds { unique.append(bound) }
        if unique.count != bounds.count || !zip(bounds, unique).allSatisfy({ $0.milliseconds == $1.milliseconds }) {
            report.add(
                node.warning(
                    "bounds not in increasing order, or one given twice",
                    action: "used sorted, each once: "
                        + unique.map { PrometheusText.format($0.milliseconds) }.joined(separator: ", ") + " ms"))
        }
        guard unique.count <= limit else {
            throw node.error(
                "\(unique.count) bucket bounds, more than the kernel histogram's \(limit)",
                fix: "list at most \(limit) bounds")
        }
        return unique.map(\.seconds)
    }

    /// A list's items without `null` items and empty strings, which the seed loaded and
    /// which select or count nothing: each is left out with a warning.
    private func listItems(_ node: ConfigNode, report: ConfigWarnings, what: String) throws(ConfigError) -> [ConfigNode]
    {
        try node.list().filter { item in
            guard item.isNull || item.isEmptyString else { return true }
            report.add(item.warning("empty \(what)", action: "ignored"))
            return false
        }
    }

    /// `labelFolding: raw_endpoint`, or 2.x's `label_folding: {origin: raw_endpoint}`. An
    /// empty value (the seed then wrote `flow="flow_<sport>_<dport>"`) keeps the default.
    private func readLabelFolding(_ node: ConfigNode) throws(ConfigError) -> LabelFolding? {
        var value = node
        if case .mapping = node.node {
            guard let origin = try node.entries(["origin"])["origin"] else { return nil }
            value = origin
        }
        if value.isEmptyString {
            warnings.add(
                value.warning(
                    "empty label folding", action: "the default is used (one series per flow, by its endpoints)"))
            return nil
        }
        return try value.choice(LabelFolding.self)
    }

    /// Shifts the decimal exponent of the value as written, so `0.0025` ms becomes exactly
    /// the double nearest 2.5e-6 s (dividing by 1000 could land one ulp off it).
    private func millisecondsToSeconds(_ node: ConfigNode) throws(ConfigError) -> Double {
        let text = try node.string().replacingUnderscores
        var mantissa = Substring(text)
        var exponent = 0
        if let e = text.firstIndex(where: { $0 == "e" || $0 == "E" }), let parsed = Int(text[text.index(after: e)...]) {
            mantissa = text[..<e]
            exponent = parsed
        }
        if let seconds = Double("\(mantissa)e\(exponent - 3)") { return seconds }
        return try node.number() / 1000
    }

    // MARK: logic.selection

    /// The items of an optional list, see `listItems`.
    private func items(_ node: ConfigNode?, _ what: String) throws(ConfigError) -> [ConfigNode] {
        guard let node else { return [] }
        return try listItems(node, report: warnings, what: what)
    }

    private func readSelection(_ node: ConfigNode) throws(ConfigError) -> FlowSelection {
        let groups = try node.entries(
            ["process", "peering", "portRanges", "localPortRanges", "kubernetes"],
            aliases: [
                "portranges": "portRanges", "localportranges": "localPortRanges", "localPortranges": "localPortRanges",
            ])
        var selection = FlowSelection()
        if let process = groups["process"] {
            let fields = try process.entries(["pids", "cmds"])
            for item in try items(fields["pids"], "pid") {
                selection.pids.append(UInt32(try item.integer(in: 1...4_194_304)))
            }
            for item in try items(fields["cmds"], "process name") {
                let name = try item.string()
                guard !name.contains("/") else {
                    let base = name.split(separator: "/").last.map(String.init) ?? name
                    throw item.error(
                        "\"\(name)\" is a path; cmds match a process name",
                        fix: "write the name alone, e.g. \(base)")
                }
                selection.cmds.append(name)
            }
        }
        if let kubernetes = groups["kubernetes"] {
            // flowstat's: by the flow's workload (its socket's cgroup, and the kubelet's names).
            let fields = try kubernetes.entries(["namespaces", "pods", "containers"])
            for item in try items(fields["namespaces"], "namespace") { selection.namespaces.append(try item.string()) }
            for item in try items(fields["pods"], "pod") { selection.pods.append(try item.string()) }
            for item in try items(fields["containers"], "container") {
                selection.containers.append(try item.string())
            }
        }
        if let peering = groups["peering"] {
            // 2.x read its port ranges under peering (`selection.peering.portranges`).
            let fields = try peering.entries(
                ["addresses", "networks", "hosts", "portRanges"], aliases: ["portranges": "portRanges"])
            if let ranges = fields["portRanges"] { selection.remotePorts += try readPortRanges(ranges) }
            for item in try items(fields["addresses"], "address") {
                let text = try item.string()
                guard let address = IPAddress(text) else {
                    let fix =
                        text.contains("/")
                        ? "a network with a prefix length belongs under networks"
                        : "write an IPv4 or IPv6 address, e.g. 10.1.2.3 or fd00::1"
                    throw item.error("\"\(text)\" is not an IP address", fix: fix)
                }
                selection.addresses.append(address)
            }
            for item in try items(fields["networks"], "network") {
                selection.networks.append(try network(item, hostFix: "or the host under addresses"))
            }
            for item in try items(fields["hosts"], "host name") {
                let name = try item.string()
                guard !name.contains(where: \.isWhitespace) else {
                    throw item.error("\"\(name)\" is not a host name", fix: "write a name such as db.example.com")
                }
                selection.hosts.append(name)
            }
        }
        if let ranges = groups["portRanges"] { selection.remotePorts += try readPortRanges(ranges) }
        if let ranges = groups["localPortRanges"] { selection.localPorts = try readPortRanges(ranges) }
        return selection
    }

    /// Items `{lower: 80, upper: 443}` (either bound may be left out: 0 and 65535), or a
    /// single port.
    private func readPortRanges(_ node: ConfigNode) throws(ConfigError) -> [PortRange] {
        var ranges: [PortRange] = []
        for item in try listItems(node, report: warnings, what: "port range") {
            if case .scalar = item.node {
                let port = UInt16(try item.integer(in: 0...65_535, unit: " (a TCP port)"))
                ranges.append(PortRange(lower: port, upper: port))
                continue
            }
            let bounds = try item.entries(["lower", "upper"])
            let lower = try bounds["lower"]?.integer(in: 0...65_535, unit: " (a TCP port)") ?? 0
            let upper = try bounds["upper"]?.integer(in: 0...65_535, unit: " (a TCP port)") ?? 65_535
            guard lower <= upper else {
                throw item.error("lower \(lower) is above upper \(upper)", fix: "write lower <= upper")
            }
            ranges.append(PortRange(lower: UInt16(lower), upper: UInt16(upper)))
        }
        return ranges
    }

    // MARK: flowstat

    private func readExtensions(_ node: ConfigNode, into config: inout FlowStatConfig) throws(ConfigError) {
        let sections = try node.entries([
            "output", "source", "web", "bpf", "sampling", "cardinality", "labels", "kubelet",
        ])
        if let source = sections["source"] { config.source = try source.choice(SourceChoice.self) }
        if let output = sections["output"] {
            let text = try output.string()
            guard let mode = OutputMode(rawValue: text == "ss_exporter" ? "ss-exporter" : text) else {
                throw output.error(
                    "\"\(text)\" is not one of flowstat, ss-exporter", fix: "write flowstat or ss-exporter")
            }
            config.output = mode
        }
        if let web = sections["web"], let listen = try web.entries(["listenAddress"])["listenAddress"] {
            let text = try listen.string()
            do {
                config.listenAddress = try ListenAddress(parsing: text)
            } catch {
                throw listen.error(error.description, fix: "write :8020, 127.0.0.1:8020 or [::1]:8020")
            }
        }
        if let bpf = sections["bpf"] {
            let fields = try bpf.entries(["mapEntries", "refresh", "mode", "tcpRcvHooks", "cgroupPath"])
            if let entries = fields["mapEntries"] {
                config.bpf.mapEntries = UInt32(try entries.integer(in: FlowStatConfig.mapEntriesRange))
            }
            if let refresh = fields["refresh"] { config.bpf.refresh = try refresh.bool() }
            if let mode = fields["mode"] {
                if case .scalar = mode.node, try mode.string() == "auto" {
                    config.bpf.modes = Set(BPFMode.allCases)
                } else {
                    let items = try mode.list()
                    guard !items.isEmpty else {
                        throw mode.error("no snapshot mode", fix: "write auto, or list modes from \(BPFMode.spellings)")
                    }
                    var modes: Set<BPFMode> = []
                    for item in items { modes.insert(try item.choice(BPFMode.self)) }
                    config.bpf.modes = modes
                }
            }
            if let hooks = fields["tcpRcvHooks"] {
                let items = try hooks.list()
                let known = BPFOptions.receiveVariantNames
                var variants: Set<String> = []
                for item in items {
                    let name = try item.string()
                    guard known.contains(name) else {
                        throw item.error(
                            "\"\(name)\" is not a tcp_rcv_established variant",
                            fix: "list one or more of \(known.joined(separator: ", "))")
                    }
                    variants.insert(name)
                }
                guard !variants.isEmpty else {
                    throw hooks.error("no variant", fix: "list one or more of \(known.joined(separator: ", "))")
                }
                config.bpf.receiveVariants = variants
            }
            if let path = fields["cgroupPath"] {
                let text = try path.string()
                config.bpf.cgroupPath = text.isEmpty ? nil : text
            }
        }
        if let sampling = sections["sampling"] {
            let fields = try sampling.entries(["minUpdateInterval", "rttSampleEvery"])
            if let interval = fields["minUpdateInterval"] {
                let seconds = try interval.number()
                guard FlowStatConfig.minUpdateIntervalRange.contains(seconds) else {
                    throw interval.error(
                        "\(interval.found) s is out of range", fix: "write seconds from 0 to 60, e.g. 0.01")
                }
                config.sampling.minUpdateInterval = seconds
            }
            if let every = fields["rttSampleEvery"] {
                config.sampling.rttSampleEvery = UInt32(try every.integer(in: 1...Int(UInt32.max)))
            }
        }
        if let cardinality = sections["cardinality"] {
            let fields = try cardinality.entries(["maxFlows", "rankBy", "maxAggregates", "aggregateBy"])
            if let maxFlows = fields["maxFlows"] {
                config.cardinality.maxFlows = try maxFlows.integer(
                    in: FlowStatConfig.maxFlowsRange, unit: " (0: no cap)")
            }
            if let rank = fields["rankBy"] { config.cardinality.rankBy = try rank.choice(FlowRank.self) }
            if let maxAggregates = fields["maxAggregates"] {
                config.cardinality.maxAggregates = try maxAggregates.integer(in: FlowStatConfig.maxAggregatesRange)
            }
            if let aggregateBy = fields["aggregateBy"] {
                var labels: Set<AggregateLabel> = []
                for item in try aggregateBy.list() { labels.insert(try item.choice(AggregateLabel.self)) }
                config.cardinality.aggregateBy = labels
            }
        }
        if let labels = sections["labels"] {
            let fields = try labels.entries(["netns", "pid", "comm", "container", "pod", "namespace"])
            if let netns = fields["netns"] { config.labels.netns = try netns.bool() }
            if let pid = fields["pid"] { config.labels.pid = try pid.bool() }
            if let comm = fields["comm"] { config.labels.comm = try comm.bool() }
            if let container = fields["container"] { config.labels.container = try container.bool() }
            if let pod = fields["pod"] { config.labels.pod = try pod.bool() }
            if let namespace = fields["namespace"] { config.labels.namespace = try namespace.bool() }
        }
        if let kubelet = sections["kubelet"] {
            let fields = try kubelet.entries(["url", "refreshInterval", "tokenFile", "caFile"])
            if let url = fields["url"] {
                let text = try url.string()
                do {
                    config.kubelet.url = try text.isEmpty ? nil : KubeletURL(parsing: text)
                } catch {
                    throw url.error(error.description, fix: "write https://NODE:10250/pods, or \"\" for $NODE_IP")
                }
            }
            if let interval = fields["refreshInterval"] {
                let seconds = try interval.number()
                guard FlowStatConfig.kubeletRefreshIntervalRange.contains(seconds) else {
                    throw interval.error(
                        "\(interval.found) s is out of range", fix: "write seconds from 1 to 3600, e.g. 30")
                }
                config.kubelet.refreshInterval = seconds
            }
            if let token = fields["tokenFile"] { config.kubelet.tokenFile = try token.absolutePath() }
            if let ca = fields["caFile"] { config.kubelet.caFile = try ca.absolutePath() }
        }
    }
}

extension FlowStatConfig {
    /// Most RTT histogram bounds the kernel histogram holds.
    public static let maxRTTBuckets = 32
}
