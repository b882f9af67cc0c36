import Foundation
import GPUBridge
import GPUBridgeActors
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import ServiceContextModule
import Synchronization
import Tracing

/// Nodes connected over gRPC (HTTP/2 over TCP, grpc-swift-2 with its NIO transport), with mutual TLS unless
/// plaintext is configured. One client connection per peer, made on first use and kept.
public final class GRPCNodeTransport: NodeTransport {
    public let security: ClusterSecurity
    public let limits: WireLimits
    let logger: Logger

    private struct Peer {
        let client: GRPCClient<HTTP2ClientTransport.Posix>
        let runner: Task<Void, Never>
    }

    private struct State {
        var peers: [String: Peer] = [:]
        var server: GRPCServer<HTTP2ServerTransport.Posix>?
        var serverTask: Task<Void, Never>?
        var closed = false
    }

    private let state = Mutex(State())

    public init(
        security: ClusterSecurity, limits: WireLimits = WireLimits(),
        logger: Logger = Logger(label: "gpubridge.cluster.grpc")
    ) throws(GPUBridgeError) {
        try security.validate()
        try limits.validate()
        self.security = security
        self.limits = limits
        self.logger = logger
    }

    /// The connection to `node`, made on first use. Connections are keyed by node identity (address and generation):
    /// forgetting a dead generation must not close the connection to the node restarted at the same address.
    private func client(for node: NodeID) throws -> GRPCClient<HTTP2ClientTransport.Posix> {
        let endpoint = Self.key(node)
        if let peer = state.withLock({ $0.peers[endpoint] }) { return peer.client }
        let transportSecurity: HTTP2ClientTransport.Posix.TransportSecurity
        switch security {
        case .plaintext:
            transportSecurity = .plaintext
        case let .mutualTLS(certificate, key, roots):
            transportSecurity = .mTLS(
                certificateChain: [.file(path: certificate, format: .pem)],
                privateKey: .file(path: key, format: .pem)
            ) { config in
                config.trustRoots = .certificates([.file(path: roots, format: .pem)])
                config.serverCertificateVerification = .noHostnameVerification
            }
        }
        var config = HTTP2ClientTransport.Posix.Config.defaults
        config.connection.flushCoalescing = Self.clientFlushCoalescing
        config.http2.maxFrameSize = 1 << 20
        config.http2.targetWindowSize = 16 << 20
        config.backoff = .init(initial: .milliseconds(50), max: .milliseconds(500), multiplier: 1.6, jitter: 0.2)
        let transport = try HTTP2ClientTransport.Posix(
            target: .ipv4(address: node.host, port: node.port),
            transportSecurity: transportSecurity, config: config)
        let client = GRPCClient(transport: transport)
        return state.withLock { s in
            if let existing = s.peers[endpoint] {
                // Lost a race: use the other client; this one never ran.
                return existing.client
            }
            let runner = Task { _ = try? await client.runConnections() }
            s.peers[endpoint] = Peer(client: client, runner: runner)
            return client
        }
    }

    /// Writes on a connection are flushed together at the end of the event loop's current tick, never later:
    /// grpc-swift-nio-transport's default holds a flush up to 100 µs hoping for more writes, which a request/reply
    /// exchange pays on each side. Measured on loopback (docs/PERFORMANCE.md, "The gRPC floor"): a 64 B unary round
    /// trip 626-634 µs with a zero delay against 760-827 µs with the default, at the same calls per second with 32 in
    /// flight (8 100-8 450); no coalescing at all gave 567-573 µs but 5 700-7 100 calls per second.
    static let clientFlushCoalescing = HTTP2ClientTransport.Config.Connection.FlushCoalescing(
        maxFlushDelay: .zero, maxBytes: 64 * 1024)
    static let serverFlushCoalescing = HTTP2ServerTransport.Config.Connection.FlushCoalescing(
        maxFlushDelay: .zero, maxBytes: 64 * 1024)

    func options(timeout: Duration) -> CallOptions {
        var options = CallOptions.defaults
        options.timeout = timeout
        options.maxRequestMessageBytes = limits.maxMessageBytes
        options.maxResponseMessageBytes = limits.maxMessageBytes
        options.waitForReady = false
        return options
    }

    public func call(_ request: ClusterRequest, on node: NodeID, timeout: Duration) async throws -> ClusterReply {
        guard request.call.arguments.count <= limits.maxCallBytes else {
            throw ClusterError.messageTooLarge(
                what: "call to \(request.address.id)",
                claimedBytes: UInt64(request.call.arguments.count),
                limitBytes: limits.maxCallBytes)
        }
        return try await call(
            header: try request.header(), arguments: request.call.arguments, on: node,
            actor: "\(request.address.id)", timeout: timeout)
    }

    /// Sends a call's header (as `ClusterRequest.header` writes it) and its arguments: unary when they fit in a chunk,
    /// streamed otherwise.
    func call(
        header: [UInt8], arguments: [UInt8], on node: NodeID, actor: String,
        timeout: Duration
    ) async throws -> ClusterReply {
        try await withSpan(SpanNames.remoteCall, ofKind: .client) { span in
            if span.isRecording {
                span.updateAttributes { a in
                    a["gpubridge.actor"] = actor
                    a["gpubridge.node"] = node.description
                    a["gpubridge.call.argument_bytes"] = arguments.count
                    a["rpc.system"] = "grpc"
                }
            }
            do {
                return try await send(header: header, arguments: arguments, on: node, actor: actor, timeout: timeout)
            } catch {
                span.setStatus(SpanStatus(code: .error))
                throw error
            }
        }
    }

    private func send(
        header: [UInt8], arguments: [UInt8], on node: NodeID, actor: String, timeout: Duration
    ) async throws -> ClusterReply {
        let client: GRPCClient<HTTP2ClientTransport.Posix>
        do { client = try self.client(for: node) } catch {
            throw ClusterError.nodeUnreachable(node: "\(node)", actor: actor, reason: "\(error)")
        }
        // The caller's trace context (this call's client span) goes with the call, so the node's spans join its trace.
        let metadata = Metadata.withCurrentTraceContext()
        let chunk = limits.chunkBytes
        let maxBody = limits.maxCallBytes
        let streamed = arguments.count > chunk
        let requestStream: StreamingClientRequest<Pieces>
        if streamed {
            requestStream = StreamingClientRequest(metadata: metadata) { writer in
                try await writer.write(Pieces(header))
                var at = 0
                while at < arguments.count {
                    let end = min(at + chunk, arguments.count)
                    try await writer.write(Pieces([(arguments, at..<end)]))
                    at = end
                }
            }
        } else {
            let message = Pieces([(header, 0..<header.count), (arguments, 0..<arguments.count)])
            requestStream = StreamingClientRequest(metadata: metadata) { writer in try await writer.write(message) }
        }
        do {
            return try await client.bidirectionalStreaming(
                request: requestStream, descriptor: streamed ? NodeMethods.callStream : NodeMethods.call,
                serializer: PiecesSerializer(), deserializer: BytesDeserializer(), options: options(timeout: timeout)
            ) { response in
                var iterator = response.messages.makeAsyncIterator()
                guard let first = try await iterator.next() else {
                    throw ClusterError.malformedMessage(what: "reply", detail: "no message")
                }
                let (kind, bodyBytes) = try first.withUnsafeBytes {
                    try ClusterReply.parseHeader($0, maxBodyBytes: maxBody)
                }
                let body = try await NodeService.assemble(
                    what: "reply", expected: bodyBytes, initial: first.dropFirst(ClusterReply.headerSize)
                ) { try await iterator.next() }
                return try ClusterReply.make(kind: kind, body: body)
            }
        } catch let error as RPCError {
            throw Self.map(error, node: node, actor: actor, timeout: timeout)
        }
    }

    static func map(_ error: RPCError, node: NodeID, actor: String, timeout: Duration) -> ClusterError {
        switch error.code {
        case .deadlineExceeded:
            return .deadlineExceeded(actor: actor, node: "\(node)", timeout: "\(timeout)")
        case .invalidArgument:
            // The node read the frame and refused it (too large, malformed): it was not run, and sending it again
            // would be refused again.
            return .malformedMessage(what: "call to \(actor)", detail: "node \(node) refused it: \(error.message)")
        default:
            return .nodeUnreachable(node: "\(node)", actor: actor, reason: "gRPC \(error.code): \(error.message)")
        }
    }

    public func ping(_ node: NodeID, from prober: String, timeout: Duration) async throws -> NodeID {
        let client = try self.client(for: node)
        do {
            let text = try await client.unary(
                request: ClientRequest(message: Pieces(Array(prober.utf8))), descriptor: NodeMethods.ping,
                serializer: PiecesSerializer(), deserializer: BytesDeserializer(),
                options: options(timeout: timeout)
            ) { response in
                String(decoding: try response.message, as: UTF8.self)
            }
            return try NodeID(parsing: text)
        } catch let error as RPCError {
            throw Self.map(error, node: node, actor: "ping", timeout: timeout)
        }
    }

    public func serve(_ handler: any NodeCallHandler, at node: NodeID) async throws -> Int {
        let transportSecurity: HTTP2ServerTransport.Posix.TransportSecurity
        switch security {
        case .plaintext:
            transportSecurity = .plaintext
        case let .mutualTLS(certificate, key, roots):
            transportSecurity = .mTLS(
                certificateChain: [.file(path: certificate, format: .pem)],
                privateKey: .file(path: key, format: .pem)
            ) { config in
                config.trustRoots = .certificates([.file(path: roots, format: .pem)])
                config.clientCertificateVerification = .noHostnameVerification
            }
        }
        var config = HTTP2ServerTransport.Posix.Config.defaults
        config.connection.flushCoalescing = Self.serverFlushCoalescing
        config.rpc.maxRequestPayloadSize = limits.maxMessageBytes
        config.http2.maxFrameSize = 1 << 20
        config.http2.targetWindowSize = 16 << 20
        let transport = HTTP2ServerTransport.Posix(
            address: .ipv4(host: node.host, port: node.port),
            transportSecurity: transportSecurity, config: config)
        let server = GRPCServer(transport: transport, services: [NodeService(handler: handler, limits: limits)])
        let task = Task { [logger] in
            do { try await server.serve() } catch {
                logger.error("gRPC server stopped", metadata: ["error": "\(error)"])
            }
        }
        state.withLock { s in
            s.server = server
            s.serverTask = task
        }
        guard let address = try await transport.listeningAddress.ipv4 else {
            throw GPUBridgeError.backendFailure(
                backend: "grpc", call: "listen", code: -1, message: "the server is not listening on IPv4")
        }
        return address.port
    }

    public func shutdown() async {
        let (peers, server, task) = state.withLock {
            s -> ([Peer], GRPCServer<HTTP2ServerTransport.Posix>?, Task<Void, Never>?) in
            s.closed = true
            defer { s.peers = [:]; s.server = nil; s.serverTask = nil }
            return (Array(s.peers.values), s.server, s.serverTask)
        }
        server?.beginGracefulShutdown()
        for peer in peers { peer.client.beginGracefulShutdown() }
        for peer in peers { await peer.runner.value }
        await task?.value
    }

    public var enforcesDeadlines: Bool { true }

    public func forget(_ node: NodeID) {
        let peer = state.withLock { $0.peers.removeValue(forKey: Self.key(node)) }
        peer?.client.beginGracefulShutdown()
    }

    static func key(_ node: NodeID) -> String { "\(node.host):\(node.port)@\(node.generation)" }

    /// The nodes this transport holds a connection to (their keys), for tests.
    var connectedPeers: Set<String> { state.withLock { Set($0.peers.keys) } }
}
