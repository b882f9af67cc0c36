import ArgumentParser
import Foundation
import GPUBridge
import GPUBridgeActors
import GPUBridgeCluster
import GPUBridgeOps
import Logging
import Metrics
import Prometheus
import ServiceLifecycle

struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Host GPU actors in this process (no cluster, no database) and serve the operations endpoint.",
        discussion: """
            Opens the devices, hosts the node's actor types (vector-index, echo) in an embedded actor system, and \
            serves over HTTP: /metrics (Prometheus text), /health/live, /health/ready, and the JSON API \
            /api/v1/devices and /api/v1/actors (docs/OPERATIONS.md). Once listening it prints one JSON line: \
            {"event":"http","url":"http://host:port"}. With --demo-load N it also makes up to N vector-index queries \
            a second (one at a time) against an index of 10 000 vectors (key "demo"), so there is something to watch. SIGTERM or SIGINT \
            stops it: actors are deactivated (state saved with --state-path) and it exits 0.
            """
    )

    @Option(name: .long, help: "Address of the HTTP endpoint, host:port (port 0 picks one).")
    var http: String
    @Option(name: .long, help: "Devices to use: auto, cpu, opencl or cuda (a backend's devices). Default auto.")
    var devices: String = "auto"
    @Option(name: .long, help: "Dimension of the vector-index actors. Default 384.")
    var vectorDim: Int = 384
    @Option(name: .long, help: "Seconds without calls before an actor is deactivated. Default 300.")
    var idleTimeoutS: Int = 300
    @Option(name: .long, help: "SQLite file for actor state (default: in memory).")
    var statePath: String?
    @Option(
        name: .long,
        help: "Vector-index queries a second (at most, one at a time) made by the process itself (0: none). Default 0.")
    var demoLoad: Int = 0
    @OptionGroup var tracing: TraceOptions
    @Option(name: .long, help: "Serve HTTPS with this certificate chain (PEM); needs --http-tls-key.")
    var httpTLSCert: String?
    @Option(name: .long, help: "The private key (PEM) of --http-tls-cert.")
    var httpTLSKey: String?

    func validate() throws {
        _ = try HTTPAddress(parsing: http)
        guard BackendChoice(rawValue: devices) != nil else {
            throw ValidationError(
                "invalid --devices \(devices); expected one of \(BackendChoice.allCases.map(\.rawValue).joined(separator: ", "))"
            )
        }
        guard (1...4096).contains(vectorDim) else {
            throw ValidationError("invalid --vector-dim \(vectorDim); expected 1...4096")
        }
        guard (1...86_400).contains(idleTimeoutS) else {
            throw ValidationError("invalid --idle-timeout-s \(idleTimeoutS); expected 1...86400")
        }
        guard (0...10_000).contains(demoLoad) else {
            throw ValidationError("invalid --demo-load \(demoLoad); expected 0...10000 queries a second")
        }
        _ = try tracing.settings(serviceName: "gpubridge-serve", environment: ProcessInfo.processInfo.environment)
        _ = try tls()
    }

    /// HTTPS settings: both files or neither, each readable.
    func tls() throws -> OpsTLS? {
        switch (httpTLSCert, httpTLSKey) {
        case (nil, nil): return nil
        case let (certificate?, key?):
            for (flag, path) in [("--http-tls-cert", certificate), ("--http-tls-key", key)]
            where !FileManager.default.isReadableFile(atPath: path) {
                throw ValidationError("invalid \(flag) \(path); expected a readable PEM file")
            }
            return OpsTLS(certificatePath: certificate, keyPath: key)
        default:
            throw ValidationError("invalid HTTPS settings: give both --http-tls-cert and --http-tls-key, or neither")
        }
    }

    func run() async throws {
        let logger = Logger(label: "gpubridge.serve")
        let address = try HTTPAddress(parsing: http)
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        let traces = try tracing.settings(
            serviceName: "gpubridge-serve", environment: ProcessInfo.processInfo.environment)
        let exporter = try traces.map { try TraceOptions.start($0, logger: logger) }
        let (reports, found, _) = Backends.discover()
        let chosen = try BackendChoice(rawValue: devices)!.select(from: found, reports: reports)
        var bridgeOptions = BridgeOptions()
        bridgeOptions.backendOrder = Backends.preference.filter { kind in chosen.contains { $0.id.backend == kind } }
        let bridge = try Bridge(options: bridgeOptions, backends: chosen.map(\.backend))
        var systemOptions = ActorSystemOptions()
        systemOptions.idleTimeout = .seconds(idleTimeoutS)
        let storage: any ActorStorage = try statePath.map { try SQLiteActorStorage(path: $0) } ?? InMemoryActorStorage()
        let system = try EmbeddedActorSystem(bridge: bridge, storage: storage, options: systemOptions)
        try NodeActors.register(system, vectorDim: vectorDim)
        let sources = OpsSources(bridge: bridge, actors: system, registry: registry, errors: RecentErrors.process)
        // The span exporter first, so it stops last and flushes what the others traced.
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = exporter.map { [.init(service: $0)] } ?? []
        services.append(
            .init(service: try HTTPEndpoint.service(sources: sources, address: address, tls: try tls(), logger: logger))
        )
        if demoLoad > 0 {
            services.append(.init(service: DemoLoad(system: system, perSecond: demoLoad, dim: vectorDim)))
        }
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
        let failures = await system.shutdown()
        for (id, error) in failures {
            logger.error("could not deactivate an actor", metadata: ["actor": "\(id)", "error": "\(error)"])
        }
        NodeOutput.line(#"{"event":"stopped","error":\#(!failures.isEmpty)}"#)
        if !failures.isEmpty { throw ExitCode(1) }
    }
}

/// `serve --demo-load`: fills the vector index "demo" with 10 000 vectors, then queries it `perSecond` times a second
/// until the process stops, so the endpoint has calls, launches and an activation to show. Each query is a real
/// actor call; a failed one is logged and the load goes on.
struct DemoLoad: Service {
    let system: EmbeddedActorSystem
    let perSecond: Int
    let dim: Int

    func run() async throws {
        let logger = Logger(label: "gpubridge.serve.demo")
        let count = 10_000
        var generator = SystemRandomNumberGenerator()
        let vectors = (0..<count * dim).map { _ in Float.random(in: -1...1, using: &generator) }
        let index = try system.actor(VectorIndexActor.self, key: "demo")
        try await index.upsert(ids: Array(0..<count), vectors: vectors)
        let clock = ContinuousClock(), period = Duration.seconds(1) / perSecond
        var next = clock.now
        var row = 0
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            let query = Array(vectors[row * dim..<(row + 1) * dim])
            do { _ = try await index.query(query, k: 10) } catch {
                logger.warning("demo query failed", metadata: ["error": "\(error)"])
            }
            row = (row + 1) % count
            next = next.advanced(by: period)
            // Pacing to the asked rate, not a stand-in for work: the query above was the work.
            let deadline = next
            do { try await cancelWhenGracefulShutdown { try await Task.sleep(until: deadline, clock: clock) } } catch {
                return
            }
        }
    }
}
