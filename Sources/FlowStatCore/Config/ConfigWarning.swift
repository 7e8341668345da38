// SPDX-License-Identifier: Apache-2.0

/// A value in a configuration file that flowstat loads but ignores or adjusts, located down
/// to the line and key, with what flowstat does instead.
///
/// The seed exporter loaded configs that flowstat would otherwise refuse: an empty bucket
/// list under a histogram that is off, an empty process name, a `null` list item. Those
/// configs load; each such value gives a warning, logged at start-up and at every reload and
/// printed by `flowstat check-config`, so the operator learns what is not in effect.
///
/// Its description is one line for a terminal or a log:
/// `config.yml:9: logic.selection.process.cmds[0]: empty process name; ignored (it matches no process)`.
public struct ConfigWarning: Sendable, Equatable, CustomStringConvertible {
    /// The file as it was named (or `<string>` for text not read from a file).
    public var file: String
    /// 1-based line of the value; nil when it has no place.
    public var line: Int?
    /// Where in the document, e.g. `logic.metrics.histograms.rtt.bucketBounds`.
    public var keyPath: String
    /// What is odd about the value.
    public var problem: String
    /// What flowstat does with it instead.
    public var action: String

    public init(file: String, line: Int?, keyPath: String, problem: String, action: String) {
        self.file = file
        self.line = line
        self.keyPath = keyPath
        self.problem = problem
        self.action = action
    }

    /// `file:line: key.path`.
    public var location: String {
        var text = file
        if let line { text += ":\(line)" }
        if !keyPath.isEmpty { text += ": \(keyPath)" }
        return text
    }

    public var description: String { "\(location): \(problem); \(action)" }
}

/// A parsed configuration with the warnings its file gave.
public struct LoadedConfig: Sendable, Equatable {
    public var config: FlowStatConfig
    /// In document order; empty when every value took effect as written.
    public var warnings: [ConfigWarning]

    public init(config: FlowStatConfig, warnings: [ConfigWarning] = []) {
        self.config = config
        self.warnings = warnings
    }
}

/// Collects the warnings of one parse; the reader's structs share it by reference.
final class ConfigWarnings {
    private(set) var all: [ConfigWarning] = []

    func add(_ warning: ConfigWarning) { all.append(warning) }
}
