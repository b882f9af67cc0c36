import Foundation
import GPUBridge
import GPUBridgeActors
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import ServiceContextModule
import Synchronization
import Tracing

/// How node-to-node traffic is secured.
public enum ClusterSecurity: Sendable, Hashable {
    /// Mutual TLS: every node presents `certificate` (PEM, signed by the cluster CA) with `privateKey` (PEM), and
    /// accepts only peers whose certificate chains to `trustRoots` (the cluster CA, PEM). Host names are not checked
    /// (nodes are addressed by IP); the chain is. A process without a certificate of the cluster's CA can neither
    /// join nor call an actor.
    case mutualTLS(certificate: String, privateKey: String, trustRoots: String)
    /// No encryption and no authentication: local development only, and only when asked for explicitly.
    case plaintext

    /// Checks the files exist and are readable.
    public func validate() throws(GPUBridgeError) {
        guard case let .mutualTLS(certificate, key, roots) = self else { return }
        for (name, path) in [("tls certificate", certificate), ("tls private key", key), ("tls trust roots", roots)] {
            guard FileManager.default.isReadableFile(atPath: path) else {
                throw .invalidArgument(name: name, value: path, limit: "a readable PEM file")
            }
        }
    }
}

/// Raw bytes in and out: the cluster's frames are its own (`ClusterRequest`, `ClusterReply`), so gRPC carries
/// opaque messages; no protobuf.
struct BytesDeserializer: MessageDeserializer {
    func deserialize<Bytes: GRPCContiguousBytes>(_ serializedMessageBytes: Bytes) throws -> [UInt8] {
        serializedMessageBytes.withUnsafeBytes { [UInt8]($0) }
    }
}

/// One outgoing message made of pieces of byte arrays (a header and a slice of the arguments), copied once into the
/// transport's buffer.
struct Pieces: Sendable {
    var parts: [(bytes: [UInt8], range: Range<Int>)]

    init(_ parts: [(bytes: [UInt8], range: Range<Int>)]) { self.parts = parts }
    init(_ whole: [UInt8]) { parts = [(whole, 0..<whole.count)] }

    var count: Int { parts.reduce(0) { $0 + $1.range.count } }
}

struct PiecesSerializer: MessageSerializer {
    func serialize<Bytes: GRPCContiguousBytes>(_ message: Pieces) throws -> Bytes {
        var out = Bytes(repeating: 0, count: message.count)
        out.withUnsafeMutableBytes { dst in
            var at = 0
            for part in message.parts where !part.range.isEmpty {
                part.bytes.withUnsafeBytes { src in
                    dst.baseAddress!.advanced(by: at).copyMemory(
                        from: src.baseAddress!.advanced(by: part.range.lowerBound),
                        byteCount: part.range.count)
                }
                at += part.range.count
            }
        }
        return out
    }
}

/// The node service's methods (`gpubridge.cluster.v1.Node`).
enum NodeMethods {
    static let service = "gpubridge.cluster.v1.Node"
    /// Unary: one request message (header + arguments), one reply message (header + body).
    static let call = MethodDescriptor(fullyQualifiedService: service, method: "Call")
    /// Bidirectional streaming, for payloads over the message limit: the request header, then argument chunks; the
    /// reply header, then body chunks.
    static let callStream = MethodDescriptor(fullyQualifiedService: service, method: "CallStream")
    /// Unary: empty request; the reply is the answering node's id as text.
    static let ping = MethodDescriptor(fullyQualifiedService: service, method: "Ping")
}

/// Sizes of the wire: gRPC message size, streaming chunk size and the largest call or reply a node accepts.
///
/// A value type: each node and client copies it from its options at start; any thread may read it. Checking a frame's
/// claimed size against it costs a comparison, made before anything of that size is allocated.
public struct WireLimits: Sendable, Hashable {
    /// The largest gRPC message either side accepts (gRPC's usual 4 MiB).
    public var maxMessageBytes = 4 * 1024 * 1024
    /// Calls whose request is larger than this go through the streaming method, cut in chunks of this size; replies
    /// larger than it are streamed back the same way.
    public var chunkBytes = 2 * 1024 * 1024
    /// The largest call (its arguments) or reply (its body) either side accepts, streamed or not. A frame whose header
    /// claims more is refused with `ClusterError.messageTooLarge` before anything is allocated for it, and the node
    /// keeps serving. Receive buffers grow with the bytes that actually arrive, never with what a header claims.
    public var maxCallBytes = 1 << 30

    public init() {}

    /// The range `maxCallBytes` must lie in.
    public static let maxCallBytesRange = 1...(1 << 40)

    public func validate() throws(GPUBridgeError) {
        guard Self.maxCallBytesRange.contains(maxCallBytes) else {
            let range = Self.maxCallBytesRange
            throw .invalidArgument(
                name: "maxCallBytes", value: "\(maxCallBytes)",
                limit: "\(range.lowerBound)...\(range.upperBound) (1 TiB)")
        }
        guard chunkBytes >= 4096, chunkBytes <= maxMessageBytes - 65_536 else {
            throw .invalidArgument(
                name: "chunkBytes", value: "\(chunkBytes)",
                limit: "4096...maxMessageBytes - 65536 (\(maxMessageBytes - 65_536))")
        }
    }
}

/// The gRPC service a node serves: calls (unary and streamed) and probes, handed to a `NodeCallHandler`.
struct NodeService: RegistrableRPCService {
    let handler: any NodeCallHandler
    let limits: WireLimits

    func registerMethods<Transport: ServerTransport>(with router: inout RPCRouter<Transport>) {
        let handler = self.handler, limits = self.limits
        router.registerHandler(
            forMethod: NodeMethods.call, deserializer: BytesDeserializer(), serializer: PiecesSerializer()
        ) {
            request, _ in
            var first: [UInt8]?
            for try await message in request.messages where first == nil { first = message }
            guard let first else { throw RPCError(code: .invalidArgument, message: "empty call") }
            let parsed = try Self.refusing {
                try first.withUnsafeBytes { try ClusterRequest.parse($0, maxArgumentBytes: limits.maxCallBytes) }
            }
            let reply = await Self.serve(parsed, context: request.metadata.traceContext, handler: handler)
            let (header, body) = try reply.header()
            if body.count <= limits.chunkBytes {
                return StreamingServerResponse(
                    single: ServerResponse(message: Pieces([(header, 0..<header.count), (body, 0..<body.count)])))
            }
            // Too large for one message: the header, then the body in chunks (the client reads the same way).
            return StreamingServerResponse { writer in
                try await Self.write(header: header, body: body, chunk: limits.chunkBytes, to: writer)
                return [:]
            }
        }
        router.registerHandler(
            forMethod: NodeMethods.callStream, deserializer: BytesDeserializer(), serializer: PiecesSerializer()
        ) {
            request, _ in
            var iterator = request.messages.makeAsyncIterator()
            guard let headerMessage = try await iterator.next() else {
                throw RPCError(code: .invalidArgument, message: "empty call stream")
            }
            var (parsed, argumentBytes) = try Self.refusing {
                try headerMessage.withUnsafeBytes { raw in
                    var reader = WireReader(raw)
                    let parsed = try ClusterRequest.parseHeader(&reader, maxArgumentBytes: limits.maxCallBytes)
                    guard reader.remaining == 0 else {
                        throw ClusterError.malformedMessage(
                            what: "call stream",
                            detail: "\(reader.remaining) bytes after the header")
                    }
                    return parsed
                }
            }
            parsed.call.arguments = try await Self.refusing {
                try await Self.assemble(
                    what: "call stream", expected: argumentBytes, initial: [],
                    reserveAtMost: limits.maxMessageBytes
                ) { try await iterator.next() }
            }
            let reply = await Self.serve(parsed, context: request.metadata.traceContext, handler: handler)
            let (header, body) = try reply.header()
            return StreamingServerResponse { writer in
                try await Self.write(header: header, body: body, chunk: limits.chunkBytes, to: writer)
                return [:]
            }
        }
        router.registerHandler(
            forMethod: NodeMethods.ping, deserializer: BytesDeserializer(), serializer: PiecesSerializer()
        ) {
            request, _ in
            var prober = ""
            for try await message in request.messages { prober = String(decoding: message, as: UTF8.self) }
            guard let id = handler.ping(from: prober) else {
                throw RPCError(code: .unavailable, message: "the node is not running")
            }
            return StreamingServerResponse(single: ServerResponse(message: Pieces(Array(id.description.utf8))))
        }
    }

    /// Runs `request` through `handler` inside a server span that continues the caller's trace (`context`, read from
    /// the call's metadata).
    static func serve(_ request: ClusterRequest, context: ServiceContext, handler: any NodeCallHandler) async
        -> ClusterReply
    {
        await withSpan(SpanNames.serveCall, context: context, ofKind: .server) { span in
            if span.isRecording {
                span.updateAttributes { a in
                    a["gpubridge.actor"] = "\(request.address.id)"
                    a["gpubridge.actor.method"] = CallTargetName.readable(request.call.target)
                    a["gpubridge.node"] = request.address.node.description
                    a["gpubridge.caller"] = request.caller
                    a["gpubridge.call.argument_bytes"] = request.call.arguments.count
                    a["rpc.system"] = "grpc"
                }
            }
            return await handler.handle(request)
        }
    }

    /// The `expected` bytes of a call's arguments or a reply's body: `initial` (what came with the header), then the
    /// chunks `next` returns. The buffer grows with the bytes that arrive, never beyond `reserveAtMost` ahead of them,
    /// so a header's claim (already checked against `maxCallBytes`) allocates nothing by itself. More or fewer bytes
    /// than expected are refused with `ClusterError.malformedMessage`.
    static func assemble(
        what: String, expected: Int, initial: ArraySlice<UInt8>, reserveAtMost: Int,
        next: () async throws -> [UInt8]?
    ) async throws -> [UInt8] {
        guard expected >= 0, initial.count <= expected else {
            throw ClusterError.malformedMessage(
                what: what,
                detail: "more than the \(max(0, expected)) bytes its header says")
        }
        var bytes = [UInt8]()
        bytes.reserveCapacity(min(expected, max(0, reserveAtMost)))
        bytes.append(contentsOf: initial)
        while bytes.count < expected, let chunk = try await next() {
            guard chunk.count <= expected - bytes.count else {
                throw ClusterError.malformedMessage(
                    what: what, detail: "more than the \(expected) bytes its header says")
            }
            bytes.append(contentsOf: chunk)
        }
        guard bytes.count == expected else {
            throw ClusterError.malformedMessage(what: what, detail: "\(bytes.count) bytes, header says \(expected)")
        }
        return bytes
    }

    /// Runs `parse`; a frame it refuses becomes an `invalidArgument` status carrying the reason (the caller sees which
    /// limit or field), and the server goes on serving other calls.
    static func refusing<R>(_ parse: () throws -> R) throws -> R {
        do { return try parse() } catch let error as ClusterError {
            throw RPCError(code: .invalidArgument, message: error.description)
        } catch let error as GPUBridgeError {
            throw RPCError(code: .invalidArgument, message: "malformed call: \(error)")
        }
    }

    static func refusing<R>(_ parse: () async throws -> R) async throws -> R {
        do { return try await parse() } catch let error as ClusterError {
            throw RPCError(code: .invalidArgument, message: error.description)
        } catch let error as GPUBridgeError {
            throw RPCError(code: .invalidArgument, message: "malformed call: \(error)")
        }
    }

    static func write(header: [UInt8], body: [UInt8], chunk: Int, to writer: RPCWriter<Pieces>) async throws {
        try await writer.write(Pieces(header))
        var at = 0
        while at < body.count {
            let end = min(at + chunk, body.count)
            try await writer.write(Pieces([(body, at..<end)]))
            at = end
        }
    }
}

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
        let maxBody = limits.maxCallBytes, maxMessage = limits.maxMessageBytes
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
                    what: "reply", expected: bodyBytes, initial: first.dropFirst(ClusterReply.headerSize),
                    reserveAtMost: maxMessage
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
