// SPDX-License-Identifier: Apache-2.0

/// A plain-text table with columns sized to their content, for `flowstat dump` and
/// `flowstat top`. Text only; terminals get the same bytes as pipes.
public struct TextTable: Sendable {
    /// One column: its heading and whether its cells align right (numbers).
    public struct Column: Sendable {
        public var title: String
        public var alignRight: Bool

        public init(_ title: String, alignRight: Bool = true) {
            self.title = title
            self.alignRight = alignRight
        }
    }

    public var columns: [Column]
    public var rows: [[String]] = []

    public init(columns: [Column]) {
        self.columns = columns
    }

    /// Adds a row; it must have one cell per column.
    public mutating func append(_ row: [String]) {
        precondition(row.count == columns.count, "one cell per column")
        rows.append(row)
    }

    /// The table, one line per row after a heading line, columns two spaces apart; lines are
    /// cut at `maxWidth` characters when given (terminals that would otherwise wrap).
    public func render(maxWidth: Int? = nil) -> [String] {
        var widths = columns.map { $0.title.count }
        for row in rows {
            for (index, cell) in row.enumerated() { widths[index] = max(widths[index], cell.count) }
        }
        func line(_ cells: [String]) -> String {
            var text = ""
            for (index, cell) in cells.enumerated() {
                if index > 0 { text += "  " }
                let padding = String(repeating: " ", count: widths[index] - cell.count)
                let last = index == cells.count - 1
                if columns[index].alignRight {
                    text += padding + cell
                } else {
                    text += cell + (last ? "" : padding)
                }
            }
            if let maxWidth, text.count > maxWidth { text = String(text.prefix(maxWidth)) }
            return text
        }
        return [line(columns.map(\.title))] + rows.map(line)
    }
}

/// How `dump` and `top` spell values: short, in the units operators read in `ss`.
public enum FlowFormat {
    /// `10.0.0.1:443`, or `[2001:db8::1]:443` for IPv6 (IPv4-mapped addresses print as IPv4).
    public static func endpoint(_ address: IPAddress, _ port: UInt16) -> String {
        address.isIPv4Mapped ? "\(address):\(port)" : "[\(address)]:\(port)"
    }

    /// Seconds as milliseconds with three decimals: `0.812`.
    public static func milliseconds(_ seconds: Double) -> String {
        fixed(seconds * 1000, decimals: 3)
    }

    /// `value` with `decimals` digits after the point, rounded half away from zero.
    public static func fixed(_ value: Double, decimals: Int) -> String {
        guard value.isFinite else { return value.isNaN ? "nan" : (value < 0 ? "-inf" : "inf") }
        var scale = 1.0
        for _ in 0..<decimals { scale *= 10 }
        let scaled = (value.magnitude * scale).rounded()
        guard scaled < 9e18 else { return value.description }
        let units = UInt64(scaled)
        let whole = units / UInt64(scale)
        var text = (value < 0 && units != 0 ? "-" : "") + String(whole)
        if decimals > 0 {
            let fraction = String(units % UInt64(scale))
            text += "." + String(repeating: "0", count: decimals - fraction.count) + fraction
        }
        return text
    }

    /// A rate with an SI prefix and `unit`: `950`, `12.3k`, `1.25M`, `3.4G` (three significant
    /// digits from 1k up).
    public static func scaled(_ value: Double, unit: String) -> String {
        let prefixes = ["", "k", "M", "G", "T", "P"]
        var value = value
        var index = 0
        while value.magnitude >= 1000, index < prefixes.count - 1 {
            value /= 1000
            index += 1
        }
        if index == 0 { return fixed(value, decimals: 0) + unit }
        let decimals = value.magnitude >= 100 ? 0 : (value.magnitude >= 10 ? 1 : 2)
        return fixed(value, decimals: decimals) + prefixes[index] + unit
    }

    /// `nginx/1234`, `pid 1234`, or `-` when the owner is unknown.
    public static func process(pid: UInt32, comm: String) -> String {
        switch (pid, comm.isEmpty) {
        case (0, true): "-"
        case (0, false): comm
        case (_, true): "pid \(pid)"
        default: "\(comm)/\(pid)"
        }
    }

    /// The slow-start threshold, `-` while the kernel still has it "infinite".
    public static func ssthresh(_ value: UInt32) -> String {
        value >= 0x7fff_ffff ? "-" : String(value)
    }
}

/// The `ss -ti`-like table of `flowstat dump`: state, endpoints, the catalogue's columns,
/// the owning process.
public enum FlowDumpTable {
    /// Renders the flows at `indices` (in that order).
    public static func render(_ flows: [FlowSample], indices: [Int]) -> [String] {
        let metricColumns = FlowMetricCatalogue.all.compactMap(\.column)
        var table = TextTable(
            columns: [
                .init("State", alignRight: false), .init("Local", alignRight: false), .init("Peer", alignRight: false),
            ]
                + metricColumns.map { .init($0.title) } + [.init("process", alignRight: false)])
        for index in indices {
            let flow = flows[index]
            table.append(
                [
                    TCPStateName.name(flow.state),
                    FlowFormat.endpoint(flow.key.local, flow.key.localPort),
                    FlowFormat.endpoint(flow.key.remote, flow.key.remotePort),
                ] + metricColumns.map { $0.cell(flow) } + [FlowFormat.process(pid: flow.pid, comm: flow.comm)])
        }
        return table.render()
    }
}
