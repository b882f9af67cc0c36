// swift-tools-version: 6.1
import CompilerPluginSupport
import PackageDescription

/// swift-syntax is built only with the SwiftKernels trait (the sanitizer builds leave it out).
let kernels = TargetDependencyCondition.when(traits: ["SwiftKernels"])

let strict: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("ExistentialAny"),
]

let package = Package(
    name: "GPUBridge",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "GPUBridge", targets: ["GPUBridge"]),
        .library(name: "GPUBridgeOpenCL", targets: ["GPUBridgeOpenCL"]),
        .library(name: "GPUBridgeCUDA", targets: ["GPUBridgeCUDA"]),
        .library(name: "GPUBridgeActors", targets: ["GPUBridgeActors"]),
        .library(name: "GPUBridgeCluster", targets: ["GPUBridgeCluster"]),
        .library(name: "GPUBridgeOps", targets: ["GPUBridgeOps"]),
        .library(name: "GPUBridgeKernels", targets: ["GPUBridgeKernels"]),
        .executable(name: "gpubridge", targets: ["gpubridge"]),
    ],
    traits: [
        .trait(
            name: "HTTP",
            description: """
                The operations endpoint (GPUBridgeOps on Hummingbird: /metrics, health probes, the JSON API) and \
                `gpubridge serve` / `node --http`. Without it those targets build empty and the CLI refuses --http.
                """),
        .trait(
            name: "OTLP",
            description: """
                OpenTelemetry trace export (swift-otel: OTLP over HTTP and gRPC) for `gpubridge node`, `serve` and \
                `call`. Without it the spans are still made (swift-distributed-tracing) but --otlp-endpoint is refused.
                """),
        .trait(
            name: "SwiftKernels",
            description: """
                Kernels written in Swift: the `@GPUKernel` macro (swift-syntax) in GPUBridgeKernels. Without it the \
                module keeps its run-time types and the macro is absent.
                """),
        .default(enabledTraits: ["HTTP", "OTLP", "SwiftKernels"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.5.0"),
        .package(url: "https://github.com/apple/swift-distributed-tracing", from: "1.7.0"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.0.0"),
        .package(url: "https://github.com/grpc/grpc-swift-2", from: "2.4.0"),
        .package(url: "https://github.com/grpc/grpc-swift-nio-transport", from: "2.9.0"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.27.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-certificates", from: "1.0.0"),
        .package(url: "https://github.com/apple/swift-crypto", "3.0.0"..<"5.0.0"),
        .package(url: "https://github.com/apple/swift-asn1", from: "1.0.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.0.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.5.0"),
        .package(url: "https://github.com/swift-otel/swift-otel", from: "1.6.0", traits: ["OTLPHTTP", "OTLPGRPC"]),
        .package(url: "https://github.com/swiftlang/swift-syntax", from: "603.0.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.80.0"),
    ],
    targets: [
        .target(name: "CGPUBridgeVectorMath"),
        .target(
            name: "GPUBridge",
            dependencies: [
                "CGPUBridgeVectorMath",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "GPUBridgeTestSupport",
            dependencies: [
                "GPUBridge", .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "InMemoryTracing", package: "swift-distributed-tracing"),
            ],
            path: "Tests/Support",
            swiftSettings: strict
        ),
        .target(
            name: "GPUBridgeActorsTestSupport",
            dependencies: ["GPUBridge", "GPUBridgeActors"],
            path: "Tests/ActorsSupport",
            swiftSettings: strict
        ),
        .target(
            name: "GPUBridgeOpenCL",
            dependencies: ["GPUBridge", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict
        ),
        .target(
            name: "GPUBridgeCUDA",
            dependencies: ["GPUBridge", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict
        ),
        .target(
            name: "GPUBridgeActors",
            dependencies: [
                "GPUBridge", .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "GPUBridgeCluster",
            dependencies: [
                "GPUBridge", "GPUBridgeActors",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "GPUBridgeOps",
            dependencies: [
                "GPUBridge", "GPUBridgeActors", "GPUBridgeCluster",
                .product(name: "Hummingbird", package: "hummingbird", condition: .when(traits: ["HTTP"])),
                .product(name: "HummingbirdTLS", package: "hummingbird", condition: .when(traits: ["HTTP"])),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "OTel", package: "swift-otel", condition: .when(traits: ["OTLP"])),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .macro(
            name: "GPUBridgeKernelMacros",
            dependencies: [
                .product(name: "SwiftSyntax", package: "swift-syntax", condition: kernels),
                .product(name: "SwiftSyntaxMacros", package: "swift-syntax", condition: kernels),
                .product(name: "SwiftSyntaxBuilder", package: "swift-syntax", condition: kernels),
                .product(name: "SwiftOperators", package: "swift-syntax", condition: kernels),
                .product(name: "SwiftDiagnostics", package: "swift-syntax", condition: kernels),
                .product(name: "SwiftCompilerPlugin", package: "swift-syntax", condition: kernels),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "GPUBridgeKernels",
            dependencies: [
                "GPUBridge", .target(name: "GPUBridgeKernelMacros", condition: kernels),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "gpubridge",
            dependencies: [
                "GPUBridge", "GPUBridgeOpenCL", "GPUBridgeCUDA", "GPUBridgeActors", "GPUBridgeCluster", "GPUBridgeOps",
                "GPUBridgeKernels",
                .product(name: "Hummingbird", package: "hummingbird", condition: .when(traits: ["HTTP"])),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "GPUBridgeTests",
            dependencies: [
                "GPUBridge", "GPUBridgeTestSupport", .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "InMemoryTracing", package: "swift-distributed-tracing"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "GPUBridgeOpenCLTests",
            dependencies: ["GPUBridge", "GPUBridgeOpenCL", "GPUBridgeTestSupport"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "GPUBridgeRuntimeTests",
            dependencies: ["GPUBridge", "GPUBridgeOpenCL", "GPUBridgeCUDA", "GPUBridgeTestSupport"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "GPUBridgeActorsTests",
            dependencies: [
                "GPUBridgeActors", "GPUBridge", "GPUBridgeTestSupport", "GPUBridgeActorsTestSupport", "GPUBridgeOpenCL",
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "GPUBridgeReliabilityTests",
            dependencies: [
                "GPUBridge", "GPUBridgeActors", "GPUBridgeOpenCL", "GPUBridgeTestSupport", "GPUBridgeActorsTestSupport",
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "GPUBridgeClusterTests",
            dependencies: [
                "GPUBridgeCluster", "GPUBridgeActors", "GPUBridge", "GPUBridgeTestSupport",
                "GPUBridgeActorsTestSupport",
                .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "Hummingbird", package: "hummingbird", condition: .when(traits: ["HTTP"])),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "GPUBridgeOpsTests",
            dependencies: [
                "GPUBridgeOps", "GPUBridge", "GPUBridgeActors", "GPUBridgeTestSupport",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Hummingbird", package: "hummingbird", condition: .when(traits: ["HTTP"])),
                .product(name: "HummingbirdTesting", package: "hummingbird", condition: .when(traits: ["HTTP"])),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "GPUBridgeKernelsTests",
            dependencies: [
                // Not the macro target: its diagnostics are checked through swiftc and the built plugin, so
                // swift-syntax is built once, for the plugin, not a second time for the tests.
                "GPUBridge", "GPUBridgeKernels", "GPUBridgeOpenCL", "GPUBridgeCUDA", "GPUBridgeTestSupport",
                // The Swift twins of the built-in kernels live in the CLI, which times them (`bench twins`).
                "gpubridge",
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "GPUBridgeCUDATests",
            dependencies: ["GPUBridge", "GPUBridgeCUDA", "GPUBridgeTestSupport"],
            swiftSettings: strict
        ),
    ]
)
