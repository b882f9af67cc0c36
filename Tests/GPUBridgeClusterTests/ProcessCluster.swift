import Foundation
import GPUBridge
import GPUBridgeActors
import GPUBridgeCluster
import GPUBridgeTestSupport
import Synchronization
import Testing

extension NodeProcess {
    /// The value of the sample `name` (no labels) in the node's metrics file, if written.
    func metric(_ name: String, folder: String) -> Double? {
        guard let text = try? String(contentsOfFile: "\(folder)/\(self.name).prom", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix(name + " ") {
            return Double(line.dropFirst(name.count + 1).trimmingCharacters(in: .whitespaces))
        }
        return nil
    }
}

/// Where the multi-process cluster tests can run: a database and the built `gpubridge`.
enum ProcessClusterEnvironment {
    static let databaseURL = ProcessInfo.processInfo.environment["GPUBRIDGE_TEST_DATABASE_URL"]
    static let available = databaseURL != nil && CLIBinary.path != nil
}

/// The certificates of one test cluster (its CA, one certificate for the nodes, one for clients) and of a rogue CA.
struct TestCertificates {
    let folder: String
    var ca: String { "\(folder)/cluster/ca.pem" }
    var node: ClusterSecurity { security("cluster", "node") }
    var client: ClusterSecurity { security("cluster", "client") }
    /// A certificate from another CA that trusts only itself: what a process outside the cluster has.
    var rogue: ClusterSecurity { security("rogue", "rogue") }

    init() throws {
        folder =
            FileManager.default.temporaryDirectory.appendingPathComponent("gpubridge-certs-\(UUID().uuidString)").path
        try ClusterCertificateAuthority(name: "test cluster CA").write(
            to: "\(folder)/cluster", names: ["node"], clients: ["client"])
        try ClusterCertificateAuthority(name: "rogue CA").write(to: "\(folder)/rogue", names: ["rogue"])
    }

    func security(_ set: String, _ name: String) -> ClusterSecurity {
        .mutualTLS(
            certificate: "\(folder)/\(set)/\(name).pem", privateKey: "\(folder)/\(set)/\(name)-key.pem",
            trustRoots: "\(folder)/\(set)/ca.pem")
    }

    /// The `gpubridge node` flags for `security`.
    static func flags(_ security: ClusterSecurity) -> [String] {
        switch security {
        case .plaintext: return ["--plaintext"]
        case let .mutualTLS(certificate, key, roots):
            return ["--tls-cert", certificate, "--tls-key", key, "--tls-ca", roots]
        }
    }

    func remove() { try? FileManager.default.removeItem(atPath: folder) }
}

/// One `gpubridge node` child process; its standard output and error go to files in `folder`.
final class NodeProcess: Sendable {
    let name: String
    let process: Process
    let stdoutPath: String
    let stderrPath: String

    /// Runs `gpubridge node arguments`, through `launcher` when given (`ip netns exec NS`, which execs the node, so
    /// the process id is the node's).
    init(name: String, arguments: [String], folder: String, launcher: [String] = []) throws {
        guard let binary = CLIBinary.path else {
            throw GPUBridgeError.unsupported(feature: "gpubridge binary", backend: "tests")
        }
        self.name = name
        stdoutPath = "\(folder)/\(name).out"
        stderrPath = "\(folder)/\(name).err"
        _ = FileManager.default.createFile(atPath: stdoutPath, contents: nil)
        _ = FileManager.default.createFile(atPath: stderrPath, contents: nil)
        let process = Process()
        if let first = launcher.first {
            process.executableURL = URL(fileURLWithPath: first)
            process.arguments = Array(launcher.dropFirst()) + [binary, "node"] + arguments
        } else {
            process.executableURL = URL(fileURLWithPath: binary)
            process.arguments = ["node"] + arguments
        }
        process.standardOutput = FileHandle(forWritingAtPath: stdoutPath)
        process.standardError = FileHandle(forWritingAtPath: stderrPath)
        process.standardInput = FileHandle.nullDevice
        try process.run()
        self.process = process
    }

    var output: String { (try? String(contentsOfFile: stdoutPath, encoding: .utf8)) ?? "" }
    var errors: String { (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "" }
    var pid: Int32 { process.processIdentifier }

    /// The node id from the ready line, once it was printed.
    var readyID: NodeID? {
        for line in output.split(separator: "\n") where line.contains(#""event":"ready""#) {
            guard let start = line.range(of: #""node":""#)?.upperBound, let end = line[start...].firstIndex(of: "\"")
            else { continue }
            return try? NodeID(parsing: String(line[start..<end]))
        }
        return nil
    }

    /// Waits for the ready line; fails with the process's standard error when it exits or times out first.
    func waitReady(timeout: Duration = .seconds(60)) async throws -> NodeID {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let id = readyID { return id }
            if !process.isRunning { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw NodeProcessFailure(
            node: name,
            what: process.isRunning ? "no ready line in \(timeout)" : "exited with \(process.terminationStatus)",
            stderr: String(errors.suffix(4000)))
    }

    /// Waits for the process to exit; its status, or nil after `timeout`.
    func waitExit(timeout: Duration = .seconds(30)) async -> Int32? {
        let deadline = ContinuousClock.now + timeout
        while process.isRunning && ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(20)) }
        return process.isRunning ? nil : process.terminationStatus
    }

    func kill9() { if process.isRunning { kill(pid, SIGKILL) } }
    func sigterm() { if process.isRunning { kill(pid, SIGTERM) } }
}

struct NodeProcessFailure: Error, CustomStringConvertible {
    var node: String
    var what: String
    var stderr: String
    var description: String { "node process \(node): \(what); its standard error:\n\(stderr)" }
}

/// Node processes of one cluster (a fresh cluster name in the test database), their certificates, and clients in
/// this process. `run` kills every process and stops every client when the body ends, however it ends.
final class ProcessCluster {
    let name = "proc-\(UUID().uuidString.prefix(8))"
    let certificates: TestCertificates
    let folder: String
    let store: PostgresStore
    private(set) var processes: [NodeProcess] = []
    private(set) var clients: [ClusterNode] = []
    static let dim = 16

    private init(store: PostgresStore) throws {
        self.store = store
        certificates = try TestCertificates()
        folder = certificates.folder
    }

    static func run(_ body: (ProcessCluster) async throws -> Void) async throws {
        let url = try #require(ProcessClusterEnvironment.databaseURL)
        try await PostgresStore.withStore(url: url) { store in
            let cluster = try ProcessCluster(store: store)
            do {
                try await body(cluster)
            } catch {
                cluster.dumpLogs()
                await cluster.cleanup()
                throw error
            }
            await cluster.cleanup()
        }
    }

    func cleanup() async {
        for client in clients { await client.stop() }
        for p in processes { p.kill9() }
        for p in processes { _ = await p.waitExit(timeout: .seconds(10)) }
        certificates.remove()
    }

    func dumpLogs() {
        for p in processes { print("---- \(p.name) stderr (last 3000 characters) ----\n\(p.errors.suffix(3000))") }
    }

    /// Starts a node process with this cluster's certificate (or `security`), fast membership rounds (300 ms, a 3 s
    /// lease: a killed node is Dead within about 3.5 s, and a node stalled for a second on a loaded machine keeps its
    /// lease) and dim-16 vector indexes on the CPU backend.
    /// With `namespace`, the node runs in that network namespace and listens on its address.
    func startNode(
        security: ClusterSecurity? = nil, extra: [String] = [], namespace: ChaosNamespace? = nil, port: Int = 0
    ) throws -> NodeProcess {
        let url = try #require(ProcessClusterEnvironment.databaseURL)
        let nodeName = "node-\(processes.count)"
        let process = try NodeProcess(
            name: nodeName,
            arguments: [
                "--listen", "\(namespace?.address ?? "127.0.0.1"):\(port)", "--database-url", url, "--cluster", name,
                "--devices", "cpu",
                "--metrics-file", "\(folder)/\(nodeName).prom",
                "--vector-dim", "\(Self.dim)", "--round-interval-ms", "300", "--lease-ms", "3000",
                "--call-timeout-ms", "20000",
            ] + TestCertificates.flags(security ?? certificates.node) + extra,
            folder: folder, launcher: namespace.map { [Chaos.ipPath, "netns", "exec", $0.name] } ?? [])
        processes.append(process)
        return process
    }

    /// Starts `count` nodes and waits until each printed its ready line.
    func startNodes(_ count: Int) async throws -> [NodeID] {
        let started = try (0..<count).map { _ in try startNode() }
        var ids: [NodeID] = []
        for p in started { ids.append(try await p.waitReady()) }
        return ids
    }

    /// A client in this process: it hosts nothing, reads membership and the directory from the database and calls
    /// the nodes over `wire` (gRPC by default) with `security` (the cluster's client certificate by default).
    func client(
        security: ClusterSecurity? = nil, wire: WireKind = .grpc, configure: (inout ClusterOptions) -> Void = { _ in }
    ) async throws -> ClusterNode {
        let system = try InProcessCluster.cpuSystem(storage: InMemoryActorStorage(), register: Self.registerActors)
        var options = ClusterOptions()
        options.role = .client
        options.roundInterval = .milliseconds(200)
        options.leaseDuration = .seconds(3)
        options.callTimeout = .seconds(20)
        configure(&options)
        let node = try ClusterNode(
            system: system, membership: PostgresMembershipTable(store: store, cluster: name),
            directory: PostgresActorDirectory(store: store, cluster: name),
            transport: try wire.transport(security: security ?? certificates.client, limits: WireLimits()),
            options: options)
        try await node.start()
        clients.append(node)
        return node
    }

    /// Runs `gpubridge call` processes with these arguments (the cluster's database, or `databaseURL`, name, client
    /// certificate and dimension added), all started before any is waited for; returns each one's exit status and standard output.
    func call(_ argumentLists: [[String]], databaseURL: String? = nil) async throws -> [(status: Int32, output: String)]
    {
        let url = try #require(databaseURL ?? ProcessClusterEnvironment.databaseURL)
        guard let binary = CLIBinary.path, case let .mutualTLS(certificate, key, roots) = certificates.client else {
            throw GPUBridgeError.unsupported(feature: "gpubridge binary", backend: "tests")
        }
        var running: [(Process, String)] = []
        for (i, arguments) in argumentLists.enumerated() {
            let outputPath = "\(folder)/call-\(UUID().uuidString.prefix(8))-\(i).out"
            _ = FileManager.default.createFile(atPath: outputPath, contents: nil)
            _ = FileManager.default.createFile(atPath: outputPath + ".err", contents: nil)
            let process = Process()
            process.executableURL = URL(fileURLWithPath: binary)
            process.arguments =
                ["call"] + arguments + [
                    "--database-url", url, "--cluster", name, "--vector-dim", "\(Self.dim)",
                    "--tls-cert", certificate, "--tls-key", key, "--tls-ca", roots,
                ]
            process.standardOutput = FileHandle(forWritingAtPath: outputPath)
            process.standardError = FileHandle(forWritingAtPath: outputPath + ".err")
            try process.run()
            running.append((process, outputPath))
        }
        var results: [(Int32, String)] = []
        for (process, path) in running {
            let deadline = ContinuousClock.now + .seconds(60)
            while process.isRunning && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
            if process.isRunning { process.terminate() }
            process.waitUntilExit()
            let output = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
            let errors = (try? String(contentsOfFile: path + ".err", encoding: .utf8)) ?? ""
            results.append((process.terminationStatus, output + errors))
        }
        return results
    }

    /// The actor types the nodes host, under the same names (`gpubridge node` registers these).
    static func registerActors(_ system: EmbeddedActorSystem) throws {
        try system.register(VectorIndexActor.self, as: "vector-index") { VectorIndexActor(actorSystem: $0, dim: dim) }
        try system.register(EchoActor.self, as: "echo") { EchoActor(actorSystem: $0) }
    }

    var membership: PostgresMembershipTable { PostgresMembershipTable(store: store, cluster: name) }
    var directory: PostgresActorDirectory { PostgresActorDirectory(store: store, cluster: name) }
}
