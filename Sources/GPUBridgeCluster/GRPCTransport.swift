import Foundation
import GPUBridge
import GPUBridgeActors
import GRPCCore
import GRPCNIOTransportHTTP2
import Logging
import Synchronization

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
                    dst.baseAddress!.advanced(by: at).copyMemory(from: src.baseAddress!.advanced(by: part.range.lowerBound),
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

/// Sizes of the wire.
public struct WireLimits: Sendable, Hashable {
    /// The largest gRPC message either side accepts (gRPC's usual 4 MiB).
    public var maxMessageBytes = 4 * 1024 * 1024
    /// Calls whose request is larger than this go through the streaming method, cut in chunks of this size; replies
    /// larger than it are streamed back the same way.
    public var chunkBytes = 2 * 1024 * 1024

    public init() {}

    public func validate() throws(GPUBridgeError) {
        guard chunkBytes >= 4096, chunkBytes <= maxMessageBytes - 65_536 else {
            throw .invalidArgument(name: "chunkBytes", value: "\(chunkBytes)", limit: "4096...maxMessageBytes - 65536 (\(maxMessageBytes - 65_536))")
        }
    }
}

/// The gRPC service a node serves: calls (unary and streamed) and probes, handed to a `NodeCallHandler`.
struct NodeService: RegistrableRPCService {
    let handler: any NodeCallHandler
    let limits: WireLimits

    func registerMethods<Transport: ServerTransport>(with router: inout RPCRouter<Transport>) {
        let handler = self.handler, limits = self.limits
        router.registerHandler(forMethod: NodeMethods.call, deserializer: BytesDeserializer(), serializer: PiecesSerializer()) {
            request, _ in
            var first: [UInt8]?
            for try await message in request.messages where first == nil { first = message }
            guard let first else { throw RPCError(code: .invalidArgument, message: "empty call") }
            let parsed = try first.withUnsafeBytes { try ClusterRequest.parse($0) }
            let reply = await handler.handle(parsed)
            let (header, body) = reply.header()
            if body.count <= limits.chunkBytes {
                return StreamingServerResponse(single: ServerResponse(message: Pieces([(header, 0..<header.count), (body, 0..<body.count)])))
            }
            // Too large for one message: the header, then the body in chunks (the client reads the same way).
            return StreamingServerResponse { writer in
                try await Self.write(header: header, body: body, chunk: limits.chunkBytes, to: writer)
                return [:]
            }
        }
        router.registerHandler(forMethod: NodeMethods.callStream, deserializer: BytesDeserializer(), serializer: PiecesSerializer()) {
            request, _ in
            var iterator = request.messages.makeAsyncIterator()
            guard let headerMessage = try await iterator.next() else { throw RPCError(code: .invalidArgument, message: "empty call stream") }
            var (parsed, argumentBytes) = try headerMessage.withUnsafeBytes { raw in
                var reader = WireReader(raw)
                return try ClusterRequest.parseHeader(&reader)
            }
            var arguments: [UInt8] = []
            arguments.reserveCapacity(argumentBytes)
            while arguments.count < argumentBytes, let chunk = try await iterator.next() {
                arguments.append(contentsOf: chunk)
            }
            guard arguments.count == argumentBytes else {
                throw RPCError(code: .invalidArgument, message: "call stream carried \(arguments.count) argument bytes, header says \(argumentBytes)")
            }
            parsed.call.arguments = arguments
            let reply = await handler.handle(parsed)
            let (header, body) = reply.header()
            return StreamingServerResponse { writer in
                try await Self.write(header: header, body: body, chunk: limits.chunkBytes, to: writer)
                return [:]
            }
        }
        router.registerHandler(forMethod: NodeMethods.ping, deserializer: BytesDeserializer(), serializer: PiecesSerializer()) {
            request, _ in
            var prober = ""
            for try await message in request.messages { prober = String(decoding: message, as: UTF8.self) }
            guard let id = handler.ping(from: prober) else { throw RPCError(code: .unavailable, message: "the node is not running") }
            return StreamingServerResponse(single: ServerResponse(message: Pieces(Array(id.description.utf8))))
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

    public init(security: ClusterSecurity, limits: WireLimits = WireLimits(), logger: Logger = Logger(label: "gpubridge.cluster.grpc")) throws(GPUBridgeError) {
        try security.validate()
        try limits.validate()
        self.security = security
        self.limits = limits
        self.logger = logger
    }

    private func client(for node: NodeID) throws -> GRPCClient<HTTP2ClientTransport.Posix> {
        let endpoint = "\(node.host):\(node.port)"
        if let peer = state.withLock({ $0.peers[endpoint] }) { return peer.client }
        let transportSecurity: HTTP2ClientTransport.Posix.TransportSecurity
        switch security {
        case .plaintext:
            transportSecurity = .plaintext
        case let .mutualTLS(certificate, key, roots):
            transportSecurity = .mTLS(certificateChain: [.file(path: certificate, format: .pem)],
                                      privateKey: .file(path: key, format: .pem)) { config in
                config.trustRoots = .certificates([.file(path: roots, format: .pem)])
                config.serverCertificateVerification = .noHostnameVerification
            }
        }
        var config = HTTP2ClientTransport.Posix.Config.defaults
        config.http2.maxFrameSize = 1 << 20
        config.http2.targetWindowSize = 16 << 20
        config.backoff = .init(initial: .milliseconds(50), max: .milliseconds(500), multiplier: 1.6, jitter: 0.2)
        let transport = try HTTP2ClientTransport.Posix(target: .ipv4(address: node.host, port: node.port),
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
        let client: GRPCClient<HTTP2ClientTransport.Posix>
        do { client = try self.client(for: node) } catch {
            throw ClusterError.nodeUnreachable(node: "\(node)", actor: "\(request.address.id)", reason: "\(error)")
        }
        let header = request.header(), arguments = request.call.arguments, chunk = limits.chunkBytes
        let streamed = arguments.count > chunk
        let requestStream: StreamingClientRequest<Pieces>
        if streamed {
            requestStream = StreamingClientRequest { writer in
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
            requestStream = StreamingClientRequest { writer in try await writer.write(message) }
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
                let (kind, bodyBytes) = try first.withUnsafeBytes { try ClusterReply.parseHeader($0) }
                var body: [UInt8]
                if first.count > ClusterReply.headerSize {
                    body = Array(first[ClusterReply.headerSize...])
                } else {
                    body = []
                    body.reserveCapacity(bodyBytes)
                }
                while body.count < bodyBytes, let chunk = try await iterator.next() { body.append(contentsOf: chunk) }
                guard body.count == bodyBytes else {
                    throw ClusterError.malformedMessage(what: "reply", detail: "\(body.count) body bytes, header says \(bodyBytes)")
                }
                return try ClusterReply.make(kind: kind, body: body)
            }
        } catch let error as RPCError {
            throw Self.map(error, node: node, actor: "\(request.address.id)", timeout: timeout)
        }
    }

    static func map(_ error: RPCError, node: NodeID, actor: String, timeout: Duration) -> ClusterError {
        switch error.code {
        case .deadlineExceeded:
            return .deadlineExceeded(actor: actor, node: "\(node)", timeout: "\(timeout)")
        default:
            return .nodeUnreachable(node: "\(node)", actor: actor, reason: "gRPC \(error.code): \(error.message)")
        }
    }

    public func ping(_ node: NodeID, from prober: String, timeout: Duration) async throws -> NodeID {
        let client = try self.client(for: node)
        do {
            let text = try await client.unary(request: ClientRequest(message: Pieces(Array(prober.utf8))), descriptor: NodeMethods.ping,
                                              serializer: PiecesSerializer(), deserializer: BytesDeserializer(),
                                              options: options(timeout: timeout)) { response in
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
            transportSecurity = .mTLS(certificateChain: [.file(path: certificate, format: .pem)],
                                      privateKey: .file(path: key, format: .pem)) { config in
                config.trustRoots = .certificates([.file(path: roots, format: .pem)])
                config.clientCertificateVerification = .noHostnameVerification
            }
        }
        var config = HTTP2ServerTransport.Posix.Config.defaults
        config.rpc.maxRequestPayloadSize = limits.maxMessageBytes
        config.http2.maxFrameSize = 1 << 20
        config.http2.targetWindowSize = 16 << 20
        let transport = HTTP2ServerTransport.Posix(address: .ipv4(host: node.host, port: node.port),
                                                   transportSecurity: transportSecurity, config: config)
        let server = GRPCServer(transport: transport, services: [NodeService(handler: handler, limits: limits)])
        let task = Task { [logger] in
            do { try await server.serve() } catch { logger.error("gRPC server stopped", metadata: ["error": "\(error)"]) }
        }
        state.withLock { s in
            s.server = server
            s.serverTask = task
        }
        guard let address = try await transport.listeningAddress.ipv4 else {
            throw GPUBridgeError.backendFailure(backend: "grpc", call: "listen", code: -1, message: "the server is not listening on IPv4")
        }
        return address.port
    }

    public func shutdown() async {
        let (peers, server, task) = state.withLock { s -> ([Peer], GRPCServer<HTTP2ServerTransport.Posix>?, Task<Void, Never>?) in
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
        let peer = state.withLock { $0.peers.removeValue(forKey: "\(node.host):\(node.port)") }
        peer?.client.beginGracefulShutdown()
    }
}
