import Foundation
import GPUBridge
import GPUBridgeActors
import GPUBridgeTestSupport
import NIOCore
import NIOEmbedded
import NIOPosix
import Testing

@testable import GPUBridgeCluster

/// A plaintext connection that writes raw bytes to a node and reads what comes back, below `TCPNodeTransport`.
private struct RawConnection {
    let channel: NIOAsyncChannel<ByteBuffer, ByteBuffer>

    static func open(_ node: NodeID) async throws -> RawConnection {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: node.host, port: node.port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try NIOAsyncChannel<ByteBuffer, ByteBuffer>(
                        wrappingChannelSynchronously: channel,
                        configuration: .init(isOutboundHalfClosureEnabled: true))
                }
            }
        return RawConnection(channel: channel)
    }

    /// Writes `bytes` and (unless told not to) closes its sending side, so the node closes the connection when it
    /// reads the end; then reads until `count` bytes came back or the connection closed; returns what came.
    func send(_ bytes: [UInt8], expecting count: Int, closeSending: Bool = true) async throws -> [UInt8] {
        try await channel.executeThenClose { inbound, outbound in
            try await outbound.write(ByteBuffer(bytes: bytes))
            if closeSending { outbound.finish() }
            var received: [UInt8] = []
            for try await part in inbound {
                received += Array(part.readableBytesView)
                if received.count >= count { break }
            }
            return received
        }
    }
}

/// A frame as `TCPFrame` writes it: length, kind, id, payload.
private func frame(kind: UInt8, id: UInt64, payload: [UInt8], claimedLength: UInt32? = nil) -> [UInt8] {
    var bytes: [UInt8] = []
    withUnsafeBytes(of: (claimedLength ?? UInt32(9 + payload.count)).littleEndian) { bytes += $0 }
    bytes.append(kind)
    withUnsafeBytes(of: id.littleEndian) { bytes += $0 }
    return bytes + payload
}

/// The frames in `bytes`, as (kind, id, payload text).
private func frames(_ bytes: [UInt8]) -> [(kind: UInt8, id: UInt64, text: String)] {
    var out: [(UInt8, UInt64, String)] = []
    var at = 0
    while at + 13 <= bytes.count {
        let length = bytes[at..<at + 4].withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(as: UInt32.self)) }
        let id = bytes[at + 5..<at + 13].withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
        let end = at + 4 + Int(length)
        guard end <= bytes.count else { break }
        out.append((bytes[at + 4], id, String(decoding: bytes[at + 13..<end], as: UTF8.self)))
        at = end
    }
    return out
}

@Suite("TCP node transport: frames a node refuses, and bytes that must not trap it")
struct TCPTransportTests {
    @Test("a node refuses an oversized or garbled call with the reason, and goes on serving")
    func nodeRefusesAndServes() async throws {
        var limits = WireLimits()
        limits.maxMessageBytes = 128 * 1024
        limits.chunkBytes = 4096
        limits.maxCallBytes = 64 * 1024
        var pair = try GRPCPair(.tcp)
        try await pair.start(limits: limits)
        let client = try await pair.client(limits: limits)
        let echo = try client.actor(EchoActor.self, key: "limits")
        #expect(try await echo.echo([1, 2, 3]) == [1, 2, 3])
        // A sender whose limit is larger than the node's.
        var generous = limits
        generous.maxCallBytes = 8 << 20
        let raw = try TCPNodeTransport(security: pair.certificates.client, limits: generous)
        let node = pair.node.id
        let header = try requestFrame(arguments: [])
        // Just over the node's limit (its header read, the claim refused), and past the frame size the node
        // buffers at all (refused from the frame's length, its body skipped as it arrives).
        for size in [limits.maxCallBytes + 1, limits.maxCallBytes + (3 << 20)] {
            do {
                _ = try await raw.call(
                    header: claiming(UInt64(size), header: header), arguments: [UInt8](repeating: 7, count: size),
                    on: node, actor: "echo/k", timeout: .seconds(20))
                Issue.record("a call of \(size) bytes was accepted")
            } catch let error as ClusterError {
                guard case let .malformedMessage(what, detail) = error else { Issue.record("\(error)"); continue }
                #expect(what == "call to echo/k")
                #expect(detail.contains("node \(node) refused it"), "\(detail)")
                #expect(detail.contains("limit of \(limits.maxCallBytes) bytes"), "\(detail)")
            }
        }
        // A bad magic number.
        var garbled = header
        garbled[1] ^= 0x55
        do {
            _ = try await raw.call(header: garbled, arguments: [], on: node, actor: "echo/k", timeout: .seconds(20))
            Issue.record("a garbled call was accepted")
        } catch let error as ClusterError {
            #expect(
                error
                    == .malformedMessage(
                        what: "call to echo/k", detail: "node \(node) refused it: malformed call: bad magic"))
        }
        // The same connection still carries calls, and the node still serves the same activation.
        #expect(try await echo.echo([9, 8]) == [9, 8])
        #expect(try await echo.callCount() == 2)
        await raw.shutdown()
        await pair.stop()
    }

    @Test(
        "an assembly, reserved at its head or kept in pieces, returns exactly the announced bytes and refuses more",
        arguments: [true, false])
    func assembly(reserve: Bool) throws {
        let value = (0..<(FreshArrays.hugePageBytes + 5_000)).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 >> 11) }
        var assembly = TCPAssembly(expected: value.count, tag: "t", reserve: reserve)
        #expect(assembly.reserved == reserve)
        var at = 0
        for size in [1, 4096, 2 << 20, 3 << 20] where at + size < value.count {
            #expect(try assembly.append(ByteBuffer(bytes: value[at..<at + size])) == nil)
            at += size
        }
        #expect(try assembly.append(ByteBuffer()) == nil)
        let whole = try assembly.append(ByteBuffer(bytes: value[at...]))
        #expect(whole == value)

        var short = TCPAssembly(expected: 10, tag: "t", reserve: reserve)
        #expect(try short.append(ByteBuffer(bytes: [UInt8](repeating: 1, count: 6))) == nil)
        #expect(throws: ClusterError.self) { try short.append(ByteBuffer(bytes: [UInt8](repeating: 2, count: 5))) }
    }

    @Test("a connection reserves at most its limit ahead of the bytes; a value done, refused or dropped gives it back")
    func reservations() throws {
        let limit = TCPAssemblies<Int>.reserveLimit
        let budget = TCPReservations(limit: .max)
        let assemblies = TCPAssemblies<Int>(budget: budget)
        // Two heads that fit the limit together are reserved; a third that does not is kept in pieces instead.
        assemblies.begin(1, expected: limit / 2, tag: 1)
        assemblies.begin(2, expected: limit / 2, tag: 2)
        #expect(assemblies.reservedBytes == limit)
        assemblies.begin(3, expected: 4, tag: 3)
        #expect(assemblies.reservedBytes == limit)
        #expect(assemblies.count == 3)
        // The kept value still assembles, byte for byte.
        #expect(try assemblies.append(ByteBuffer(bytes: [1, 2]), to: 3) == nil)
        let kept = try #require(try assemblies.append(ByteBuffer(bytes: [3, 4]), to: 3))
        #expect(kept.0 == 3 && kept.1 == [1, 2, 3, 4])
        // Dropping one gives its bytes back, so a new head is reserved again.
        assemblies.drop(1)
        #expect(assemblies.reservedBytes == limit / 2)
        assemblies.begin(4, expected: 8, tag: 4)
        #expect(assemblies.reservedBytes == limit / 2 + 8)
        let done = try #require(try assemblies.append(ByteBuffer(bytes: Array(1...8)), to: 4))
        #expect(done.0 == 4 && done.1 == Array(1...8))
        #expect(assemblies.reservedBytes == limit / 2)
        // Too many bytes refuse the value and give its reservation back; later bytes for it are ignored.
        assemblies.begin(5, expected: 2, tag: 5)
        #expect(throws: ClusterError.self) { try assemblies.append(ByteBuffer(bytes: [1, 2, 3]), to: 5) }
        #expect(assemblies.reservedBytes == limit / 2)
        #expect(try assemblies.append(ByteBuffer(bytes: [1]), to: 5) == nil)
        // Unknown ids are ignored; removing all gives everything back.
        #expect(try assemblies.append(ByteBuffer(bytes: [1]), to: 99) == nil)
        #expect(budget.bytes == limit / 2)
        assemblies.removeAll()
        #expect(assemblies.reservedBytes == 0 && assemblies.count == 0)
        #expect(budget.bytes == 0)
    }

    @Test("connections share the process's reservations: past it a head is kept in pieces; a closed one gives back")
    func sharedReservations() throws {
        let budget = TCPReservations(limit: 1000)
        var first: TCPAssemblies<Int>? = TCPAssemblies(budget: budget)
        let second = TCPAssemblies<Int>(budget: budget)
        first?.begin(1, expected: 600, tag: 1)
        second.begin(1, expected: 600, tag: 1)  // 1 200 would pass the shared 1 000: kept in pieces
        #expect(first?.reservedBytes == 600 && second.reservedBytes == 0 && budget.bytes == 600)
        // The value kept in pieces still assembles.
        let value = (0..<600).map { UInt8(truncatingIfNeeded: $0 &* 13) }
        let whole = try #require(try second.append(ByteBuffer(bytes: value), to: 1))
        #expect(whole.1 == value)
        // The first connection goes with its value half-assembled: its reservation is given back.
        #expect(try first?.append(ByteBuffer(bytes: value[..<300]), to: 1) == nil)
        first = nil
        #expect(budget.bytes == 0)
        second.begin(2, expected: 600, tag: 2)
        #expect(second.reservedBytes == 600 && budget.bytes == 600)
    }

    @Test("the decoder passes a chunk frame's bytes on as they are read, and the whole frames around it")
    func chunkPieces() throws {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(TCPFrameDecoder(maxPayloadBytes: 1 << 20)))
        let chunk = (0..<10_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let stream =
            frame(kind: TCPFrameKind.ping.rawValue, id: 1, payload: Array("a".utf8))
            + frame(kind: TCPFrameKind.chunk.rawValue, id: 7, payload: chunk)
            + frame(kind: TCPFrameKind.chunk.rawValue, id: 8, payload: [])
            + frame(kind: TCPFrameKind.pong.rawValue, id: 2, payload: Array("b".utf8))
        // Fed in reads of 3 000 bytes, which split the heads and the chunk's payload.
        var at = 0
        while at < stream.count {
            try channel.writeInbound(ByteBuffer(bytes: stream[at..<min(at + 3_000, stream.count)]))
            at += 3_000
        }
        var pieces: [UInt8] = []
        var pieceCount = 0
        var whole: [(UInt8, UInt64, String)] = []
        while let inbound = try channel.readInbound(as: TCPInbound.self) {
            switch inbound {
            case let .piece(id, bytes):
                #expect(id == 7)
                pieces += Array(buffer: bytes)
                pieceCount += 1
            case let .frame(kind, id, payload): whole.append((kind, id, String(buffer: payload)))
            default: Issue.record("unexpected \(inbound)")
            }
        }
        #expect(pieces == chunk)
        #expect(pieceCount >= 4, "the chunk's payload came in \(pieceCount) pieces")
        #expect(whole.map(\.0) == [TCPFrameKind.ping.rawValue, TCPFrameKind.pong.rawValue])
        #expect(whole.map(\.1) == [1, 2] && whole.map(\.2) == ["a", "b"])
        _ = try channel.finish()
    }

    @Test("unknown kinds and overlong frames are refused by id; a frame shorter than its head closes its connection")
    func rawFrames() async throws {
        // Plaintext, so raw bytes reach the frame decoder.
        var pair = try GRPCPair(.tcp)
        try await pair.start(security: .plaintext)
        let node = pair.node.id
        // An unknown kind and a ping, on one connection: each answered with its id.
        let unknown = frame(kind: 99, id: 0xABCD, payload: [1, 2, 3])
        let ping = frame(kind: 3, id: 7, payload: Array("raw".utf8))
        let answers = frames(
            try await RawConnection.open(node).send(
                unknown + ping, expecting: 26 + "a frame of unknown kind 99".utf8.count + node.description.utf8.count))
        #expect(answers.count == 2)
        #expect(answers.first?.kind == 5 && answers.first?.id == 0xABCD)
        #expect(answers.first?.text == "a frame of unknown kind 99")
        #expect(answers.last?.kind == 4 && answers.last?.id == 7 && answers.last?.text == node.description)
        // A frame longer than a frame may be (200 MiB claimed, 3 bytes sent): refused from its head, by id.
        let long = frames(
            try await RawConnection.open(node).send(
                frame(kind: 1, id: 42, payload: [1, 2, 3], claimedLength: 200 << 20), expecting: 13))
        #expect(long.first?.kind == 5 && long.first?.id == 42)
        #expect(long.first?.text.contains("claiming \((200 << 20) - 9) bytes") == true, "\(long)")
        // A length under the head: the node closes that connection (it cannot find the next frame); the sending
        // side stays open, so the close is the node's.
        let short = try await RawConnection.open(node).send(
            frame(kind: 1, id: 1, payload: [], claimedLength: 3), expecting: 1, closeSending: false)
        #expect(short.isEmpty)
        // The node still answers pings from the transport.
        let transport = try TCPNodeTransport(security: .plaintext)
        #expect(try await transport.ping(node, from: "after", timeout: .seconds(10)) == node)
        await transport.shutdown()
        await pair.stop()
    }

    @Test("seeded random bytes and mutated frames never trap a node; it serves afterwards (300 connections)")
    func randomBytes() async throws {
        var pair = try GRPCPair(.tcp)
        try await pair.start(security: .plaintext)
        let node = pair.node.id
        var random = SplitMix64(seed: 2024)
        let valid = frame(kind: 1, id: 5, payload: [0, 0, 0, 0] + (try requestFrame(arguments: [1, 2, 3])))
        for round in 0..<300 {
            var bytes: [UInt8]
            if round % 2 == 0 {
                bytes = (0..<Int(random.next() % 200)).map { _ in UInt8(truncatingIfNeeded: random.next()) }
            } else {
                bytes = valid
                for _ in 0..<1 + Int(random.next() % 4) {
                    bytes[Int(random.next() % UInt64(bytes.count))] = UInt8(truncatingIfNeeded: random.next())
                }
            }
            let connection = try await RawConnection.open(node)
            // Whatever comes back (a refusal, nothing, a closed connection) is fine; the node must not stop.
            _ = try? await connection.send(bytes, expecting: 1)
        }
        let transport = try TCPNodeTransport(security: .plaintext)
        #expect(try await transport.ping(node, from: "after", timeout: .seconds(10)) == node)
        await transport.shutdown()
        await pair.stop()
    }

    @Test("a deadline ends a call the node has not answered; the connection serves the next call")
    func deadline() async throws {
        var pair = try GRPCPair(.tcp)
        try await pair.start()
        let client = try await pair.client()
        // The connection and its TLS handshake first (under ThreadSanitizer a handshake holds the event loop for a
        // second or more), so the deadline below is the call's alone.
        #expect(try await client.actor(EchoActor.self, key: "before").echo([1]) == [1])
        let trouble = try client.actor(TroubleActor.self, key: "slow")
        let started = ContinuousClock.now
        do {
            _ = try await ClusterCall.$timeout.withValue(.milliseconds(200)) {
                try await trouble.wait(milliseconds: 1500)
            }
            Issue.record("the slow call returned")
        } catch let error as ClusterError {
            guard case .deadlineExceeded = error else { Issue.record("\(error)"); return }
        }
        #expect(ContinuousClock.now - started < .seconds(1))
        #expect(try await client.actor(EchoActor.self, key: "after").echo([4]) == [4])
        await pair.stop()
    }

    @Test("an exchange on a connection already closed fails with the reason, and leaves no promise unfulfilled")
    func exchangeOnClosedConnection() async throws {
        let connection = TCPConnection(channel: EmbeddedChannel())
        connection.closed("the peer went away")
        for _ in 0..<3 {
            do {
                _ = try await connection.exchange(timeout: .seconds(1)) { id, allocator in
                    TCPOutgoing(head: TCPFrame.make(.ping, id: id, parts: [], allocator: allocator))
                }
                Issue.record("an exchange on a closed connection returned")
            } catch let failure as TCPExchangeFailure {
                guard case let .closed(reason) = failure else { Issue.record("\(failure)"); continue }
                #expect(reason == "the peer went away")
            }
        }
        #expect(connection.isClosed)
    }

    @Test("an unreachable node is reported as such, naming it; forget drops the connection")
    func unreachable() async throws {
        var pair = try GRPCPair(.tcp)
        try await pair.start(security: .plaintext)
        let node = pair.node.id
        let transport = try TCPNodeTransport(security: .plaintext)
        #expect(try await transport.ping(node, from: "t", timeout: .seconds(10)) == node)
        #expect(transport.connectedPeers == [TCPNodeTransport.key(node)])
        transport.forget(node)
        #expect(transport.connectedPeers.isEmpty)
        await pair.stop()
        do {
            _ = try await transport.ping(node, from: "t", timeout: .seconds(5))
            Issue.record("a stopped node answered")
        } catch let error as ClusterError {
            guard case let .nodeUnreachable(name, actor, _) = error else { Issue.record("\(error)"); return }
            #expect(name == "\(node)" && actor == "ping")
        }
        await transport.shutdown()
    }
}
