// SPDX-License-Identifier: Apache-2.0

import Yams

#if canImport(Glibc)
import Glibc
#endif

extension FlowStatConfig {
    /// Parses a configuration document. `file` only names it in errors.
    ///
    /// Walks Yams' composed node tree rather than decoding with `Codable`, so that every
    /// error knows the line and key path of the value at fault and unknown keys are caught
    /// (a misspelt key silently falling back to its default is the worst config bug).
    public init(yaml text: String, file: String = "<string>") throws(ConfigError) {
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
        self.init()
        guard let root else { return }  // An empty file: every default.
        try ConfigReader(file: file).read(ConfigNode(node: root, path: "", file: file), into: &self)
    }

    /// Reads and parses the file at `path`.
    public init(contentsOf path: String) throws(ConfigError) {
        let text: String
        do {
            text = try readTextFile(path)
        } catch {
            throw ConfigError(
                file: path, line: nil, keyPath: "", problem: "cannot read the file: \(error.message)",
                fix: error.errno == ENOENT
                    ? "check the path, or write a sample there with flowstat --create-config \(path)"
                    : "check the path and its permissions")
        }
        try self.init(yaml: text, file: path)
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
            throw error("expected a mapping with keys \(keys.joined(separator: ", ")), found \(found)",
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
        guard case .scalar = node, let value = node.bool else {
            throw error("expected true or false, found \(found)", fix: "write true or false")
        }
        return value
    }

    func integer(in range: ClosedRange<Int>, unit: String = "") throws(ConfigError) -> Int {
        guard case .scalar(let scalar) = node, let value = Int(scalar.string.replacingUnderscores) else {
            throw error("expected a whole number, found \(found)",
                        fix: "write a number from \(range.lowerBound) to \(range.upperBound)\(unit)")
        }
        guard range.contains(value) else {
            throw error("\(value) is out of range", fix: "write a number from \(range.lowerBound) to \(range.upperBound)\(unit)")
        }
        return value
    }

    func number() throws(ConfigError) -> Double {
        guard case .scalar(let scalar) = node, let value = Double(scalar.string.replacingUnderscores), value.isFinite else {
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
            throw error("\"\(text)\" is not one of \(names.joined(separator: ", "))",
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

    func read(_ root: ConfigNode, into config: inout FlowStatConfig) throws(ConfigError) {
        let sections = try root.entries(["logic", "flowstat"])
        if let logic = sections["logic"] {
            let parts = try logic.entries(["metrics", "compression", "selection"])
            if let metrics = parts["metrics"] { try readMetrics(metrics, into: &config) }
            if let compression = parts["compression"] {
                if let folding = try compression.entries(["labelFolding"])["labelFolding"] {
                    config.labelFolding = try folding.choice(LabelFolding.self)
                }
            }
            if let selection = parts["selection"] { config.selection = try readSelection(selection) }
        }
        if let flowstat = sections["flowstat"] { try readExtensions(flowstat, into: &config) }
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
        var enabled = Set(FlowMetric.allCases)

        if let histograms = groups["histograms"] {
            // 2.x called the RTT histogram `latency`.
            let (groupOn, entries) = try isActive(histograms, extraKeys: ["rtt"], aliases: ["latency": "rtt"])
            var rttOn = true
            if let rtt = entries["rtt"] {
                let (on, fields) = try isActive(rtt, extraKeys: ["bucketBounds"])
                rttOn = on
                if let bounds = fields["bucketBounds"] { config.rttBucketBounds = try readBucketBounds(bounds) }
            }
            config.rttHistogram = groupOn && rttOn
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
                var on = groupOn
                if let entry = entries[member.configSwitch.key], try !isActive(entry).0 { on = false }
                if !on { enabled.remove(member.metric) }
            }
        }
        config.metrics = enabled
    }

    /// Bucket bounds are milliseconds in the file (the seed's unit) and seconds inside.
    private func readBucketBounds(_ node: ConfigNode) throws(ConfigError) -> [Double] {
        let items = try node.list()
        let limit = Int(FlowStatConfig.maxRTTBuckets)
        guard !items.isEmpty else {
            throw node.error("no bucket bounds", fix: "list at least one bound in milliseconds, or set active: false")
        }
        guard items.count <= limit else {
            throw node.error("\(items.count) bucket bounds, more than the kernel histogram's \(limit)",
                             fix: "list at most \(limit) bounds")
        }
        var seconds: [Double] = []
        var previous: Double?
        for item in items {
            let value = try item.number()
            guard value > 0 else {
                throw item.error("bound \(item.found) is not positive", fix: "bounds are milliseconds above 0, e.g. 0.1")
            }
            if let previous, value <= previous {
                throw item.error("bound \(item.found) is not above the bound before it (\(PrometheusText.format(previous)))",
                                 fix: "list the bounds in increasing order, each once")
            }
            previous = value
            seconds.append(try millisecondsToSeconds(item))
        }
        return seconds
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

    private func readSelection(_ node: ConfigNode) throws(ConfigError) -> FlowSelection {
        let groups = try node.entries(
            ["process", "peering", "portRanges", "localPortRanges"],
            aliases: ["portranges": "portRanges", "localportranges": "localPortRanges", "localPortranges": "localPortRanges"])
        var selection = FlowSelection()
        if let process = groups["process"] {
            let fields = try process.entries(["pids", "cmds"])
            for item in try fields["pids"]?.list() ?? [] {
                selection.pids.append(UInt32(try item.integer(in: 1...4_194_304)))
            }
            for item in try fields["cmds"]?.list() ?? [] {
                let name = try item.string()
                guard !name.isEmpty else { throw item.error("empty process name", fix: "write a name such as nginx") }
                guard !name.contains("/") else {
                    let base = name.split(separator: "/").last.map(String.init) ?? name
                    throw item.error("\"\(name)\" is a path; cmds match a process name",
                                     fix: "write the name alone, e.g. \(base)")
                }
                selection.cmds.append(name)
            }
        }
        if let peering = groups["peering"] {
            let fields = try peering.entries(["addresses", "networks", "hosts"])
            for item in try fields["addresses"]?.list() ?? [] {
                let text = try item.string()
                guard let address = IPAddress(text) else {
                    let fix = text.contains("/")
                        ? "a network with a prefix length belongs under networks"
                        : "write an IPv4 or IPv6 address, e.g. 10.1.2.3 or fd00::1"
                    throw item.error("\"\(text)\" is not an IP address", fix: fix)
                }
                selection.addresses.append(address)
            }
            for item in try fields["networks"]?.list() ?? [] {
                let text = try item.string()
                let network: IPNetwork
                do {
                    network = try IPNetwork(parsing: text)
                } catch {
                    switch error {
                    case .badAddress:
                        throw item.error("\"\(text)\" is not a network: the address is not IPv4 or IPv6",
                                         fix: "write a CIDR such as 10.0.0.0/8 or fd00::/8")
                    case .badPrefix:
                        throw item.error("\"\(text)\" is not a network: bad prefix length",
                                         fix: "write a prefix length of 0-32 for IPv4 or 0-128 for IPv6, e.g. 10.0.0.0/8")
                    case .hostBitsSet(let written):
                        throw item.error("\"\(text)\" has host bits set",
                                         fix: "write the network address (\(written)), or the host under addresses")
                    }
                }
                selection.networks.append(network)
            }
            for item in try fields["hosts"]?.list() ?? [] {
                let name = try item.string()
                guard !name.isEmpty, !name.contains(where: \.isWhitespace) else {
                    throw item.error("\"\(name)\" is not a host name", fix: "write a name such as db.example.com")
                }
                selection.hosts.append(name)
            }
        }
        if let ranges = groups["portRanges"] { selection.remotePorts = try readPortRanges(ranges) }
        if let ranges = groups["localPortRanges"] { selection.localPorts = try readPortRanges(ranges) }
        return selection
    }

    /// Items `{lower: 80, upper: 443}` (either bound may be left out: 0 and 65535), or a
    /// single port.
    private func readPortRanges(_ node: ConfigNode) throws(ConfigError) -> [PortRange] {
        var ranges: [PortRange] = []
        for item in try node.list() {
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
        let sections = try node.entries(["output", "source", "web", "bpf", "sampling", "cardinality", "labels"])
        if let source = sections["source"] { config.source = try source.choice(SourceChoice.self) }
        if let output = sections["output"] {
            let text = try output.string()
            guard let mode = OutputMode(rawValue: text == "ss_exporter" ? "ss-exporter" : text) else {
                throw output.error("\"\(text)\" is not one of flowstat, ss-exporter", fix: "write flowstat or ss-exporter")
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
                        throw item.error("\"\(name)\" is not a tcp_rcv_established variant",
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
                    throw interval.error("\(interval.found) s is out of range", fix: "write seconds from 0 to 60, e.g. 0.01")
                }
                config.sampling.minUpdateInterval = seconds
            }
            if let every = fields["rttSampleEvery"] {
                config.sampling.rttSampleEvery = UInt32(try every.integer(in: 1...Int(UInt32.max)))
            }
        }
        if let cardinality = sections["cardinality"] {
            let fields = try cardinality.entries(["maxFlows", "rankBy", "maxAggregates"])
            if let maxFlows = fields["maxFlows"] {
                config.cardinality.maxFlows = try maxFlows.integer(in: FlowStatConfig.maxFlowsRange, unit: " (0: no cap)")
            }
            if let rank = fields["rankBy"] { config.cardinality.rankBy = try rank.choice(FlowRank.self) }
            if let maxAggregates = fields["maxAggregates"] {
                config.cardinality.maxAggregates = try maxAggregates.integer(in: FlowStatConfig.maxAggregatesRange)
            }
        }
        if let labels = sections["labels"] {
            let fields = try labels.entries(["netns", "pid", "comm"])
            if let netns = fields["netns"] { config.labels.netns = try netns.bool() }
            if let pid = fields["pid"] { config.labels.pid = try pid.bool() }
            if let comm = fields["comm"] { config.labels.comm = try comm.bool() }
        }
    }
}

extension FlowStatConfig {
    /// Most RTT histogram bounds the kernel histogram holds.
    public static let maxRTTBuckets = 32
}

/// Reads a whole file as UTF-8 (no Foundation in the agent).
func readTextFile(_ path: String) throws(SystemCallError) -> String {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw SystemCallError(function: "open", errno: errno) }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 64 * 1024)
    while true {
        let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if count < 0 {
            if errno == EINTR { continue }
            throw SystemCallError(function: "read", errno: errno)
        }
        if count == 0 { break }
        bytes.append(contentsOf: chunk[0..<count])
    }
    return String(decoding: bytes, as: UTF8.self)
}

/// A failed system call, with its errno.
struct SystemCallError: Error {
    var function: String
    var errno: Int32
    var message: String { "\(function): \(String(cString: strerror(errno)))" }
}
