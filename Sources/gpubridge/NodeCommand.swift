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

/// The settings of `gpubridge node`, as read from a JSON file (`--config`); every key is optional.
struct NodeConfigFile: Decodable {
    var listen: String?
    var advertise: String?
    var databaseURL: String?
    var cluster: String?
    var tlsCertificate: String?
    var tlsKey: String?
    var tlsCA: String?
    var plaintext: Bool?
    var devices: String?
    var vectorDim: Int?
    var roundIntervalMs: Int?
    var leaseMs: Int?
    var callTimeoutMs: Int?
    var idleTimeoutS: Int?
    var statePath: String?
    var metricsFile: String?
    var http: String?
    var httpTLS: Bool?
    var otlpEndpoint: String?
    var otlpProtocol: String?
    var maxCallBytes: Int?
}

struct NodeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "node",
        abstract: "Run a cluster node: host GPU actors, join the membership table, serve calls over gRPC.",
        discussion: """
            Settings come from flags, then environment variables (GPUBRIDGE_NODE_LISTEN, GPUBRIDGE_DATABASE_URL, \
            GPUBRIDGE_CLUSTER, GPUBRIDGE_TLS_CERT, GPUBRIDGE_TLS_KEY, GPUBRIDGE_TLS_CA, GPUBRIDGE_NODE_DEVICES, \
            GPUBRIDGE_METRICS_FILE, GPUBRIDGE_HTTP, GPUBRIDGE_HTTP_TLS=1), then \
            the JSON file given with --config (keys: listen, advertise, databaseURL, cluster, tlsCertificate, tlsKey, tlsCA, \
            plaintext, devices, vectorDim, roundIntervalMs, leaseMs, callTimeoutMs, idleTimeoutS, \
            statePath, metricsFile, http, httpTLS, otlpEndpoint, otlpProtocol, maxCallBytes). Without a database URL the node runs alone with in-memory membership and directory. Traffic \
            between nodes is mutual TLS; --plaintext is for local development only. On SIGTERM or SIGINT the node \
            deactivates its actors (snapshots saved), leaves the directory, marks itself ShuttingDown then Dead, and \
            exits 0. If its membership lease ends (it could not renew it in time) it stops and exits 1. When ready it prints one JSON line: \
            {"event":"ready","node":"host:port@generation"}. With --metrics-file the node's metrics (calls made and \
            served, call durations, lease renewal failures, activations, launches, pool and copy counters) are written there \
            in Prometheus' text format every 2 seconds and at exit, replaced atomically (for node_exporter's textfile \
            collector or any scraper that reads files). With --http HOST:PORT the node serves its operations \
            endpoint there (/metrics, /health/live, /health/ready, /api/v1/devices, /api/v1/actors, /api/v1/cluster; \
            docs/OPERATIONS.md) and prints {"event":"http","url":"http://host:port"} once listening. With \
            --otlp-endpoint URL (or OTEL_EXPORTER_OTLP_ENDPOINT) it sends its spans (calls served, actor calls, kernel \
            launches, copies) to an OpenTelemetry collector, continuing the caller's trace.
            """
    )

    @Option(name: .long, help: "JSON configuration file.")
    var config: String?
    @Option(name: .long, help: "Address to listen on and advertise, host:port (port 0 picks one). Default 127.0.0.1:0.")
    var listen: String?
    @Option(
        name: .long,
        help: "Address to advertise instead, host:port (behind a proxy or NAT); port 0 advertises the bound port.")
    var advertise: String?
    @OptionGroup var connection: ClusterConnectionOptions
    @OptionGroup var tracing: TraceOptions
    @Option(name: .long, help: "Devices to use: auto, cpu, opencl or cuda (a backend's devices). Default auto.")
    var devices: String?
    @Option(name: .long, help: "Dimension of the vector-index actors this node hosts. Default 384.")
    var vectorDim: Int?
    @Option(name: .long, help: "Membership round (lease renewal, expiry, table read) in milliseconds. Default 1000.")
    var roundIntervalMs: Int?
    @Option(
        name: .long,
        help: "Membership lease in milliseconds: a node that cannot renew it within this time is dead. Default 10000.")
    var leaseMs: Int?
    @Option(name: .long, help: "Deadline of calls this node makes, in milliseconds. Default 30000.")
    var callTimeoutMs: Int?
    @Option(name: .long, help: "Seconds without calls before an actor is deactivated. Default 300.")
    var idleTimeoutS: Int?
    @Option(name: .long, help: "SQLite file for actor state when no database URL is given (default: in memory).")
    var statePath: String?
    @Option(name: .long, help: "File to write the node's metrics to, Prometheus text format, every 2 s and at exit.")
    var metricsFile: String?
    @Option(name: .long, help: "Serve the operations endpoint (metrics, health, JSON API) over HTTP at host:port.")
    var http: String?
    @Flag(name: .long, help: "Serve --http over HTTPS with the node's certificate and key (--tls-cert, --tls-key).")
    var httpTLS = false
    @Option(
        name: .long,
        help: "Largest call (arguments) or reply (body) accepted, in bytes; more is refused. Default 1073741824.")
    var maxCallBytes: Int?

    /// Settings after merging flags, environment and file.
    struct Settings {
        var host = "127.0.0.1"
        var port = 0
        var databaseURL: String?
        var cluster = "gpubridge"
        var security = ClusterSecurity.plaintext
        var devices = BackendChoice.auto
        var vectorDim = 384
        var options = ClusterOptions()
        var idleTimeout: Duration = .seconds(300)
        var statePath: String?
        var metricsFile: String?
        var http: HTTPAddress?
        var httpTLS: OpsTLS?
        var traces: TraceExportSettings?
        var limits = WireLimits()
    }

    func settings(environment: [String: String]) throws -> Settings {
        var file = NodeConfigFile()
        if let config {
            guard let data = FileManager.default.contents(atPath: config) else {
                throw ValidationError("invalid --config \(config): not a readable file")
            }
            do { file = try JSONDecoder().decode(NodeConfigFile.self, from: data) } catch {
                throw ValidationError("invalid --config \(config): \(error)")
            }
        }
        var s = Settings()
        let listen = self.listen ?? environment["GPUBRIDGE_NODE_LISTEN"] ?? file.listen ?? "127.0.0.1:0"
        guard let colon = listen.lastIndex(of: ":"), let port = Int(listen[listen.index(after: colon)...]),
            (0...65_535).contains(port),
            !listen[..<colon].isEmpty
        else {
            throw ValidationError("invalid --listen \(listen); expected host:port with port 0...65535")
        }
        s.host = String(listen[..<colon])
        s.port = port
        if let advertise = self.advertise ?? file.advertise {
            guard let colon = advertise.lastIndex(of: ":"), let port = Int(advertise[advertise.index(after: colon)...]),
                (0...65_535).contains(port), !advertise[..<colon].isEmpty
            else {
                throw ValidationError("invalid --advertise \(advertise); expected host:port with port 0...65535")
            }
            s.options.advertisedHost = String(advertise[..<colon])
            s.options.advertisedPort = port == 0 ? nil : port
        }
        s.databaseURL = connection.databaseURL ?? environment["GPUBRIDGE_DATABASE_URL"] ?? file.databaseURL
        s.cluster = connection.cluster ?? environment["GPUBRIDGE_CLUSTER"] ?? file.cluster ?? "gpubridge"
        let cert = connection.tlsCert ?? environment["GPUBRIDGE_TLS_CERT"] ?? file.tlsCertificate
        let key = connection.tlsKey ?? environment["GPUBRIDGE_TLS_KEY"] ?? file.tlsKey
        let ca = connection.tlsCA ?? environment["GPUBRIDGE_TLS_CA"] ?? file.tlsCA
        s.security = try Self.security(
            certificate: cert, key: key, ca: ca, plaintext: connection.plaintext || file.plaintext == true)
        let deviceText = devices ?? environment["GPUBRIDGE_NODE_DEVICES"] ?? file.devices ?? "auto"
        guard let choice = BackendChoice(rawValue: deviceText) else {
            throw ValidationError(
                "invalid --devices \(deviceText); expected one of \(BackendChoice.allCases.map(\.rawValue).joined(separator: ", "))"
            )
        }
        s.devices = choice
        s.vectorDim = vectorDim ?? file.vectorDim ?? 384
        guard (1...4096).contains(s.vectorDim) else {
            throw ValidationError("invalid --vector-dim \(s.vectorDim); expected 1...4096")
        }
        s.options.host = s.host
        s.options.port = s.port
        s.options.roundInterval = .milliseconds(roundIntervalMs ?? file.roundIntervalMs ?? 1000)
        s.options.leaseDuration = .milliseconds(leaseMs ?? file.leaseMs ?? 10_000)
        s.options.callTimeout = .milliseconds(callTimeoutMs ?? file.callTimeoutMs ?? 30_000)
        s.options.labels = ["pid": "\(ProcessInfo.processInfo.processIdentifier)", "version": GPUBridgeVersion.string]
        s.idleTimeout = .seconds(idleTimeoutS ?? file.idleTimeoutS ?? 300)
        s.statePath = statePath ?? file.statePath
        s.metricsFile = metricsFile ?? environment["GPUBRIDGE_METRICS_FILE"] ?? file.metricsFile
        if let path = s.metricsFile {
            let folder = (path as NSString).deletingLastPathComponent
            var isFolder: ObjCBool = false
            guard !path.hasSuffix("/"),
                FileManager.default.fileExists(atPath: folder.isEmpty ? "." : folder, isDirectory: &isFolder),
                isFolder.boolValue
            else {
                throw ValidationError("invalid --metrics-file \(path); expected a file path in an existing folder")
            }
        }
        if let text = http ?? environment["GPUBRIDGE_HTTP"] ?? file.http {
            s.http = try HTTPAddress(parsing: text)
        }
        if httpTLS || environment["GPUBRIDGE_HTTP_TLS"] == "1" || file.httpTLS == true {
            guard s.http != nil else { throw ValidationError("invalid --http-tls without --http; give both") }
            guard case let .mutualTLS(certificate, key, _) = s.security else {
                throw ValidationError(
                    "invalid --http-tls with --plaintext; it serves HTTPS with the node's --tls-cert and --tls-key")
            }
            s.httpTLS = OpsTLS(certificatePath: certificate, keyPath: key)
        }
        s.traces = try tracing.settings(
            serviceName: "gpubridge-node", environment: environment, endpoint: file.otlpEndpoint,
            protocolName: file.otlpProtocol)
        if let bytes = maxCallBytes ?? file.maxCallBytes {
            guard WireLimits.maxCallBytesRange.contains(bytes) else {
                let range = WireLimits.maxCallBytesRange
                throw ValidationError(
                    "invalid --max-call-bytes \(bytes); expected \(range.lowerBound)...\(range.upperBound)")
            }
            s.limits.maxCallBytes = bytes
        }
        do { try s.options.validate() } catch { throw ValidationError("invalid node settings: \(error)") }
        do { try s.security.validate() } catch { throw ValidationError("invalid TLS settings: \(error)") }
        return s
    }

    /// Mutual TLS with all three files, or plaintext when asked for and no file is given; anything else is refused.
    static func security(certificate: String?, key: String?, ca: String?, plaintext: Bool) throws -> ClusterSecurity {
        switch (certificate, key, ca, plaintext) {
        case let (cert?, key?, ca?, false):
            return .mutualTLS(certificate: cert, privateKey: key, trustRoots: ca)
        case (nil, nil, nil, true):
            return .plaintext
        case (_, _, _, true):
            throw ValidationError(
                "invalid --plaintext with TLS files; give either --tls-cert, --tls-key and --tls-ca, or --plaintext")
        default:
            throw ValidationError(
                "node traffic needs --tls-cert, --tls-key and --tls-ca (all three), or --plaintext for local development"
            )
        }
    }

    func run() async throws {
        let s = try settings(environment: ProcessInfo.processInfo.environment)
        let logger = Logger(label: "gpubridge.node")
        // Metrics first, so every instrument made below reports into the registry.
        var metricsWriter: MetricsFileWriter?
        var registry: PrometheusCollectorRegistry?
        if s.metricsFile != nil || s.http != nil {
            let made = PrometheusCollectorRegistry()
            MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: made))
            registry = made
        }
        if let path = s.metricsFile, let registry {
            metricsWriter = MetricsFileWriter(registry: registry, path: path, logger: logger)
        }
        // Spans next (before anything that makes them), when asked for.
        let exporter = try s.traces.map { try TraceOptions.start($0, logger: logger) }
        let (reports, found, _) = Backends.discover()
        let devices = try s.devices.select(from: found, reports: reports)
        var bridgeOptions = BridgeOptions()
        bridgeOptions.backendOrder = Backends.preference.filter { kind in devices.contains { $0.id.backend == kind } }
        let bridge = try Bridge(options: bridgeOptions, backends: devices.map(\.backend))

        var store: PostgresStore?
        let membership: any MembershipTable, directory: any ActorDirectory, storage: any ActorStorage
        if let url = s.databaseURL {
            let opened: PostgresStore
            do { opened = try PostgresStore(url: url, sessionTimeout: s.options.effectiveDatabaseTimeout) } catch {
                throw ValidationError("invalid --database-url: \(error)")
            }
            store = opened
            membership = PostgresMembershipTable(store: opened, cluster: s.cluster)
            directory = PostgresActorDirectory(store: opened, cluster: s.cluster)
            storage = PostgresActorStorage(store: opened, cluster: s.cluster)
        } else {
            let table = InMemoryMembershipTable()
            membership = table
            directory = InMemoryActorDirectory(membership: table)
            storage = try s.statePath.map { try SQLiteActorStorage(path: $0) } ?? InMemoryActorStorage()
        }
        var systemOptions = ActorSystemOptions()
        systemOptions.idleTimeout = s.idleTimeout
        let system = try EmbeddedActorSystem(bridge: bridge, storage: storage, options: systemOptions)
        try NodeActors.register(system, vectorDim: s.vectorDim)
        let transport = try connection.transport.make(security: s.security, limits: s.limits)
        let node = try ClusterNode(
            system: system, membership: membership, directory: directory, transport: transport,
            options: s.options)
        let runner = NodeRunner(node: node, store: store)
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
        // Shut down in reverse order: the node first, then the HTTP endpoint (it answers not-ready while the node
        // drains), the metrics writer (its last write has the final counts), the database pool, and last the span
        // exporter (it flushes the spans of everything before it).
        if let exporter { services.append(.init(service: exporter)) }
        if let store { services.append(.init(service: store)) }
        if let metricsWriter { services.append(.init(service: metricsWriter)) }
        if let address = s.http {
            let sources = OpsSources(
                bridge: bridge, actors: system, node: node, registry: registry, errors: RecentErrors.process)
            services.append(
                .init(
                    service: try HTTPEndpoint.service(
                        sources: sources, address: address, tls: s.httpTLS, logger: logger)))
        }
        services.append(.init(service: runner))
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        do {
            try await group.run()
        } catch {
            logger.error("node stopped with an error", metadata: ["error": "\(error)"])
            NodeOutput.line(#"{"event":"stopped","error":true}"#)
            throw ExitCode(1)
        }
        NodeOutput.line(#"{"event":"stopped","error":false}"#)
    }
}

/// How a process reaches a cluster: its database and name, and the TLS files (or plaintext), shared by `node` and
/// `call`.
struct ClusterConnectionOptions: ParsableArguments {
    @Option(
        name: .long,
        help: "PostgreSQL URL for membership, directory and actor state: postgres://user[:password]@host:port/db.")
    var databaseURL: String?
    @Option(name: .long, help: "Cluster name (rows of several clusters can share a database). Default gpubridge.")
    var cluster: String?
    @Option(name: .long, help: "This process's certificate (PEM), signed by the cluster CA.")
    var tlsCert: String?
    @Option(name: .long, help: "This process's private key (PEM).")
    var tlsKey: String?
    @Option(name: .long, help: "The cluster CA certificate (PEM); peers must present a certificate it signed.")
    var tlsCA: String?
    @Flag(name: .long, help: "No TLS (local development only; every node and client of the cluster must be plaintext).")
    var plaintext = false
    @Option(
        name: .long,
        help:
            "Wire between nodes: grpc (HTTP/2) or tcp (length-prefixed frames, lower latency); every node and client of a cluster must use the same. Default grpc."
    )
    var transport: TransportChoice = .grpc
}

/// The wire a node or client speaks to the others (`--transport`).
enum TransportChoice: String, ExpressibleByArgument, CaseIterable, Sendable {
    case grpc, tcp

    func make(security: ClusterSecurity, limits: WireLimits = WireLimits()) throws -> any NodeTransport {
        switch self {
        case .grpc: return try GRPCNodeTransport(security: security, limits: limits)
        case .tcp: return try TCPNodeTransport(security: security, limits: limits)
        }
    }
}

/// The actor types every node hosts (a client registers the same ones to call them).
enum NodeActors {
    static func register(_ system: EmbeddedActorSystem, vectorDim: Int) throws {
        try system.register(VectorIndexActor.self, as: "vector-index") {
            VectorIndexActor(actorSystem: $0, dim: vectorDim)
        }
        try system.register(EchoActor.self, as: "echo") { EchoActor(actorSystem: $0) }
    }
}

/// Migrates the schema, runs the node, prints the ready line.
struct NodeRunner: Service {
    let node: ClusterNode
    let store: PostgresStore?

    func run() async throws {
        if let store { try await store.migrate() }
        do {
            try await node.run { id in NodeOutput.line(#"{"event":"ready","node":"\#(id)"}"#) }
        } catch {
            // The node's membership ended (or it never joined). The other services get five seconds to stop: a
            // database pool whose connections hang on a dead network waits for them far longer, and a dead node has
            // nothing left to save (its state writes are fenced), so the process then exits on its own.
            Task.detached {
                try? await Task.sleep(for: .seconds(5))
                NodeOutput.line(#"{"event":"stopped","error":true}"#)
                exit(1)
            }
            throw error
        }
    }
}

/// Writes the registry in Prometheus' text format to a file every 2 seconds and once more when it stops; each write
/// goes to a temporary file renamed over the target, so a reader never sees half a file.
struct MetricsFileWriter: Service {
    let registry: PrometheusCollectorRegistry
    let path: String
    let logger: Logger

    func run() async throws {
        defer { write() }
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            write()
            do { try await cancelWhenGracefulShutdown { try await Task.sleep(for: .seconds(2)) } } catch { return }
        }
    }

    func write() {
        let temporary = path + ".tmp"
        let text = registry.emitToString()
        guard FileManager.default.createFile(atPath: temporary, contents: Data(text.utf8)), rename(temporary, path) == 0
        else {
            logger.warning("could not write the metrics file", metadata: ["path": "\(path)", "errno": "\(errno)"])
            return
        }
    }
}

/// Status lines on standard output, written at once (a supervising process reads them through a pipe).
enum NodeOutput {
    static func line(_ text: String) {
        let bytes = Array((text + "\n").utf8)
        bytes.withUnsafeBytes { raw in _ = write(1, raw.baseAddress, raw.count) }
    }
}
