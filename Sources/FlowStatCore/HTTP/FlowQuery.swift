// SPDX-License-Identifier: Apache-2.0

import NIOCore

/// The parameters of `GET /api/flows?top=N&sort=KEY`, validated: `top` from 1 to
/// `maxTop` (default 50), `sort` one of `FlowSortKey` (default `rtt`). Anything else is a
/// 400 whose message says what is accepted.
struct FlowQuery: Sendable, Hashable {
    var top = 50
    var sort = FlowSortKey.rtt

    /// More rows than a page can usefully show; bounds the response at about 500 KiB.
    static let maxTop = 1000

    struct Invalid: Error {
        var message: String
    }

    init(uri: String) throws(Invalid) {
        guard let question = uri.firstIndex(of: "?") else { return }
        for pair in uri[uri.index(after: question)...].split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = parts[0]
            let value = parts.count > 1 ? parts[1] : ""
            switch name {
            case "top":
                guard let number = Int(value), (1...Self.maxTop).contains(number) else {
                    throw Invalid(message: "top must be a number from 1 to \(Self.maxTop), not \"\(value.prefix(40))\"")
                }
                top = number
            case "sort":
                guard let key = FlowSortKey(rawValue: String(value)) else {
                    throw Invalid(message: "sort must be one of \(FlowSortKey.spellings), not \"\(value.prefix(40))\"")
                }
                sort = key
            default:
                throw Invalid(message: "unknown parameter \"\(name.prefix(40))\"; /api/flows takes top and sort")
            }
        }
    }

    /// `{"flows_total":N,"sort":"rtt","top":50,"flows":[…]}` for `snapshot`.
    static func document(_ query: FlowQuery, snapshot: FlowSnapshot) -> ByteBuffer {
        let order = FlowRanking.top(snapshot.flows, by: query.sort, limit: query.top)
        var buffer = ByteBufferAllocator().buffer(capacity: 128 + 512 * order.count)
        buffer.writeStaticString("{\"flows_total\":")
        buffer.writeString(String(snapshot.flows.count))
        buffer.writeStaticString(",\"sort\":\"")
        buffer.writeString(query.sort.rawValue)
        buffer.writeStaticString("\",\"top\":")
        buffer.writeString(String(query.top))
        buffer.writeStaticString(",\"flows\":")
        FlowJSON.writeFlows(snapshot.flows, indices: order, into: &buffer)
        buffer.writeStaticString("}\n")
        return buffer
    }
}
