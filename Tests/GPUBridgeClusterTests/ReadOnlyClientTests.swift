import Foundation
import GPUBridge
import GPUBridgeActors
import GPUBridgeTestSupport
import Testing

@testable import GPUBridgeCluster

@Suite(
    "A client with a read-only database role",
    .enabled(if: ProcessClusterEnvironment.available, "needs the test PostgreSQL server and the built gpubridge"))
struct ReadOnlyClientTests {
    /// The role the test creates: it may read membership and the directory, nothing else.
    static let role = "gpubridge_test_reader"

    @Test("places and calls actors through the nodes, and the database refuses its writes")
    func readOnlyClient() async throws {
        try await ProcessCluster.run { cluster in
            let ids = try await cluster.startNodes(2)
            try await cluster.store.withConnection("create the read-only role") { connection in
                try await connection.query(
                    """
                    DO $$ BEGIN
                      CREATE ROLE gpubridge_test_reader LOGIN;
                    EXCEPTION WHEN duplicate_object THEN NULL;
                    END $$
                    """, logger: cluster.store.logger)
                try await connection.query(
                    "GRANT SELECT ON gb_membership, gb_membership_version, gb_directory TO gpubridge_test_reader",
                    logger: cluster.store.logger)
            }
            let url = try #require(ProcessClusterEnvironment.databaseURL)
            let parsed = try PostgresStore.parse(url: url)
            let host = parsed.host.contains(":") ? "[\(parsed.host)]" : parsed.host
            let readerURL = "postgres://\(Self.role)@\(host):\(parsed.port)/\(parsed.database)"
            // `gpubridge call` with that role: it places a new actor and gets its answer.
            let called = try await cluster.call(
                [["echo", "cli-reader", "echo", "--text", "hello"]], databaseURL: readerURL)
            #expect(called.first?.status == 0, "\(called.first?.output ?? "")")
            #expect(called.first?.output.contains(#""result":"hello""#) == true, "\(called.first?.output ?? "")")
            let store = try PostgresStore(url: readerURL)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { await store.run() }
                defer { group.cancelAll() }
                var options = ClusterOptions()
                options.role = .client
                options.roundInterval = .milliseconds(200)
                options.leaseDuration = .seconds(3)
                let client = try ClusterNode(
                    system: try InProcessCluster.cpuSystem(
                        storage: InMemoryActorStorage(), register: ProcessCluster.registerActors),
                    membership: PostgresMembershipTable(store: store, cluster: cluster.name),
                    directory: PostgresActorDirectory(store: store, cluster: cluster.name),
                    transport: try GRPCNodeTransport(security: cluster.certificates.client), options: options)
                try await client.start()
                #expect(await eventually { client.view.active.count == 2 })
                for k in 0..<10 {
                    #expect(
                        try await client.system.actor(EchoActor.self, key: "reader-\(k)").echo([UInt8(k)]) == [UInt8(k)]
                    )
                }
                let placed = try await cluster.directory.all().filter { $0.id.key.hasPrefix("reader-") }
                #expect(placed.count == 10)
                #expect(try await cluster.directory.lookup(GPUActorID(type: "echo", key: "cli-reader")) != nil)
                #expect(placed.allSatisfy { ids.contains($0.node) })
                // The role really cannot write: the server refuses a registration made with it.
                do {
                    _ = try await PostgresActorDirectory(store: store, cluster: cluster.name).register(
                        GPUActorID(type: "echo", key: "forged"), on: ids[0])
                    Issue.record("the read-only role registered an actor")
                } catch let error as GPUBridgeError {
                    guard case let .backendFailure(_, _, _, message) = error else { throw error }
                    #expect(message.contains("permission denied"), "\(message.prefix(300))")
                }
                await client.stop()
            }
        }
    }
}
