import ArgumentParser
import Foundation
import GPUBridge
import GPUBridgeActors
import GPUBridgeCluster
import Tracing
import ServiceLifecycle
import Logging

/// `gpubridge call`: one client call to an actor hosted by a cluster's nodes (what `gpubridge node` hosts).
struct CallCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "call",
        abstract: "Call an actor hosted by a cluster's nodes, as a client, and print the result as JSON.",
        discussion: """
            Joins the cluster as a client (no membership row, hosts nothing): reads membership and the actor directory \
            from the database, places the actor if it has no activation, calls its node over gRPC with the cluster's \
            certificate. Actors and methods (those `gpubridge node` hosts):
              echo KEY echo [--text T]            returns T
              echo KEY count                      calls this activation has served
              vector-index KEY upsert-random      adds --rows random rows (ids --first-id ...), seeded by --seed;
                                                  durable (journaled) when the call returns
              vector-index KEY query-random       top --k ids for one random query seeded by --seed
              vector-index KEY count              rows in the index
              vector-index KEY checkpoint         writes the index's snapshot and trims its journal
            Prints one JSON line: {"actor":"TYPE/KEY","method":"...","node":"host:port@generation","result":...}. \
            --vector-dim must match the nodes'. A call retried with the same --call-id is applied once (while the \
            actor remembers the id: its last 10 000 mutations).
            """
    )

    static let methods = [
        "echo": ["echo", "count"], "vector-index": ["upsert-random", "query-random", "count", "checkpoint"],
    ]

    @Argument(help: "Actor type: echo or vector-index.")
    var actor: String
    @Argument(help: "Actor key.")
    var key: String
    @Argument(help: "Method (see above).")
    var method: String

    @OptionGroup var connection: ClusterConnectionOptions
    @OptionGroup var tracing: TraceOptions
    @Option(name: .long, help: "Text for echo.")
    var text = "hello"
    @Option(name: .long, help: "Rows for upsert-random (1...100000).")
    var rows = 1000
    @Option(name: .long, help: "First id for upsert-random.")
    var firstID = 0
    @Option(name: .long, help: "k for query-random (1...1024).")
    var k = 10
    @Option(name: .long, help: "Seed of the random rows and query.")
    var seed: UInt64 = 1
    @Option(name: .long, help: "Vector dimension of the nodes' indexes (1...4096). Default 384.")
    var vectorDim = 384
    @Option(name: .long, help: "Deadline of the call in milliseconds (1...86400000).")
    var timeoutMs = 30_000
    @Option(
        name: .long,
        help: "Id of this logical call (1...256 bytes): a retry with the same id is applied once. Default: a new UUID.")
    var callID: String?

    func validate() throws {
        guard let methods = Self.methods[actor] else {
            throw ValidationError(
                "unknown actor '\(actor)'; available: \(Self.methods.keys.sorted().joined(separator: ", "))")
        }
        guard methods.contains(method) else {
            throw ValidationError(
                "unknown method '\(method)' of \(actor); available: \(methods.joined(separator: ", "))")
        }
        guard !key.isEmpty else { throw ValidationError("invalid key ''; expected a non-empty actor key") }
        guard (1...100_000).contains(rows) else { throw ValidationError("invalid --rows \(rows); expected 1...100000") }
        guard (1...1024).contains(k) else { throw ValidationError("invalid --k \(k); expected 1...1024") }
        guard (1...4096).contains(vectorDim) else {
            throw ValidationError("invalid --vector-dim \(vectorDim); expected 1...4096")
        }
        guard (1...86_400_000).contains(timeoutMs) else {
            throw ValidationError("invalid --timeout-ms \(timeoutMs); expected 1...86400000")
        }
        if let callID, callID.isEmpty || callID.utf8.count > 256 {
            throw ValidationError("invalid --call-id of \(callID.utf8.count) bytes; expected 1...256 bytes")
        }
        if let callID, callID.isEmpty || callID.utf8.count > 256 {
            throw ValidationError("invalid --call-id of \(callID.utf8.count) bytes; expected 1...256 bytes")
        }
        guard firstID >= 0, firstID <= Int.max - rows else {
            throw ValidationError("invalid --first-id \(firstID); expected 0...\(Int.max - rows)")
        }
    }

    func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        guard let url = connection.databaseURL ?? environment["GPUBRIDGE_DATABASE_URL"] else {
            throw ValidationError("call needs the cluster's --database-url (or GPUBRIDGE_DATABASE_URL)")
        }
        let cluster = connection.cluster ?? environment["GPUBRIDGE_CLUSTER"] ?? "gpubridge"
        let security = try NodeCommand.security(
            certificate: connection.tlsCert ?? environment["GPUBRIDGE_TLS_CERT"],
            key: connection.tlsKey ?? environment["GPUBRIDGE_TLS_KEY"],
            ca: connection.tlsCA ?? environment["GPUBRIDGE_TLS_CA"], plaintext: connection.plaintext)
        do { try security.validate() } catch { throw ValidationError("invalid TLS settings: \(error)") }
        do { _ = try PostgresStore(url: url) } catch { throw ValidationError("invalid --database-url: \(error)") }
        // With an OTLP endpoint, the call is one trace: this process's spans and the node's, which continue it.
        let exporter = try tracing.settings(serviceName: "gpubridge-call", environment: environment).map {
            try TraceOptions.start($0, logger: Logger(label: "gpubridge.call"))
        }
        let exporting = exporter.map { exporter in
            ServiceGroup(
                configuration: ServiceGroupConfiguration(
                    services: [.init(service: exporter)], logger: Logger(label: "gpubridge.call")))
        }
        let exportTask = exporting.map { group in Task { try await group.run() } }
        // Flushes the buffered spans before the process exits (the batch processor's graceful shutdown).
        let flush = { () async in
            guard let exporting, let exportTask else { return }
            await exporting.triggerGracefulShutdown()
            _ = await exportTask.result
        }
        // A client only reads the tables (the nodes made them), so a read-only database role is enough.
        let line: String
        do {
            line = try await PostgresStore.withStore(url: url, migrate: false) { store in
                try await withSpan("gpubridge.call", ofKind: .internal) { span in
                    span.attributes["gpubridge.actor"] = "\(actor)/\(key)"
                    span.attributes["gpubridge.actor.method"] = method
                    return try await call(store: store, cluster: cluster, security: security)
                }
            }
        } catch {
            await flush()
            throw error
        }
        await flush()
        print(line)
    }

    /// Joins as a client, makes the call, leaves; the JSON line to print.
    private func call(store: PostgresStore, cluster: String, security: ClusterSecurity) async throws -> String {
        var bridgeOptions = BridgeOptions()
        bridgeOptions.cacheDirectory = nil
        bridgeOptions.backendOrder = [.cpu]
        let system = try EmbeddedActorSystem(
            bridge: try Bridge(options: bridgeOptions, backends: [CPUBackend()]),
            storage: PostgresActorStorage(store: store, cluster: cluster))
        try NodeActors.register(system, vectorDim: vectorDim)
        var options = ClusterOptions()
        options.role = .client
        options.callTimeout = .milliseconds(timeoutMs)
        let directory = PostgresActorDirectory(store: store, cluster: cluster)
        let client = try ClusterNode(
            system: system, membership: PostgresMembershipTable(store: store, cluster: cluster),
            directory: directory, transport: try connection.transport.make(security: security), options: options)
        try await client.start()
        do {
            let result = try await ActorCallContext.$idempotencyKey.withValue(callID) { try await call(system) }
            let node = try await directory.lookup(GPUActorID(type: actor, key: key))?.node.description
            await client.stop()
            return
                #"{"actor":\#(json(actor + "/" + key)),"method":\#(json(method)),"node":\#(node.map(json) ?? "null"),"result":\#(result)}"#
        } catch {
            await client.stop()
            throw error
        }
    }

    /// Runs the method; its result as JSON text.
    private func call(_ system: EmbeddedActorSystem) async throws -> String {
        switch (actor, method) {
        case ("echo", "echo"):
            let reply = try await system.actor(EchoActor.self, key: key).echo(Array(text.utf8))
            return json(String(decoding: reply, as: UTF8.self))
        case ("echo", "count"):
            return "\(try await system.actor(EchoActor.self, key: key).callCount())"
        case ("vector-index", "upsert-random"):
            var random = SplitMix64(seed: seed)
            let vectors = random.floats(rows * vectorDim, -1, 1)
            return
                "\(try await system.actor(VectorIndexActor.self, key: key).upsert(ids: Array(firstID ..< firstID + rows), vectors: vectors))"
        case ("vector-index", "query-random"):
            var random = SplitMix64(seed: seed)
            let hits = try await system.actor(VectorIndexActor.self, key: key).query(
                random.floats(vectorDim, -1, 1), k: k)
            return String(decoding: try JSONEncoder().encode(hits.first ?? []), as: UTF8.self)
        case ("vector-index", "count"):
            return "\(try await system.actor(VectorIndexActor.self, key: key).vectorCount())"
        default:  // ("vector-index", "checkpoint"): validate() admits no other pair
            try await system.actor(VectorIndexActor.self, key: key).checkpoint()
            return "null"
        }
    }

    private func json(_ text: String) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .withoutEscapingSlashes
        return String(decoding: (try? encoder.encode(text)) ?? Data("\"\"".utf8), as: UTF8.self)
    }
}
