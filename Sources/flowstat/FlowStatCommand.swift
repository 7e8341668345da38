import ArgumentParser
import FlowStatCore

/// The `flowstat` command line: `serve` (the default) runs the agent; `dump` and `top` show
/// flows in a terminal without Prometheus.
@main
struct FlowStatCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "flowstat",
        abstract: "Watch every TCP flow with eBPF and serve per-flow TCP metrics to Prometheus.",
        version: BuildInfo.current.version,
        subcommands: [ServeCommand.self, DumpCommand.self, TopCommand.self],
        defaultSubcommand: ServeCommand.self
    )
}
