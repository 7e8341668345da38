// swift-tools-version:6.0
// SPDX-License-Identifier: Apache-2.0

// Swift 6 language mode (strict concurrency) is the default for tools version 6.0.
import PackageDescription

let package = Package(
    name: "flowstat",
    products: [
        .executable(name: "flowstat", targets: ["flowstat"]),
        .library(name: "FlowStatCore", targets: ["FlowStatCore"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.80.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
    ],
    targets: [
        // The only code that calls libbpf. Its BPF object is embedded through the skeleton
        // header the Makefile generates into Sources/CFlowStat/generated (`make bpf`).
        .target(
            name: "CFlowStat",
            linkerSettings: [
                .linkedLibrary("bpf"), .linkedLibrary("elf"), .linkedLibrary("z"), .linkedLibrary("deflate"),
                .linkedLibrary("crypt"),
            ]
        ),
        .target(
            name: "FlowStatCore",
            dependencies: [
                "CFlowStat",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Yams", package: "Yams"),
            ]
        ),
        .executableTarget(
            name: "flowstat",
            dependencies: [
                "FlowStatCore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "FlowStatCoreTests",
            dependencies: [
                "FlowStatCore",
                "CFlowStat",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            exclude: ["Fixtures"]  // YAML configs the tests read by path
        ),
        // Privileged end-to-end tests: they run the flowstat binary (built beside them by
        // `swift build --build-tests`, or $FLOWSTAT_BIN) against real flows.
        // DeploymentKitTests also builds expositions through the library (no BPF) for the names
        // the dashboard and rules may use.
        .testTarget(
            name: "IntegrationTests",
            dependencies: ["FlowStatCore", .product(name: "NIOCore", package: "swift-nio")]
        ),
    ]
)
