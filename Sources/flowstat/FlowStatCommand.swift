// SPDX-License-Identifier: Apache-2.0

import ArgumentParser
import Dispatch
import FlowStatCore

/// The `flowstat` command line: `serve` (the default) runs the agent; `check-config`
/// validates a config file; `dump` and `top` show flows in a terminal without Prometheus.
struct FlowStatCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "flowstat",
        abstract: "Watch every TCP flow with eBPF and serve per-flow TCP metrics to Prometheus.",
        version: BuildInfo.current.version,
        subcommands: [ServeCommand.self, CheckConfigCommand.self, DumpCommand.self, TopCommand.self],
        defaultSubcommand: ServeCommand.self
    )
}

/// The entry point. Not an async `@main` command: that parks the main thread in
/// dispatch_main(), which half-exits it (pthread_exit into a destructor that sleeps), and
/// glibc's setuid() skips exiting threads, so `serve --run-as` would leave the thread group
/// leader (whose ids ps and /proc/PID/status show) root. Here the main thread stays a live
/// thread, waiting for the command, and every set*id call reaches it.
@main
enum Entry {
    static func main() {
        let finished = DispatchSemaphore(value: 0)
        // The seed exporter's `--port:8020` forms, so its unit files work unchanged.
        let arguments = SeedCommandLine.translate(Array(CommandLine.arguments.dropFirst()))
        Task.detached {
            await FlowStatCommand.main(arguments)
            finished.signal()
        }
        finished.wait()
    }
}
