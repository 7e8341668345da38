// SPDX-License-Identifier: Apache-2.0

import Foundation
import Testing

/// What the running kernel allows, asked of the kernel itself: `kernel-probe` (built by
/// `make test` from Tests/Support/kernel-probe) loads, attaches and runs one minimal program of
/// each kind flowstat uses. Tests take their expectations of hook variants and snapshot modes
/// from here, so they hold on any kernel, not only on the one they were written on.
///
/// The probe is not flowstat's code: when the probe says a kind loads and flowstat falls back
/// from it anyway, the test fails, as it should.
struct KernelProbe: Sendable {
    /// Each kind of program (`rcv_fentry`, `iter_tcp_storage`, …) and whether the kernel took it.
    let allowed: [String: Bool]
    /// Why each refused kind was refused, e.g. "errno 1 at load".
    let refusals: [String: String]

    static let binary =
        ProcessInfo.processInfo.environment["FLOWSTAT_KERNEL_PROBE"]
        ?? packageRoot.appendingPathComponent(".build-probe/kernel-probe").path
    static let object = URL(fileURLWithPath: binary).deletingLastPathComponent().appendingPathComponent("probe.bpf.o")
        .path

    /// Why the probe cannot run at all, or nil when its binary is there.
    static var missing: ProbeError? {
        FileManager.default.isExecutableFile(atPath: binary)
            ? nil : ProbeError(description: "no kernel probe at \(binary): run `make kernel-probe` (make test does)")
    }

    /// The probe's answers, asked once per test process; nil (with the reason) where it could not run.
    static let current: Result<KernelProbe, ProbeError> = {
        if let missing { return .failure(missing) }
        do {
            return .success(KernelProbe(output: try run([binary, object]).stdout))
        } catch {
            return .failure(ProbeError(description: "the kernel probe failed: \(error)"))
        }
    }()

    /// The probe's answers; a test that needs them fails (not skips) when the probe cannot run as root.
    static func require() throws -> KernelProbe {
        try current.get()
    }

    struct ProbeError: Error, CustomStringConvertible {
        var description: String
    }

    init(output: String) {
        var allowed: [String: Bool] = [:]
        var refusals: [String: String] = [:]
        for line in output.split(separator: "\n") {
            let fields = line.split(separator: " ").map(String.init)
            guard fields.count >= 2 else { continue }
            allowed[fields[0]] = fields[1] == "ok"
            if fields[1] == "refused", fields.count >= 4 {
                refusals[fields[0]] = "errno \(fields[2]) at \(fields[3])"
            }
        }
        self.allowed = allowed
        self.refusals = refusals
    }

    func allows(_ kind: String) -> Bool { allowed[kind] ?? false }

    /// The tcp_rcv_established variant flowstat must attach when it may try `candidates`:
    /// the first the kernel allows, in flowstat's documented order.
    func receiveVariant(among candidates: Set<String> = ["fentry", "tp_btf", "raw_tp", "tracepoint"]) -> String? {
        ["fentry", "tp_btf", "raw_tp", "tracepoint"].first { candidates.contains($0) && allows("rcv_\($0)") }
    }

    /// The inet_sock_set_state variant flowstat must attach.
    var stateVariant: String? {
        ["tp_btf", "raw_tp", "tracepoint"].first { allows("state_\($0)") }
    }

    /// The snapshot mode flowstat must choose (README, "Kernel support"): the storage-map
    /// iterator where it loads and the receive hook gives sockets storage (a typed variant),
    /// else iter/tcp per namespace where it can give sockets storage, else event mode.
    func mode(receiveCandidates: Set<String> = ["fentry", "tp_btf", "raw_tp", "tracepoint"]) -> String {
        let typedReceive = ["fentry", "tp_btf"].contains(receiveVariant(among: receiveCandidates) ?? "")
        if allows("iter_sk_storage_map") && typedReceive { return "live_storage_iter" }
        if allows("iter_tcp_storage") { return "live_tcp_iter" }
        return "event"
    }

    /// For `.enabled(if:)`: whether `--bpf.mode <mode>` can start on this kernel (the probe's
    /// default mode with every receive variant allowed is the best; a worse one can be forced).
    static func allowsMode(_ mode: String) -> Bool {
        guard let probe = try? current.get() else { return false }
        let order = ["live_storage_iter", "live_tcp_iter", "event"]
        return (order.firstIndex(of: mode) ?? 0) >= (order.firstIndex(of: probe.mode()) ?? 0)
            && (mode != "live_tcp_iter" || probe.allows("iter_tcp_storage"))
    }

    /// The skip reason that goes with `allowsMode`.
    static func whyNot(_ mode: String) -> Comment {
        switch current {
        case .failure(let error): Comment(rawValue: "\(mode): \(error)")
        case .success(let probe): Comment(rawValue: "this kernel cannot run \(mode): \(probe.summary)")
        }
    }

    /// One line for logs and skip reasons.
    var summary: String {
        allowed.keys.sorted().map { "\($0)=\(allowed[$0]! ? "ok" : "refused(\(refusals[$0] ?? "?"))")" }
            .joined(separator: " ")
    }
}

/// Retransmitted segments as the kernel hands them to BPF programs at `tcp_retransmit_skb`,
/// counted by the kernel probe's own program (`kernel-probe --retransmits`), not flowstat's.
///
/// On 6.18 the kernel now and then fires that tracepoint without running the BPF programs
/// attached to it: a do-nothing program counts the same shortfall against the MIB counters as
/// flowstat, on the same runs, with no recursion misses. This witness tells such segments,
/// which no BPF program can count, from segments flowstat lost.
final class RetransmitWitness {
    private let child: Child

    init() throws {
        if let missing = KernelProbe.missing { throw missing }
        child = try Child([KernelProbe.binary, "--retransmits", KernelProbe.object])
        guard child.readLine() == "ready" else {
            throw KernelProbe.ProbeError(description: "the retransmit witness did not attach (its stderr says why)")
        }
    }

    /// Segments counted since the witness attached.
    func segments() throws -> Double {
        child.send("read")
        guard let line = child.readLine(), let value = Double(line) else {
            throw KernelProbe.ProbeError(description: "the retransmit witness stopped answering")
        }
        return value
    }

    func stop() { child.stop() }
}
