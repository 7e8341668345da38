// SPDX-License-Identifier: Apache-2.0

/// prometheus_ss_exporter's command-line syntax, for its own flags only, so that a unit file
/// or container command written for it starts flowstat unchanged.
///
/// The seed (3.x, Nim) parses with `parseopt`, which takes a value after a colon
/// (`--port:8020`, `-p:8020`) as well as after `=`, and prints its version with `-v`. flowstat's
/// own flags keep their syntax; arguments after `--` are left alone.
enum SeedCommandLine {
    /// The seed's flags that take a value, in its spellings, with the flag flowstat reads.
    private static let valued: [String: String] = [
        "--port": "--port", "-p": "--port",
        "--config": "--config", "-c": "--config",
        "--log-level": "--log-level",
        "--create-config": "--create-config",
    ]

    /// `arguments` (without the program name) with the seed's spellings turned into flowstat's.
    static func translate(_ arguments: [String]) -> [String] {
        var result: [String] = []
        result.reserveCapacity(arguments.count + 2)
        for (index, argument) in arguments.enumerated() {
            if argument == "--" {
                result += arguments[index...]
                break
            }
            if argument == "-v" {
                result.append("--version")
                continue
            }
            // `-p=8020` is parseopt's too; `--port=8020` ArgumentParser already takes.
            if let separator = argument.firstIndex(where: { $0 == ":" || $0 == "=" }),
                let flag = valued[String(argument[..<separator])],
                argument[separator] == ":" || !argument.hasPrefix("--")
            {
                result += [flag, String(argument[argument.index(after: separator)...])]
                continue
            }
            result.append(argument)
        }
        return result
    }
}
