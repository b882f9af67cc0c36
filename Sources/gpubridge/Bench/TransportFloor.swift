import Foundation
import GPUBridge
import GRPCCore
import GRPCNIOTransportHTTP2
import NIOCore
import NIOPosix

/// Echoes every byte it reads: the server of the TCP floor, nothing above SwiftNIO.
private final class TCPEchoHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.write(data, promise: nil)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.flush()
    }
}

extension Suites {
    /// What a small call costs below the actor layer, plaintext on loopback, interleaved in one run: a TCP echo of the
    /// same 64 bytes through SwiftNIO alone (an async client, as the cluster's callers are), the plain gRPC unary echo
    /// as the cluster's transport configures it (writes flushed at the end of the event loop's tick), and the same
    /// call with grpc-swift-nio-transport's default flush coalescing (a flush held up to 100 µs). The gap between the
    /// first two is gRPC's own cost per call (docs/PERFORMANCE.md, "The gRPC floor").
    func transportFloor(
        small: [UInt8], tickEcho: @escaping @Sendable ([UInt8]) async throws -> [UInt8]
    ) async throws -> [Figure] {
        progress.say("cluster transport floor (TCP, gRPC flush settings)")
        let group = MultiThreadedEventLoopGroup.singleton

        // The TCP floor: an echo server and one async client connection.
        let tcpServer = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(TCPEchoHandler())
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        defer { tcpServer.close(promise: nil) }
        guard let tcpPort = tcpServer.localAddress?.port else {
            throw GPUBridgeError.backendFailure(backend: "tcp", call: "bind", code: -1, message: "no local port")
        }
        let tcpClient = try await ClientBootstrap(group: group)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .connect(host: "127.0.0.1", port: tcpPort) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }

        // The plain gRPC echo with the transport's default flush coalescing.
        let server = HTTP2ServerTransport.Posix(
            address: .ipv4(host: "127.0.0.1", port: 0), transportSecurity: .plaintext,
            config: .defaults)
        let grpcServer = GRPCServer(transport: server, services: [PlainEchoService()])
        let serverTask = Task { try? await grpcServer.serve() }
        guard let grpcPort = try await server.listeningAddress.ipv4?.port else {
            grpcServer.beginGracefulShutdown()
            throw GPUBridgeError.backendFailure(backend: "grpc", call: "listen", code: -1, message: "no IPv4 address")
        }
        let client = GRPCClient(
            transport: try HTTP2ClientTransport.Posix(
                target: .ipv4(address: "127.0.0.1", port: grpcPort), transportSecurity: .plaintext,
                config: .defaults))
        let clientTask = Task { try? await client.runConnections() }
        defer {
            client.beginGracefulShutdown()
            grpcServer.beginGracefulShutdown()
        }
        @Sendable func defaultEcho(_ bytes: [UInt8]) async throws -> [UInt8] {
            try await client.unary(
                request: ClientRequest(message: bytes), descriptor: PlainEchoService.method, serializer: RawBytes(),
                deserializer: RawBytes(), options: .defaults
            ) { try $0.message }
        }

        let clock = ContinuousClock()
        let rounds = max(repeats * 20, 200)
        var tcpSamples: [Duration] = [], tickSamples: [Duration] = [], defaultSamples: [Duration] = []
        var tcpOK = true
        var tickOK = try await tickEcho(small) == small
        var defaultOK = try await defaultEcho(small) == small
        try await tcpClient.executeThenClose { inbound, outbound in
            var replies = inbound.makeAsyncIterator()
            func tcpEcho() async throws -> [UInt8] {
                try await outbound.write(ByteBuffer(bytes: small))
                var reply = ByteBuffer()
                while reply.readableBytes < small.count {
                    guard var part = try await replies.next() else { break }
                    reply.writeBuffer(&part)
                }
                return Array(reply.readableBytesView)
            }
            tcpOK = try await tcpEcho() == small
            for _ in 0..<rounds {
                var t = clock.now
                let echoed = try await tcpEcho()
                tcpSamples.append(clock.now - t)
                t = clock.now
                let tick = try await tickEcho(small)
                tickSamples.append(clock.now - t)
                t = clock.now
                let held = try await defaultEcho(small)
                defaultSamples.append(clock.now - t)
                tcpOK = tcpOK && echoed == small
                tickOK = tickOK && tick == small
                defaultOK = defaultOK && held == small
            }
        }
        client.beginGracefulShutdown()
        grpcServer.beginGracefulShutdown()
        await clientTask.value
        await serverTask.value

        func floorFigure(_ name: String, _ samples: [Duration], _ verified: Bool, note: String) -> Figure {
            let values = samples.map { $0.seconds * 1e6 }
            return Figure(
                suite: "cluster", name: name, device: "plaintext", deviceName: "127.0.0.1, plaintext", unit: "µs",
                median: values.median, min: values.min() ?? .nan, max: values.max() ?? .nan, samples: values.count,
                size: small.count, sizeUnit: "bytes", verified: verified, note: note)
        }
        let tcp = floorFigure(
            "TCP echo through SwiftNIO, 64 B", tcpSamples, tcpOK, note: "round trip, no gRPC, async client")
        let tick = floorFigure(
            "plain gRPC unary, 64 B, flush at end of tick", tickSamples, tickOK, note: "as the cluster configures it")
        let held = floorFigure(
            "plain gRPC unary, 64 B, default flush coalescing", defaultSamples, defaultOK, note: "flush held <= 100 µs")
        return [
            tcp, tick, held, ratio(tick, over: tcp, name: "gRPC (tick flush) / TCP, 64 B"),
            ratio(held, over: tick, name: "default coalescing / tick flush, 64 B"),
        ]
    }
}
