// SPDX-License-Identifier: Apache-2.0

import FlowStatCore
import Logging
import NIOConcurrencyHelpers

/// Re-reads the config file on SIGHUP (or `POST /-/reload`) and applies what can change
/// while the BPF programs stay loaded: selection, metric switches, output format, label
/// folding, labels and the cardinality cap. A config that fails to load or validate is
/// rejected with a logged error and the previous one stays in force;
/// `flowstat_config_last_reload_successful` says which happened.
///
/// Kernel-side settings (map size, RTT buckets, sampling, refresh) and the listen address
/// are fixed at start-up: a reload that changes them logs that a restart is needed.
final class ConfigReloader: Sendable {
    /// Turns a config into the scraper's export settings, with the command line's overrides.
    typealias Settings = @Sendable (FlowStatConfig) throws -> ExportSettings

    private struct State {
        var config: FlowStatConfig
        var filter: FlowFilter?
    }

    private let scraper: Scraper
    private let configPath: String?
    private let settings: Settings
    private let logger: Logger
    private let state: NIOLockedValueBox<State>

    /// Applies `config` (already loaded at start-up) and records it as the first load.
    init(scraper: Scraper, config: FlowStatConfig, configPath: String?, settings: @escaping Settings, logger: Logger)
        throws
    {
        self.scraper = scraper
        self.configPath = configPath
        self.settings = settings
        self.logger = logger
        let initial = try settings(config)
        if !config.selection.selectsEverything {
            logger.info("exporting only selected flows", metadata: ["selection": "\(config.selection.summary)"])
        }
        state = NIOLockedValueBox(State(config: config, filter: initial.filter))
        initial.filter?.resolver?.start()
        scraper.reconfigure(initial)
        scraper.recordReload(successful: true)
    }

    /// Stops background work (host re-resolution).
    func stop() {
        state.withLockedValue { $0.filter?.resolver?.stop() }
    }

    /// Reloads the config file; returns nil on success, else why it was rejected.
    @discardableResult
    func reload() -> String? {
        state.withLockedValue { state in
            let next: FlowStatConfig
            let export: ExportSettings
            do {
                next = try loadConfig(explicitPath: configPath, logger: logger)
                export = try settings(next)
            } catch {
                let reason = (error as? StartupError).map { "\($0.problem); \($0.fix)" } ?? "\(error)"
                logger.error("config reload rejected, the previous config stays in force: \(reason)")
                scraper.recordReload(successful: false)
                return reason
            }
            for setting in Self.fixedAtStartup(state.config, next) {
                logger.warning("config reload: \(setting) changed; it takes effect at the next restart")
            }
            state.filter?.resolver?.stop()
            export.filter?.resolver?.start()
            scraper.reconfigure(export)
            scraper.recordReload(successful: true)
            state = State(config: next, filter: export.filter)
            logger.info("config reloaded")
            return nil
        }
    }

    /// Settings that differ between two configs but only apply at start-up.
    private static func fixedAtStartup(_ old: FlowStatConfig, _ new: FlowStatConfig) -> [String] {
        var changed: [String] = []
        if old.bpf != new.bpf { changed.append("flowstat.bpf") }
        if old.sampling != new.sampling { changed.append("flowstat.sampling") }
        if old.rttBucketBounds != new.rttBucketBounds || old.rttHistogram != new.rttHistogram {
            changed.append("the RTT histogram")
        }
        if old.listenAddress != new.listenAddress { changed.append("flowstat.web.listenAddress") }
        return changed
    }
}

/// What a config sets for the scraper.
struct ExportSettings: Sendable {
    var options: MetricsEncoder.Options
    var limits: CardinalityLimits
    var filter: FlowFilter?
    var attributor: ProcessAttributor?
}

extension Scraper {
    func reconfigure(_ settings: ExportSettings) {
        reconfigure(
            options: settings.options, limits: settings.limits, filter: settings.filter, attributor: settings.attributor)
    }
}
