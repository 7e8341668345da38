// SPDX-License-Identifier: Apache-2.0

import Glibc
import Testing

@testable import FlowStatCore

/// The parts of `--run-as` that need no privileges: naming capabilities and reading /proc.
@Suite("Privileges")
struct PrivilegesTests {
    @Test("capability sets print as capabilities(7) names, lowest first; root's full set as all")
    func capabilityNames() {
        #expect(CapabilitySet(bits: 0).description == "none")
        #expect(CapabilitySet(bits: 0x0000_00c0_0000_1000).description == "cap_net_admin,cap_perfmon,cap_bpf")
        #expect(CapabilitySet(bits: 0x1ff_ffff_ffff).description == "all")
        #expect(CapabilitySet(bits: 1 << 45).description == "cap_45")
        #expect(CapabilitySet(bits: 1 << 21).contains(.sysAdmin))
        #expect(!CapabilitySet(bits: 1 << 21).contains(.bpf))
    }

    @Test("a /proc status file gives every uid and gid, the capability sets and no_new_privs")
    func statusParsing() {
        let status = """
            Name:\tflowstat
            Uid:\t65534\t65534\t65534\t65534
            Gid:\t65534\t65534\t65534\t0
            CapInh:\t0000000000000000
            CapPrm:\t0000000000000000
            CapEff:\t000000c000001000
            CapAmb:\t0000000000200000
            NoNewPrivs:\t1
            """
        let state = Privileges.parseStatus(status, tid: 7)
        #expect(state.tid == 7)
        #expect(state.uids == [65534, 65534, 65534, 65534])
        #expect(state.gids == [65534, 65534, 65534, 0])
        #expect(state.effective.bits == 0xc0_0000_1000)
        #expect(state.permitted.bits == 0)
        #expect(state.ambient.contains(.sysAdmin))
        #expect(state.noNewPrivileges)
    }

    @Test("this test process's own threads are all listed")
    func ownThreads() {
        let threads = Privileges.threadStates()
        #expect(threads.contains { $0.tid == getpid() })
        #expect(threads.allSatisfy { $0.uids.count == 4 && $0.gids.count == 4 })
    }
}
