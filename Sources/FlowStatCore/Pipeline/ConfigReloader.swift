// SPDX-License-Identifier: Apache-2.0

import Logging
import NIOConcurrencyHelpers

#if canImport(Glibc)
import Glibc
#endif

/// Where the config comes from: a file (or the built-in defaults), with the command line's
/// settings laid over it. A reload reads it exactly as start-up did.
public struct ConfigFile: Sendable {
    /// The file read when none is named: the seed exporter's default, in the working directory.
    public static let defaultPath = "config.yml"

    /// The file named on the command line; it must exist. nil: `defaultPath` if it exists,
    /// else the built-in defaults.
    public var explicitPath: String?
    /// Settings given on the command line; they win over the file, at start-up and at
    /// every reload.
    public var overrides: @Sendable (inout FlowStatConfig) -> Void

    public init(explicitPath: String?, overrides: @escaping @Sendable (inout FlowStatConfig) -> Void = { _ in }) {
        self.explicitPath = explicitPath
        self.overrides = overrides
    }

    /// Reads the file and applies the overrides.
    public func load(logger: Logger) throws(SetupError) -> FlowStatConfig {
        var config: FlowStatConfig
        let path = explicitPath ?? (access(Self.defaultPath, F_OK) == 0 ? Self.defaultPath : nil)
        if let path {
            do {
                let loaded = try FlowStatConfig.load(contentsOf: path)
                config = loaded.config
                logger.info("read config \(path)")
                // At start-up and at every reload: values the seed accepted that are not in effect.
                for warning in loaded.warnings {
                    logger.warning("config: \(warning)")
                }
            } catch {
                throw SetupError(error)
            }
        } else {
            logger.info("no \(Self.defaultPath) in the working directory and none named: using the built-in defaults")
            config = FlowStatConfig()
        }
        overrides(&config)
        return config
    }
}

/// Re-reads the config (on SIGHUP or `POST /-/reload`) and applies what can change while
/// the BPF programs stay loaded: selection, metric switches, output format, label folding,
/// labels and the cardinality cap. A config that fails to load is rejected with a logged
/// error and the previous one stays in force; `flowstat_config_last_reload_successful` says
/// which happened.
///
/// Kernel-side settings (source, map size, modes, RTT buckets, sampling, refresh) and the
/// listen address are fixed at start-up: a reload that changes them logs that a restart is
/// needed.
public final class ConfigReloader: Sendable {
    private let pipeline: ExportPipeline
    private let file: ConfigFile
    private let logger: Logger
    /// The config in force.
    private let current: NIOLockedValueBox<FlowStatConfig>

    /// Records `config`, which `pipeline` was built with, as the first load.
    public init(pipeline: ExportPipeline, file: ConfigFile, loaded config: FlowStatConfig, logger: Logger) {
        self.pipeline = pipeline
        self.file = file
        self.logger = logger
        self.current = NIOLockedValueBox(config)
        if !config.selection.selectsEverything {
            logger.info("exporting only selected flows", metadata: ["selection": "\(config.selection.summary)"])
        }
        pipeline.recordReload(successful: true)
    }

    /// Reloads the config; returns nil on success, else why it was rejected.
    @discardableResult
    public func reload() -> String? {
        current.withLockedValue { current in
            let next: FlowStatConfig
            do {
                next = try file.load(logger: logger)
            } catch {
                logger.error("config reload rejected, the previous config stays in force: \(error)")
                pipeline.recordReload(successful: false)
                return (error as? SetupError)?.description ?? "\(error)"
            }
            for setting in Self.fixedAtStartup(current, next) {
                logger.warning("config reload: \(setting) changed; it takes effect at the next restart")
            }
            pipeline.apply(next)
            pipeline.recordReload(successful: true)
            current = next
            logger.info("config reloaded")
            return nil
        }
    }

    /// Settings that differ between two configs but only apply at start-up.
    private static func fixedAtStartup(_ old: FlowStatConfig, _ new: FlowStatConfig) -> [String] {
        var changed: [String] = []
        if old.source != new.source { changed.append("flowstat.source") }
        if old.bpf != new.bpf { changed.append("flowstat.bpf") }
        if old.sampling != new.sampling { changed.append("flowstat.sampling") }
        if old.rttBucketBounds != new.rttBucketBounds || old.rttHistogram != new.rttHistogram
            || old.rttServicePorts != new.rttServicePorts || old.rttPeerGroups != new.rttPeerGroups
        {
            changed.append("the RTT histogram")
        }
        if old.listenAddress != new.listenAddress { changed.append("flowstat.web.listenAddress") }
        return changed
    }
}
