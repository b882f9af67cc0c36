import Foundation
import GPUBridge
import GPUBridgeActors
import GPUBridgeCluster
import GPUBridgeTestSupport
import Testing

/// The wire transports between processes.
enum WireKind: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case grpc, tcp

    func transport(security: ClusterSecurity, limits: WireLimits) throws -> any NodeTransport {
        switch self {
        case .grpc: return try GRPCNodeTransport(security: security, limits: limits)
        case .tcp: return try TCPNodeTransport(security: security, limits: limits)
        }
    }

    var testDescription: String { rawValue }
}

/// One hosting node and clients in this process, over a real transport on loopback (gRPC unless another is given;
/// in-memory membership and directory).
struct GRPCPair {
    let kind: WireKind
    let membership: InMemoryMembershipTable
    let directory: InMemoryActorDirectory
    let storage = InMemoryActorStorage()
    let certificates: TestCertificates
    var node: ClusterNode!
    var clients: [ClusterNode] = []

    init(_ kind: WireKind = .grpc) throws {
        self.kind = kind
        certificates = try TestCertificates()
        membership = InMemoryMembershipTable()
        directory = InMemoryActorDirectory(membership: membership)
    }

    func system() throws -> EmbeddedActorSystem {
        try InProcessCluster.cpuSystem(storage: storage, register: InProcessCluster.register)
    }

    mutating func start(limits: WireLimits = WireLimits(), security: ClusterSecurity? = nil) async throws {
        var options = ClusterOptions()
        options.roundInterval = .milliseconds(100)
        node = try ClusterNode(
            system: try system(), membership: membership, directory: directory,
            transport: try kind.transport(security: security ?? certificates.node, limits: limits), options: options)
        try await node.start()
    }

    mutating func client(security: ClusterSecurity? = nil, limits: WireLimits = WireLimits()) async throws
        -> EmbeddedActorSystem
    {
        var options = ClusterOptions()
        options.role = .client
        options.roundInterval = .milliseconds(100)
        let client = try ClusterNode(
            system: try system(), membership: membership, directory: directory,
            transport: try kind.transport(security: security ?? certificates.client, limits: limits),
            options: options)
        try await client.start()
        clients.append(client)
        return client.system
    }

    func stop() async {
        for c in clients { await c.stop() }
        await node?.stop()
        certificates.remove()
    }
}

@Suite("Node transports (gRPC and TCP): large payloads, typed errors, deadlines, mutual TLS")
struct GRPCTransportTests {
    @Test("a 64 MiB payload crosses both ways and comes back byte for byte", arguments: WireKind.allCases)
    func largePayload(kind: WireKind) async throws {
        var pair = try GRPCPair(kind)
        try await pair.start()
        let client = try await pair.client()
        var random = SplitMix64(seed: 64)
        let bytes = [UInt8](unsafeUninitializedCapacity: 64 << 20) { out, count in
            let words = UnsafeMutableRawPointer(out.baseAddress!).assumingMemoryBound(to: UInt64.self)
            for i in 0..<(64 << 20) / 8 { words[i] = random.next() }
            count = 64 << 20
        }
        let echo = try client.actor(EchoActor.self, key: "big")
        let back = try await echo.echo(bytes)
        #expect(back.count == bytes.count)
        #expect(back == bytes)
        let floats = random.floats(3 << 20, -1, 1)
        #expect(try await echo.echoFloats(floats) == floats)
        await pair.stop()
    }

    @Test(
        "small chunks: payloads of every size around the chunk limit arrive whole",
        arguments: WireKind.allCases, [0, 1, 4095, 4096, 4097, 3 * 4096 + 5])
    func chunkEdges(kind: WireKind, size: Int) async throws {
        var limits = WireLimits()
        limits.maxMessageBytes = 128 * 1024
        limits.chunkBytes = 4096
        var pair = try GRPCPair(kind)
        try await pair.start(limits: limits)
        let client = try await pair.client(limits: limits)
        let bytes = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        #expect(try await client.actor(EchoActor.self, key: "edge").echo(bytes) == bytes)
        // Above the message limit too (the request and the reply are both streamed).
        let large = [UInt8](repeating: 0xA5, count: 300 * 1024 + size)
        #expect(try await client.actor(EchoActor.self, key: "edge").echo(large) == large)
        await pair.stop()
    }

    @Test(
        "errors: Codable ones come back typed, others as RemoteActorError; a deadline cuts a slow call",
        arguments: WireKind.allCases)
    func errorsOverGRPC(kind: WireKind) async throws {
        var pair = try GRPCPair(kind)
        try await pair.start()
        let client = try await pair.client()
        let index = try client.actor(VectorIndexActor.self, key: "e")
        do {
            _ = try await index.query([Float](repeating: 0, count: InProcessCluster.dim), k: 0)
            Issue.record("k = 0 was accepted")
        } catch let error as GPUBridgeError {
            guard case let .invalidArgument(name, value, _) = error else { Issue.record("\(error)"); return }
            #expect(name == "k" && value == "0")
        }
        let trouble = try client.actor(TroubleActor.self, key: "e")
        do {
            _ = try await trouble.failOpaque()
            Issue.record("failOpaque returned")
        } catch let error as RemoteActorError {
            #expect(error.description == "an opaque failure 42")
        }
        let started = ContinuousClock.now
        do {
            _ = try await ClusterCall.$timeout.withValue(.milliseconds(200)) {
                try await trouble.wait(milliseconds: 2500)
            }
            Issue.record("the slow call returned")
        } catch let error as ClusterError {
            guard case .deadlineExceeded = error else { Issue.record("\(error)"); return }
        }
        #expect(ContinuousClock.now - started < .seconds(2))
        await pair.stop()
    }

    @Test(
        "mutual TLS: another CA's certificate and plaintext are refused; the cluster's certificate works",
        arguments: WireKind.allCases)
    func mutualTLS(kind: WireKind) async throws {
        var pair = try GRPCPair(kind)
        try await pair.start()
        let member = try await pair.client()
        #expect(try await member.actor(EchoActor.self, key: "door").echo([1, 2]) == [1, 2])
        for security in [pair.certificates.rogue, ClusterSecurity.plaintext] {
            let outsider = try await pair.client(security: security)
            do {
                _ = try await outsider.actor(EchoActor.self, key: "door").echo([3])
                Issue.record("\(security): the call succeeded")
            } catch let error as ClusterError {
                guard case .nodeUnreachable = error else { Issue.record("\(error)"); continue }
            }
        }
        #expect(try await member.actor(EchoActor.self, key: "door").callCount() == 1)
        await pair.stop()
    }

    @Test(
        "bad TLS files and wire limits are rejected with the argument, the value and the limit",
        arguments: WireKind.allCases)
    func badSettings(kind: WireKind) throws {
        let missing = bridgeError {
            _ = try kind.transport(
                security: .mutualTLS(
                    certificate: "/nonexistent/cert.pem", privateKey: "/nonexistent/key.pem",
                    trustRoots: "/nonexistent/ca.pem"), limits: WireLimits())
        }
        guard case let .invalidArgument(name, value, _)? = missing else {
            Issue.record("\(String(describing: missing))"); return
        }
        #expect(name == "tls certificate" && value == "/nonexistent/cert.pem")
        var limits = WireLimits()
        limits.chunkBytes = 100
        let small = bridgeError { _ = try kind.transport(security: .plaintext, limits: limits) }
        guard case let .invalidArgument(limitName, _, _)? = small else {
            Issue.record("\(String(describing: small))"); return
        }
        #expect(limitName == "chunkBytes")
        let authority = try ClusterCertificateAuthority()
        let badAddress = bridgeError { _ = try authority.issue(name: "n", addresses: ["not-an-ip"]) }
        guard case let .invalidArgument(addressName, addressValue, _)? = badAddress else {
            Issue.record("\(String(describing: badAddress))"); return
        }
        #expect(addressName == "addresses" && addressValue == "not-an-ip")
    }
}
