import Foundation
import GPUBridge
import GPUBridgeActors
@testable import GPUBridgeCluster
import GPUBridgeTestSupport
import Synchronization
import Testing

/// A valid request frame: the header `ClusterRequest.header` writes, then the arguments.
func requestFrame(
    arguments: [UInt8], substitutions: [String] = [],
    target: String = "$s4echo"
) throws -> [UInt8] {
    let request = ClusterRequest(
        address: ActorAddress(
            id: GPUActorID(type: "echo", key: "k"),
            node: NodeID(host: "127.0.0.1", port: 7000, generation: 9), activation: 3),
        caller: "tester", timeoutNanoseconds: 1_000_000_000,
        call: ActorCall(target: target, genericSubstitutions: substitutions, argumentCount: 1, arguments: arguments))
    return try request.header() + arguments
}

/// `frame` with its last eight header bytes (the argument length) replaced by `claimed`.
func claiming(_ claimed: UInt64, header: [UInt8]) -> [UInt8] {
    var patched = header
    withUnsafeBytes(of: claimed.littleEndian) { raw in
        for i in 0..<8 { patched[patched.count - 8 + i] = raw[i] }
    }
    return patched
}

/// The error `body` throws, as a `ClusterError` (nil when it returns or throws something else).
private func clusterError(_ body: () throws -> Void) -> ClusterError? {
    do { try body(); return nil } catch { return error as? ClusterError }
}

@Suite("Cluster wire: size limits, malformed frames, no trap on any bytes")
struct WireSafetyTests {
    static let limit = WireLimits().maxCallBytes

    @Test("a call header claiming more than the limit is refused with the claim and the limit named")
    func hugeCallClaim() throws {
        let header = try ClusterRequest(
            address: ActorAddress(
                id: GPUActorID(type: "echo", key: "k"),
                node: NodeID(host: "h", port: 1, generation: 1), activation: 1),
            caller: "c", timeoutNanoseconds: 1,
            call: ActorCall(target: "t", genericSubstitutions: [], argumentCount: 0, arguments: [])
        ).header()
        for claimed in [UInt64(Self.limit) + 1, UInt64(Int.max / 2), UInt64.max] {
            let error = clusterError {
                _ = try claiming(claimed, header: header).withUnsafeBytes { raw in
                    var reader = WireReader(raw)
                    return try ClusterRequest.parseHeader(&reader, maxArgumentBytes: Self.limit)
                }
            }
            #expect(error == .messageTooLarge(what: "call to echo/k", claimedBytes: claimed, limitBytes: Self.limit))
            let text = error?.description ?? ""
            #expect(text.contains("\(claimed)") && text.contains("\(Self.limit)"))
        }
        // At the limit it is a header like any other (the arguments are then checked against the frame).
        let atLimit = try claiming(UInt64(Self.limit), header: header).withUnsafeBytes { raw in
            var reader = WireReader(raw)
            return try ClusterRequest.parseHeader(&reader, maxArgumentBytes: Self.limit)
        }
        #expect(atLimit.argumentBytes == Self.limit)
    }

    @Test("a reply header claiming more than the limit is refused; an unknown kind is named")
    func hugeReplyClaim() throws {
        var w = WireWriter()
        w.u8(ClusterReply.Kind.value.rawValue)
        w.u64(UInt64(Int.max / 2))
        let error = clusterError {
            _ = try w.bytes.withUnsafeBytes { try ClusterReply.parse($0, maxBodyBytes: Self.limit) }
        }
        #expect(error == .messageTooLarge(what: "reply", claimedBytes: UInt64(Int.max / 2), limitBytes: Self.limit))
        let unknown = clusterError {
            _ = try [UInt8]([7, 0, 0, 0, 0, 0, 0, 0, 0]).withUnsafeBytes {
                try ClusterReply.parse($0, maxBodyBytes: 16)
            }
        }
        #expect(unknown == .malformedMessage(what: "reply", detail: "unknown kind 7"))
    }

    @Test("every truncation of a valid call or reply frame is refused, never read past its end")
    func truncatedFrames() throws {
        let request = try requestFrame(arguments: [1, 2, 3, 4, 5], substitutions: ["Si"])
        let full = try request.withUnsafeBytes { try ClusterRequest.parse($0, maxArgumentBytes: Self.limit) }
        #expect(full.call.arguments == [1, 2, 3, 4, 5] && full.call.genericSubstitutions == ["Si"])
        #expect(full.address.node.port == 7000)
        for cut in 0..<request.count {
            #expect(throws: (any Error).self) {
                try Array(request[..<cut]).withUnsafeBytes {
                    try ClusterRequest.parse($0, maxArgumentBytes: Self.limit)
                }
            }
        }
        // One byte too many is refused as well.
        let longer = clusterError {
            _ = try (request + [0]).withUnsafeBytes { try ClusterRequest.parse($0, maxArgumentBytes: Self.limit) }
        }
        #expect(longer == .malformedMessage(what: "call", detail: "6 argument bytes, header says 5"))
        let envelope = RemoteErrorEnvelope(mangledType: "x", typeName: "X", description: "boom", json: [1, 2])
        let (header, body) = try ClusterReply.reply(.error(envelope)).header()
        let reply = header + body
        let parsed = try reply.withUnsafeBytes { try ClusterReply.parse($0, maxBodyBytes: Self.limit) }
        guard case let .reply(.error(back)) = parsed else {
            Issue.record("the error reply did not come back as one")
            return
        }
        #expect(back == envelope)
        for cut in 0..<reply.count {
            #expect(throws: (any Error).self) {
                try Array(reply[..<cut]).withUnsafeBytes { try ClusterReply.parse($0, maxBodyBytes: Self.limit) }
            }
        }
    }

    @Test("garbled call headers are refused with what is wrong")
    func garbledFrames() throws {
        var frame = try requestFrame(arguments: [])
        frame[0] ^= 0xFF
        #expect(
            clusterError { _ = try frame.withUnsafeBytes { try ClusterRequest.parse($0, maxArgumentBytes: 64) } }
                == .malformedMessage(what: "call", detail: "bad magic"))
        let many = try requestFrame(arguments: [], substitutions: Array(repeating: "Si", count: 65))
        #expect(
            clusterError { _ = try many.withUnsafeBytes { try ClusterRequest.parse($0, maxArgumentBytes: 64) } }
                == .malformedMessage(what: "call", detail: "65 generic substitutions (at most 64)"))
        let empty = try requestFrame(arguments: [], target: "")
        #expect(
            clusterError { _ = try empty.withUnsafeBytes { try ClusterRequest.parse($0, maxArgumentBytes: 64) } }
                == .malformedMessage(what: "call", detail: "empty target"))
    }

    @Test("fields wider than their wire field are refused when writing, not trapped on")
    func wideFields() throws {
        let request = ClusterRequest(
            address: ActorAddress(
                id: GPUActorID(type: "t", key: "k"), node: NodeID(host: "h", port: -1, generation: 1),
                activation: 1),
            caller: "c", timeoutNanoseconds: 1,
            call: ActorCall(target: "t", genericSubstitutions: [], argumentCount: Int(UInt32.max) + 1, arguments: []))
        let portError = bridgeError { _ = try request.header() }
        #expect(
            portError
                == .invalidArgument(
                    name: "node port", value: "-1",
                    limit: "0...\(UInt32.max) (a 4-byte wire field)"))
        var wide = request
        wide.address.node.port = 1
        let countError = bridgeError { _ = try wide.header() }
        #expect(
            countError
                == .invalidArgument(
                    name: "argument count", value: "\(Int(UInt32.max) + 1)",
                    limit: "0...\(UInt32.max) (a 4-byte wire field)"))
    }

    @Test("random bytes and mutated valid frames never trap the decoders (seeded, 4000 frames)")
    func fuzz() async throws {
        var random = SplitMix64(seed: 0x5EED_F00D)
        let envelope = RemoteErrorEnvelope(
            mangledType: "\u{01}\u{7F}\u{7F}\u{7F}\u{7F}Sg", typeName: "X",
            description: "boom", json: Array("{}".utf8))
        var seeds: [[UInt8]] = [
            try requestFrame(arguments: [1, 2, 3], substitutions: ["Si", "Sf"]),
            try requestFrame(arguments: Array(repeating: 9, count: 40)),
        ]
        let replies = [
            ClusterReply.reply(.value([4, 5, 6])), .reply(.void), .reply(.error(envelope)),
            .notHere(reason: "moved"),
        ]
        for reply in replies {
            let (header, body) = try reply.header()
            seeds.append(header + body)
        }
        var values = WireWriter()
        try values.lengthPrefixed { try WireCodec.encode([Float]([1, 2]), into: &$0) }
        try values.lengthPrefixed { try WireCodec.encode(["a": 1], into: &$0) }
        seeds.append(values.bytes)
        var parsed = 0, refused = 0, streamed = 0
        for i in 0..<4000 {
            var frame: [UInt8]
            if i % 4 == 0 {
                frame = (0..<Int(random.next() % 96)).map { _ in UInt8(truncatingIfNeeded: random.next()) }
            } else {
                frame = seeds[Int(random.next() % UInt64(seeds.count))]
                for _ in 0...Int(random.next() % 4) where !frame.isEmpty {
                    let at = Int(random.next() % UInt64(frame.count))
                    switch random.next() % 4 {
                    case 0: frame[at] = UInt8(truncatingIfNeeded: random.next())
                    case 1: frame[at] = [0x00, 0x01, 0x7F, 0x80, 0xFF][Int(random.next() % 5)]
                    case 2: frame.removeSubrange(at...)
                    default: frame.insert(UInt8(truncatingIfNeeded: random.next()), at: at)
                    }
                }
            }
            // The streaming path: the header alone (a claim up to what the header field can say), then the rest in
            // chunks cut at random, as a peer may send them. Nothing is allocated for the claim itself.
            let header = frame.withUnsafeBytes { raw -> (argumentBytes: Int, headerBytes: Int)? in
                var reader = WireReader(raw)
                guard let (_, claimed) = try? ClusterRequest.parseHeader(&reader, maxArgumentBytes: Int.max / 2) else {
                    return nil
                }
                return (claimed, reader.offset)
            }
            if let header {
                var rest = frame[header.headerBytes...]
                var chunks: [[UInt8]] = []
                while !rest.isEmpty {
                    let n = 1 + Int(random.next() % UInt64(rest.count))
                    chunks.append(Array(rest.prefix(n)))
                    rest = rest.dropFirst(n)
                }
                var next = 0
                let assembled = try? await NodeService.assemble(
                    what: "call stream", expected: header.argumentBytes,
                    initial: []
                ) {
                    defer { next += 1 }
                    return next < chunks.count ? chunks[next] : nil
                }
                #expect(assembled == nil || assembled?.count == header.argumentBytes)
                streamed += 1
            }
            frame.withUnsafeBytes { raw in
                if let request = try? ClusterRequest.parse(raw, maxArgumentBytes: 1 << 20) {
                    parsed += 1
                    #expect(request.call.arguments.count <= 1 << 20)
                    // What the receiving node does with the names a peer sent.
                    for name in request.call.genericSubstitutions { _ = _typeByName(name) }
                } else {
                    refused += 1
                }
                if let reply = try? ClusterReply.parse(raw, maxBodyBytes: 1 << 20) {
                    parsed += 1
                    // A decoded remote error looks its type up by the name the peer sent.
                    if case let .reply(.error(e)) = reply { _ = e.error() }
                } else {
                    refused += 1
                }
                var reader = WireReader(raw)
                while reader.remaining > 0, let region = try? reader.region() {
                    _ = try? WireCodec.decode([Float].self, from: region)
                    _ = try? WireCodec.decode([Int].self, from: region)
                    _ = try? WireCodec.decode([String: Int].self, from: region)
                }
            }
        }
        // Both outcomes happened: the mutations reached past the first check, and broke frames.
        #expect(parsed > 100)
        #expect(refused > 100)
        #expect(streamed > 100)
    }

    @Test("a node refuses an oversized or garbled call with the reason, and goes on serving")
    func nodeRefusesAndServes() async throws {
        var limits = WireLimits()
        limits.maxMessageBytes = 128 * 1024
        limits.chunkBytes = 4096
        limits.maxCallBytes = 64 * 1024
        var pair = try GRPCPair()
        try await pair.start(limits: limits)
        let client = try await pair.client(limits: limits)
        let echo = try client.actor(EchoActor.self, key: "limits")
        #expect(try await echo.echo([1, 2, 3]) == [1, 2, 3])
        let raw = try GRPCNodeTransport(security: pair.certificates.client, limits: limits)
        let node = pair.node.id
        let header = try requestFrame(arguments: [])
        // Streamed (arguments over a chunk): a claim of Int.max / 2 bytes, then one just over the node's limit.
        for claimed in [UInt64(Int.max / 2), UInt64(limits.maxCallBytes) + 1] {
            do {
                _ = try await raw.call(
                    header: claiming(claimed, header: header),
                    arguments: [UInt8](repeating: 7, count: 5000), on: node, actor: "echo/k",
                    timeout: .seconds(20))
                Issue.record("a claim of \(claimed) bytes was accepted")
            } catch let error as ClusterError {
                guard case let .malformedMessage(_, detail) = error else { Issue.record("\(error)"); continue }
                #expect(detail.contains("claims \(claimed) bytes"), "\(detail)")
                #expect(detail.contains("limit of \(limits.maxCallBytes) bytes"), "\(detail)")
            }
        }
        // Unary: a bad magic number.
        var garbled = header
        garbled[1] ^= 0x55
        do {
            _ = try await raw.call(header: garbled, arguments: [], on: node, actor: "echo/k", timeout: .seconds(20))
            Issue.record("a garbled call was accepted")
        } catch let error as ClusterError {
            #expect(
                error
                    == .malformedMessage(
                        what: "call to echo/k",
                        detail: "node \(node) refused it: malformed call: bad magic"))
        }
        // Larger than the limit on the sending side: refused before it is sent.
        do {
            _ = try await echo.echo([UInt8](repeating: 1, count: limits.maxCallBytes + 1))
            Issue.record("a call over the limit was sent")
        } catch let error as ClusterError {
            guard case let .messageTooLarge(_, claimed, limit) = error else { Issue.record("\(error)"); return }
            #expect(limit == limits.maxCallBytes && claimed > UInt64(limit))
        }
        // The node still serves, the same activation.
        #expect(try await echo.echo([9, 8]) == [9, 8])
        #expect(try await echo.callCount() == 2)
        await raw.shutdown()
        await pair.stop()
    }

    @Test("maxCallBytes outside its range is rejected with the name, the value and the limit")
    func badLimit() {
        var limits = WireLimits()
        limits.maxCallBytes = 0
        let error = bridgeError { _ = try GRPCNodeTransport(security: .plaintext, limits: limits) }
        #expect(error == .invalidArgument(name: "maxCallBytes", value: "0", limit: "1...\(1 << 40) (1 TiB)"))
    }
}

@Suite("Deadlines of cluster calls")
struct DeadlineTests {
    /// A body that ignores cancellation: it ends only when the test releases it (or after 120 s), and says whether it
    /// has ended.
    final class StubbornBody: Sendable {
        private let ended = Atomic<Bool>(false)
        private let gate = Mutex<CheckedContinuation<Int, Never>?>(nil)
        var hasEnded: Bool { ended.load(ordering: .acquiring) }

        func run() async -> Int {
            let value = await withCheckedContinuation { c in
                gate.withLock { $0 = c }
                DispatchQueue.global().asyncAfter(deadline: .now() + 120) { self.release() }
            }
            ended.store(true, ordering: .releasing)
            return value
        }

        func release() {
            gate.withLock { c in
                defer { c = nil }; return c
            }?.resume(returning: 1)
        }
    }

    @Test(
        "within: ends at the deadline or on cancellation without waiting for a body that ignores both; passes results and errors through"
    )
    func withinDoesNotWaitForTheBody() async throws {
        let id = GPUActorID(type: "t", key: "k")
        let stubborn = StubbornBody()
        do {
            _ = try await ClusterNode.within(.milliseconds(100), actor: id, node: "n") { await stubborn.run() }
            Issue.record("within returned the body's value")
        } catch let error as ClusterError {
            guard case .deadlineExceeded = error else { Issue.record("\(error)"); return }
        }
        // It answered while the body was still running: it did not wait for it.
        #expect(!stubborn.hasEnded)
        stubborn.release()
        #expect(try await ClusterNode.within(.seconds(30), actor: id, node: "n") { 42 } == 42)
        await #expect(throws: GPUBridgeError.notFound(kind: "x", name: "y")) {
            _ = try await ClusterNode.within(.seconds(30), actor: id, node: "n") { () throws -> Int in
                throw GPUBridgeError.notFound(kind: "x", name: "y")
            }
        }
        // Cancelling the caller ends the wait, again without waiting for the body.
        let other = StubbornBody()
        let waiter = Task { try await ClusterNode.within(.seconds(600), actor: id, node: "n") { await other.run() } }
        try await Task.sleep(for: .milliseconds(50))
        waiter.cancel()
        await #expect(throws: CancellationError.self) { _ = try await waiter.value }
        #expect(!other.hasEnded)
        other.release()
    }
}

@Suite("gRPC connections")
struct ConnectionTests {
    @Test("connections are kept per node generation: forgetting a dead generation keeps the restarted node's")
    func keyedByGeneration() async throws {
        var pair = try GRPCPair()
        try await pair.start()
        let live = pair.node.id
        let transport = try GRPCNodeTransport(security: pair.certificates.client)
        #expect(try await transport.ping(live, from: "test", timeout: .seconds(10)) == live)
        let key = GRPCNodeTransport.key(live)
        #expect(transport.connectedPeers == [key])
        // The same address, an earlier generation (the node before a restart), declared dead and forgotten.
        transport.forget(NodeID(host: live.host, port: live.port, generation: live.generation - 1))
        #expect(transport.connectedPeers == [key])
        transport.forget(live)
        #expect(transport.connectedPeers.isEmpty)
        await transport.shutdown()
        await pair.stop()
    }
}
