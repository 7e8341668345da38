// SPDX-License-Identifier: Apache-2.0

import FlowStatCore
import Foundation
import NIOCore
import Testing

@Suite("Troubleshooting views: ranking, JSON, tables, top")
struct TroubleshootingTests {
    @Test("top-k by every key equals a full stable sort, for every k", arguments: FlowSortKey.allCases)
    func ranking(key: FlowSortKey) {
        // Many ties (cwnd 10, retransmits 0) so that the tie order is exercised.
        let flows = Fixtures.snapshot.flows + FakeFlowSource.demoSnapshot.flows + Fixtures.snapshot.flows
        let sorted = flows.indices.sorted { a, b in
            let va = key.value(of: flows[a]).isNaN ? -.infinity : key.value(of: flows[a])
            let vb = key.value(of: flows[b]).isNaN ? -.infinity : key.value(of: flows[b])
            return va > vb || (va == vb && a < b)
        }
        for k in 0...flows.count + 1 {
            #expect(FlowRanking.top(flows, by: key, limit: k) == Array(sorted.prefix(k)), "k = \(k)")
        }
        #expect(FlowRanking.top(flows, by: key) == sorted)
    }

    @Test("flows as JSON: every field in base units, unknown pid/comm and unset ssthresh as null, NaN as null")
    func flowJSON() throws {
        let flows = Fixtures.snapshot.flows
        let text = FlowJSON.flowsDocument(flows)
        let decoded = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [[String: Any]])
        #expect(decoded.count == flows.count)
        let v6 = decoded[0]
        #expect(v6["src"] as? String == "2001:db8::1")
        #expect(v6["sport"] as? Int == 8080)
        #expect(v6["dst"] as? String == "2001:db8::2")
        #expect(v6["rtt_seconds"] as? Double == 0.0125)
        #expect(v6["rtt_variance_seconds"] as? Double == 1e-10)
        #expect(v6["ssthresh_segments"] is NSNull)
        #expect(v6["bytes_acked"] as? UInt64 == UInt64.max)
        #expect(v6["pid"] is NSNull && v6["comm"] is NSNull)
        #expect(v6["state"] as? String == "ESTAB")
        let nginx = decoded[1]
        #expect(nginx["pid"] as? Int == 42 && nginx["comm"] as? String == "nginx")
        #expect(nginx["ssthresh_segments"] as? Int == 8)
        #expect(nginx["netns"] as? Int == Int(Fixtures.containerNetns))
        #expect(decoded[2]["src"] as? String == "192.168.1.5", "IPv4-mapped prints as IPv4")
        #expect(decoded[2]["delivery_rate_bytes_per_second"] is NSNull)
        #expect(decoded[3]["rtt_seconds"] as? Double == 123e-6)
    }

    @Test("process names with quotes and control characters stay valid JSON")
    func jsonEscaping() throws {
        var flow = Fixtures.snapshot.flows[1]
        flow.comm = "a\"b\\c\n\u{1}é"
        let text = FlowJSON.flowsDocument([flow])
        let decoded = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [[String: Any]])
        #expect(decoded[0]["comm"] as? String == flow.comm)
    }

    @Test("histogram JSON: per-bucket counts, total, null without a histogram")
    func histogramJSON() throws {
        var buffer = ByteBuffer()
        FlowJSON.writeHistogram(Histogram(bounds: [0.001, 0.01], counts: [1, 2, 3], sum: 0.5), into: &buffer)
        #expect(String(buffer: buffer) == #"{"bounds":[0.001,0.01],"counts":[1,2,3],"sum":0.5,"count":6}"#)
        buffer.clear()
        FlowJSON.writeHistogram(nil, into: &buffer)
        #expect(String(buffer: buffer) == "null")
    }

    @Test("dump table: ss-like columns, sorted, with units")
    func dumpTable() {
        let flows = Fixtures.snapshot.flows
        let lines = FlowDumpTable.render(flows, indices: FlowRanking.top(flows, by: .rtt))
        #expect(lines.count == flows.count + 1)
        #expect(lines[0].hasPrefix("State  Local"))
        #expect(lines[0].contains("rtt/rttvar ms"))
        #expect(lines[1].contains("[2001:db8::1]:8080"))
        #expect(lines[1].contains("12.500/0.000"))
        #expect(lines[2].contains("10.0.0.1:80") && lines[2].contains("10.0.0.3:1000") && lines[2].contains("nginx/42"))
        #expect(lines[2].contains("20.0Mbps"), "2.5 MB/s is 20 Mbit/s: \(lines[2])")
        #expect(lines.last!.contains("192.168.1.5:22"))
    }

    @Test("number formats")
    func formats() {
        #expect(FlowFormat.milliseconds(0.000031) == "0.031")
        #expect(FlowFormat.fixed(-1.5, decimals: 1) == "-1.5")
        #expect(FlowFormat.fixed(2.0005, decimals: 0) == "2")
        #expect(FlowFormat.scaled(999, unit: "B") == "999B")
        #expect(FlowFormat.scaled(1_234_567, unit: "B") == "1.23MB")
        #expect(FlowFormat.scaled(8e9, unit: "bps") == "8.00Gbps")
        #expect(FlowFormat.process(pid: 0, comm: "") == "-")
        #expect(FlowFormat.ssthresh(2_147_483_647) == "-")
    }

    @Test("top: rates between refreshes, sort keys switch the order, new flows have no rate")
    func topView() {
        let a = Fixtures.key(.ipv4, "10.0.0.1", 1, "10.0.0.2", 80)
        let b = Fixtures.key(.ipv4, "10.0.0.1", 2, "10.0.0.2", 80)
        func flow(_ key: FlowKey, rtt: Double, acked: UInt64, retrans: UInt64) -> FlowSample {
            FlowSample(key: key, rtt: rtt, cwnd: 10, bytesAcked: acked, retransmits: retrans)
        }
        var view = TopView(sort: .rtt)
        view.update(
            flows: [flow(a, rtt: 0.010, acked: 0, retrans: 0), flow(b, rtt: 0.001, acked: 0, retrans: 5)], time: 0)
        #expect(view.rates == [nil, nil])
        view.update(
            flows: [flow(a, rtt: 0.010, acked: 1_000, retrans: 0), flow(b, rtt: 0.001, acked: 500_000, retrans: 9)],
            time: 2_000_000_000)
        #expect(view.rates[0]?.bytesSentPerSecond == 500)
        #expect(view.rates[1]?.bytesSentPerSecond == 250_000)
        #expect(view.rates[1]?.retransmitsPerSecond == 2)
        #expect(view.ranked(limit: nil) == [0, 1])
        view.sort = .bytes
        #expect(view.ranked(limit: nil) == [1, 0])
        view.sort = .retrans
        #expect(view.ranked(limit: 1) == [1])

        let frame = view.frame(width: 200, height: 10, clock: "12:00:00", interval: 1)
        #expect(frame[0].contains("flows: 2") && frame[0].contains("sort: retrans"))
        #expect(frame[4].contains("10.0.0.1:2") && frame[4].contains("250kB"))
        #expect(TopView.SortKey(key: "b") == .bytes && TopView.SortKey(key: "x") == nil)
        #expect(view.frame(width: 30, height: 10, clock: "", interval: 1).allSatisfy { $0.count <= 30 })
    }
}
