// SPDX-License-Identifier: Apache-2.0

import CFlowStat
import Testing

@testable import FlowStatCore

/// The BPF map's records (bpf/flowstat.h) decoded into `FlowSample`: what the kernel wrote,
/// in base units, with the same derivations `tcp_get_info()` makes.
@Suite("Flow record decoding")
struct FlowRecordDecodingTests {
    static func key(family: UInt16, local: [UInt8], localPort: UInt16, remote: [UInt8], remotePort: UInt16)
        -> fs_flow_key
    {
        var key = fs_flow_key()
        withUnsafeMutableBytes(of: &key.saddr) { $0.copyBytes(from: local) }
        withUnsafeMutableBytes(of: &key.daddr) { $0.copyBytes(from: remote) }
        key.family = family
        key.sport = localPort
        key.dport = remotePort
        key.netns = 4_026_531_840
        return key
    }

    static let mapped10001: [UInt8] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 10, 0, 0, 1]
    static let mapped10002: [UInt8] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 10, 0, 0, 2]
    static let fd00one: [UInt8] = [0xFD, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]

    @Test("record sizes match the shared header's asserts")
    func layout() {
        #expect(MemoryLayout<fs_flow_key>.size == 44)
        #expect(MemoryLayout<fs_flow_stats>.size == 184)
        #expect(MemoryLayout<fs_flow_record>.size == 232)
        #expect(MemoryLayout<fs_closed_flow>.size == 240)
        #expect(MemoryLayout<fs_owner>.size == 40)
    }

    @Test("the diagnosis fields: microseconds and milliseconds to seconds, the fs_has bits, the application time")
    func diagnosisFields() throws {
        var stats = fs_flow_stats()
        stats.first_seen_ns = 1_000_000_000
        stats.last_update_ns = 11_000_000_000  // 10 s observed
        stats.busy_us = 4_000_000  // 4 s busy, of which
        stats.rwnd_limited_us = 1_500_000  // 1.5 s receiver-limited
        stats.sndbuf_limited_us = 500_000  // 0.5 s send-buffer-limited
        stats.application_us = 6_000_000  // the kernel's count: 10 s of age (in jiffies) less 4 s busy
        stats.has = UInt8(FS_HAS_TIME_LIMITS.rawValue | FS_HAS_RTO_TOTALS.rawValue)
        stats.delivery_rate_app_limited = 1
        stats.probes = 2
        stats.notsent_bytes = 300
        stats.rcv_rtt_us = 2_500
        stats.lost_out = 4
        stats.retrans_out = 3
        stats.total_rto = 5
        stats.total_rto_recoveries = 2
        stats.total_rto_time_ms = 1_250
        let sample = try #require(
            FlowSample(
                key: Self.key(
                    family: 2, local: Self.mapped10001, localPort: 1, remote: Self.mapped10002, remotePort: 2),
                stats: stats))
        #expect(sample.fields == [.timeLimits, .rtoTotals])
        #expect(sample.limitedTime(.network) == 2)
        #expect(sample.limitedTime(.receiver) == 1.5)
        #expect(sample.limitedTime(.senderBuffer) == 0.5)
        #expect(sample.limitedTime(.application) == 6)
        #expect(LimitReason.allCases.map(sample.limitedTime).reduce(0, +) == 10)
        #expect(sample.mostlyLimitedBy == .application)
        #expect(sample.deliveryRateAppLimited && sample.zeroWindowProbes == 2 && sample.notsentBytes == 300)
        #expect(sample.receiveRTT == 0.0025 && sample.lostSegments == 4 && sample.retransmitsInFlight == 3)
        #expect(sample.rtoTimeouts == 5 && sample.rtoRecoveries == 2 && sample.rtoTime == 1.25)
        // Seeded flows: the kernel's busy time can exceed what flowstat saw; application stays at 0.
        stats.first_seen_ns = 10_000_000_000
        stats.application_us = 0
        let seeded = try #require(
            FlowSample(
                key: Self.key(
                    family: 2, local: Self.mapped10001, localPort: 1, remote: Self.mapped10002, remotePort: 2),
                stats: stats))
        #expect(seeded.limitedTime(.application) == 0)
        #expect(seeded.mostlyLimitedBy == .network)
    }

    @Test("an IPv4 socket's mapped addresses print as IPv4; ports and netns carry over")
    func ipv4Key() throws {
        let key = Self.key(
            family: 2, local: Self.mapped10001, localPort: 443, remote: Self.mapped10002,
            remotePort: 51_234)
        let sample = try #require(FlowSample(key: key, stats: fs_flow_stats()))
        #expect(sample.key.family == .ipv4)
        #expect(sample.key.local.description == "10.0.0.1")
        #expect(sample.key.remote.description == "10.0.0.2")
        #expect(sample.key.localPort == 443 && sample.key.remotePort == 51_234)
        #expect(sample.key.netns == 4_026_531_840)
    }

    @Test("an IPv6 socket keeps IPv6 text, and IPv4-mapped peers of an IPv6 socket print as IPv4")
    func ipv6Key() throws {
        let v6 = try #require(
            FlowSample(
                key: Self.key(family: 10, local: Self.fd00one, localPort: 80, remote: Self.fd00one, remotePort: 9),
                stats: fs_flow_stats()))
        #expect(v6.key.family == .ipv6)
        #expect(v6.key.local.description == "fd00::1")
        let dualStack = try #require(
            FlowSample(
                key: Self.key(
                    family: 10, local: Self.mapped10001, localPort: 80, remote: Self.mapped10002, remotePort: 9),
                stats: fs_flow_stats()))
        #expect(dualStack.key.family == .ipv6)
        #expect(dualStack.key.remote.description == "10.0.0.2")
    }

    @Test("an unknown address family is skipped")
    func unknownFamily() {
        let key = Self.key(family: 1, local: Self.fd00one, localPort: 1, remote: Self.fd00one, remotePort: 1)
        #expect(FlowSample(key: key, stats: fs_flow_stats()) == nil)
    }

    @Test("values convert to base units as tcp_get_info derives them")
    func values() throws {
        var stats = fs_flow_stats()
        stats.srtt_us = 1_500
        stats.rttvar_us = 250
        stats.min_rtt_us = 900
        stats.snd_cwnd = 42
        stats.snd_ssthresh = 21
        stats.rate_delivered = 10
        stats.mss_cache = 1_448
        stats.rate_interval_us = 2_000
        stats.data_segs_in = 7
        stats.data_segs_out = 9
        stats.bytes_acked = 123_456_789_012
        stats.bytes_received = 5
        stats.total_retrans = 3
        stats.state = 1
        stats.pid = 77
        withUnsafeMutableBytes(of: &stats.comm) { $0.copyBytes(from: Array("nginx".utf8)) }
        let sample = try Self.sample(stats)
        #expect(sample.rtt == 0.0015)
        #expect(sample.rttVariance == 0.00025)
        #expect(sample.minRTT == 0.0009)
        #expect(sample.cwnd == 42 && sample.ssthresh == 21)
        #expect(sample.deliveryRate == 7_240_000)  // segments x MSS per interval: 10 x 1,448 B per 2 ms
        #expect(sample.dataSegmentsIn == 7 && sample.dataSegmentsOut == 9)
        #expect(sample.bytesAcked == 123_456_789_012 && sample.bytesReceived == 5)
        #expect(sample.retransmits == 3 && sample.state == 1)
        #expect(sample.pid == 77 && sample.comm == "nginx")
    }

    /// `stats` of an IPv4 flow 10.0.0.1:1 -> 10.0.0.2:2.
    static func sample(_ stats: fs_flow_stats) throws -> FlowSample {
        let key = Self.key(family: 2, local: Self.mapped10001, localPort: 1, remote: Self.mapped10002, remotePort: 2)
        return try #require(FlowSample(key: key, stats: stats))
    }

    @Test(
        "the delivery rate is tcp_get_info's integer: segments x MSS x 10^6 over the interval, the quotient truncated as do_div leaves it",
        arguments: [
            // 10 x 1,448 B per 3 ms is 4,826,666.67 B/s: the kernel reports 4,826,666.
            (10, 1_448, 3_000, 4_826_666), (10, 1_448, 2_000, 7_240_000), (1, 65_535, 1_000_000, 65_535),
        ] as [(UInt32, UInt32, UInt32, Double)])
    func deliveryRate(delivered: UInt32, mss: UInt32, intervalMicroseconds: UInt32, bytesPerSecond: Double) throws {
        var stats = fs_flow_stats()
        (stats.rate_delivered, stats.mss_cache, stats.rate_interval_us) = (delivered, mss, intervalMicroseconds)
        #expect(try Self.sample(stats).deliveryRate == bytesPerSecond)
    }

    @Test("no RTT sample yet: the kernel's ~0 minimum and a zero interval export as 0")
    func sentinels() throws {
        var stats = fs_flow_stats()
        stats.min_rtt_us = UInt32.max
        stats.rate_delivered = 5
        stats.rate_interval_us = 0
        let sample = try Self.sample(stats)
        #expect(sample.minRTT == 0)
        #expect(sample.deliveryRate == 0)
    }
}
