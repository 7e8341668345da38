// SPDX-License-Identifier: Apache-2.0

/// A configuration file flowstat cannot use, located down to the line and key.
///
/// Its description is one line for a terminal or a log:
/// `config.yml:14: logic.selection.portRanges[0]: lower 443 is above upper 80; write lower <= upper`.
public struct ConfigError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The file as it was named (or `<string>` for text not read from a file).
    public var file: String
    /// 1-based line of the offending key or value; nil when the problem has no place
    /// (an unreadable file).
    public var line: Int?
    /// Where in the document, e.g. `logic.selection.peering.networks[1]`; empty for the
    /// document as a whole.
    public var keyPath: String
    /// What is wrong, naming the value at fault.
    public var problem: String
    /// What to write instead.
    public var fix: String

    public init(file: String, line: Int?, keyPath: String, problem: String, fix: String) {
        self.file = file
        self.line = line
        self.keyPath = keyPath
        self.problem = problem
        self.fix = fix
    }

    /// `file:line: key.path: problem`, without the fix.
    public var location: String {
        var text = file
        if let line { text += ":\(line)" }
        if !keyPath.isEmpty { text += ": \(keyPath)" }
        return text
    }

    public var description: String { "\(location): \(problem); \(fix)" }
}
