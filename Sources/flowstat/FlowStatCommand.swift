import ArgumentParser
import FlowStatCore

/// The `flowstat` command line: `serve` (the default) runs the agent; `check-config`
/// validates a config file.
@main
struct FlowStatCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "flowstat",
        abstract: "Watch every TCP flow with eBPF and serve per-flow TCP metrics to Prometheus.",
        version: BuildInfo.current.version,
        subcommands: [ServeCommand.self, CheckConfigCommand.self],
        defaultSubcommand: ServeCommand.self
    )
}
