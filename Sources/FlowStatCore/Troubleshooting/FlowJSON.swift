// SPDX-License-Identifier: Apache-2.0

import NIOCore

/// Writes flows and histograms as JSON, for `flowstat dump --json` and the landing page's
/// `/api/flows` and `/api/histogram`.
///
/// Written straight into a `ByteBuffer` with the exposition's number writer (one capacity
/// reservation per flow, no `String` per field, no `Codable` boxes): the landing page asks
/// for this every few seconds on hosts with tens of thousands of flows. Every value is in
/// base units, and field names say the unit, as the metric names do.
public enum FlowJSON {
    /// `[flow, flow, …]` for the flows at `indices` (all flows, in snapshot order, when nil).
    public static func writeFlows(_ flows: [FlowSample], indices: [Int]? = nil, into buffer: inout ByteBuffer) {
        buffer.writeStaticString("[")
        var first = true
        func write(_ flow: borrowing FlowSample) {
            if !first { buffer.writeStaticString(",") }
            first = false
            writeFlow(flow, into: &buffer)
        }
        if let indices {
            for index in indices { write(flows[index]) }
        } else {
            for flow in flows { write(flow) }
        }
        buffer.writeStaticString("]")
    }

    /// `writeFlows` as a `String`, for command-line output.
    public static func flowsDocument(_ flows: [FlowSample], indices: [Int]? = nil) -> String {
        var buffer = ByteBufferAllocator().buffer(capacity: 256 + 512 * (indices?.count ?? flows.count))
        writeFlows(flows, indices: indices, into: &buffer)
        return String(buffer: buffer)
    }

    /// One flow as a JSON object:
    /// `{"state":"ESTAB","src":"10.0.0.1","sport":443,"dst":…,"dport":…,"netns":…,"rtt_seconds":…,…}`:
    /// every catalogue metric under its `jsonName`. `pid` and `comm` are null when unknown.
    public static func writeFlow(_ flow: borrowing FlowSample, into buffer: inout ByteBuffer) {
        // Fixed text under 128 bytes, each metric's name and number, two addresses, comm
        // escaped at most 6 bytes per byte.
        let bound =
            128 + FlowMetricCatalogue.slots.count * (64 + ByteWriter.maxDoubleLength) + 2 * IPAddress.maxTextLength
            + 6 * flow.comm.utf8.count + 6 * (flow.workload.map { $0.jsonTextLength } ?? 0)
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: bound) { destination in
            var writer = ByteWriter(destination)
            writer.write("{\"state\":\"")
            writer.write(string: TCPStateName.name(flow.state))
            writer.write("\",\"src\":\"")
            writer.writeInPlace { flow.key.local.render(into: $0) }
            writer.write("\",\"sport\":")
            writer.write(UInt64(flow.key.localPort))
            writer.write(",\"dst\":\"")
            writer.writeInPlace { flow.key.remote.render(into: $0) }
            writer.write("\",\"dport\":")
            writer.write(UInt64(flow.key.remotePort))
            writer.write(",\"netns\":")
            writer.write(UInt64(flow.key.netns))
            withUnsafePointer(to: flow) { flow in
                for metric in FlowMetricCatalogue.all {
                    let present = metric.isPresent(on: flow)
                    for series in metric.series {
                        writer.write(",\"")
                        writer.write(series.jsonName)
                        writer.write("\":")
                        guard present else {
                            writer.write("null")  // the kernel or its tcp_info lacks it
                            continue
                        }
                        switch series.value {
                        case .real(let get, _): writer.writeJSONNumber(get(flow))
                        case .integer(let get, _):
                            let value = get(flow)
                            if let unset = metric.unsetFrom, value >= unset {
                                writer.write("null")  // the kernel has not set it yet
                            } else {
                                writer.write(value)
                            }
                        }
                    }
                }
            }
            writer.write(",\"pid\":")
            if flow.pid == 0 { writer.write("null") } else { writer.write(UInt64(flow.pid)) }
            writer.write(",\"comm\":")
            if flow.comm.isEmpty {
                writer.write("null")
            } else {
                writer.write(byte: UInt8(ascii: "\""))
                writer.writeJSONEscaped(flow.comm)
                writer.write(byte: UInt8(ascii: "\""))
            }
            if let workload = flow.workload {
                writer.write(",\"cgroup_id\":")
                writer.write(workload.cgroupID)
                writer.write(",\"cgroup\":")
                writer.writeJSONString(workload.cgroupPath)
                writer.write(",\"container_id\":")
                writer.writeJSONString(workload.identity.containerID)
                writer.write(",\"pod_uid\":")
                writer.writeJSONString(workload.identity.podUID)
                writer.write(",\"container\":")
                writer.writeJSONString(workload.containerLabel.isEmpty ? nil : workload.containerLabel)
                writer.write(",\"pod\":")
                writer.writeJSONString(workload.podLabel.isEmpty ? nil : workload.podLabel)
                writer.write(",\"namespace\":")
                writer.writeJSONString(workload.namespaceLabel.isEmpty ? nil : workload.namespaceLabel)
            }
            writer.write(byte: UInt8(ascii: "}"))
            return writer.count
        }
    }

    /// `{"bounds":[…],"counts":[…],"sum":…,"count":…}`: per-bucket (not cumulative) counts,
    /// one more than bounds (the last is above the last bound); `null` without a histogram.
    public static func writeHistogram(_ histogram: Histogram?, into buffer: inout ByteBuffer) {
        guard let histogram else {
            buffer.writeStaticString("null")
            return
        }
        let bound = 64 + (histogram.bounds.count + histogram.counts.count + 2) * (ByteWriter.maxDoubleLength + 1)
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: bound) { destination in
            var writer = ByteWriter(destination)
            writer.write("{\"bounds\":[")
            for (index, value) in histogram.bounds.enumerated() {
                if index > 0 { writer.write(byte: UInt8(ascii: ",")) }
                writer.writeJSONNumber(value)
            }
            writer.write("],\"counts\":[")
            var total: UInt64 = 0
            for (index, count) in histogram.counts.enumerated() {
                if index > 0 { writer.write(byte: UInt8(ascii: ",")) }
                writer.write(count)
                total &+= count
            }
            writer.write("],\"sum\":")
            writer.writeJSONNumber(histogram.sum)
            writer.write(",\"count\":")
            writer.write(total)
            writer.write(byte: UInt8(ascii: "}"))
            return writer.count
        }
    }

    /// A JSON string literal's content for arbitrary text (quotes not included).
    public static func escape(_ text: String) -> String {
        String(unsafeUninitializedCapacity: max(6 * text.utf8.count, 1)) { buffer in
            var writer = ByteWriter(buffer.baseAddress!)
            writer.writeJSONEscaped(text)
            return writer.count
        }
    }
}

extension ByteWriter {
    /// A finite number as `write(_: Double)` spells it (valid JSON); `null` for NaN and
    /// infinities, which JSON cannot represent (at most `maxDoubleLength` bytes).
    mutating func writeJSONNumber(_ value: Double) {
        if value.isFinite { write(value) } else { write("null") }
    }

    /// Text escaped for a JSON string: quote, backslash and control characters (at most six
    /// times `text.utf8.count` bytes). Other bytes, UTF-8 included, pass through.
    mutating func writeJSONEscaped(_ text: String) {
        let hex: StaticString = "0123456789abcdef"
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""): write("\\\"")
            case UInt8(ascii: "\\"): write("\\\\")
            case 0..<0x20:
                write("\\u00")
                write(byte: hex.utf8Start[Int(byte >> 4)])
                write(byte: hex.utf8Start[Int(byte & 0xf)])
            default: write(byte: byte)
            }
        }
    }
}

extension Workload {
    /// Bytes of the text `FlowJSON` writes about it, before escaping, with its field names.
    fileprivate var jsonTextLength: Int {
        160 + cgroupPath.utf8.count + containerLabel.utf8.count + podLabel.utf8.count + namespaceLabel.utf8.count
            + (identity.containerID?.utf8.count ?? 0) + (identity.podUID?.utf8.count ?? 0)
    }
}

extension ByteWriter {
    /// A JSON string, or `null`.
    fileprivate mutating func writeJSONString(_ text: String?) {
        guard let text else {
            write("null")
            return
        }
        write(byte: UInt8(ascii: "\""))
        writeJSONEscaped(text)
        write(byte: UInt8(ascii: "\""))
    }
}
