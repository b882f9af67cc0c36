import GPUBridge
import GPUBridgeActors
import Instrumentation
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import ServiceContextModule
import Synchronization
import Tracing

/// Nodes connected by length-prefixed binary frames over TCP (SwiftNIO, `TCPFrame`), with mutual TLS (NIOSSL)
/// unless plaintext is configured: the same calls, replies, limits and errors as `GRPCNodeTransport`, without HTTP/2
/// and gRPC's per-call machinery underneath. One connection per peer, made on first use and kept; calls and pings are
/// multiplexed on it by id, and a node runs the calls of one connection concurrently. See docs/CLUSTER.md ("The TCP
/// transport") for the frames and docs/PERFORMANCE.md for what it saves.
///
/// Owned by one `ClusterNode` (or client); any thread may call it. Connections run on SwiftNIO's shared event loops.
/// A small call costs one frame each way (the arguments copied once into the outgoing frame, the reply once out of
/// the incoming one) and a timer on the event loop for its deadline; a value longer than `WireLimits.chunkBytes`
/// crosses as a head and chunks, made one at a time and assembled into one array on the other side.
///
/// What it does not do that gRPC does: flow control beyond TCP's (a slow reader slows its connection's other
/// exchanges) and per-stream priorities.
public final class TCPNodeTransport: NodeTransport {
    public let security: ClusterSecurity
    public let limits: WireLimits
    let logger: Logger
    /// The `rpc.system` attribute of this transport's spans.
    static let rpcSystem = "gpubridge-tcp"
    /// How long establishing a connection to a peer may take.
    public static let connectTimeout: Duration = .seconds(2)

    private struct State {
        var peers: [String: Task<TCPConnection, any Error>] = [:]
        var server: (any Channel)?
        var children: [ObjectIdentifier: any Channel] = [:]
        var closed = false
    }

    /// Reads of up to 1 MiB (SwiftNIO's default stops at 64 KiB), so a large frame arrives in fewer, larger pieces.
    static let receiveSizes = AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 2048, maximum: 1 << 20)

    private let state = Mutex(State())
    private let group: MultiThreadedEventLoopGroup
    private let serverTLS: NIOSSLContext?
    private let clientTLS: NIOSSLContext?

    public init(
        security: ClusterSecurity, limits: WireLimits = WireLimits(),
        logger: Logger = Logger(label: "gpubridge.cluster.tcp")
    ) throws(GPUBridgeError) {
        try security.validate()
        try limits.validate()
        self.security = security
        self.limits = limits
        self.logger = logger
        self.group = .singleton
        switch security {
        case .plaintext:
            serverTLS = nil
            clientTLS = nil
        case let .mutualTLS(certificate, key, roots):
            let chain: [NIOSSLCertificateSource]
            let privateKey: NIOSSLPrivateKey
            do {
                chain = try NIOSSLCertificate.fromPEMFile(certificate).map { .certificate($0) }
            } catch {
                throw .invalidArgument(
                    name: "tls certificate", value: certificate, limit: "a PEM certificate: \(error)")
            }
            do { privateKey = try NIOSSLPrivateKey(file: key, format: .pem) } catch {
                throw .invalidArgument(name: "tls private key", value: key, limit: "a PEM private key: \(error)")
            }
            var server = TLSConfiguration.makeServerConfiguration(
                certificateChain: chain, privateKey: .privateKey(privateKey))
            server.trustRoots = .file(roots)
            server.certificateVerification = .noHostnameVerification
            var client = TLSConfiguration.makeClientConfiguration()
            client.certificateChain = chain
            client.privateKey = .privateKey(privateKey)
            client.trustRoots = .file(roots)
            client.certificateVerification = .noHostnameVerification
            do {
                serverTLS = try NIOSSLContext(configuration: server)
                clientTLS = try NIOSSLContext(configuration: client)
            } catch {
                throw .invalidArgument(
                    name: "tls trust roots", value: roots, limit: "PEM certificates that NIOSSL accepts: \(error)")
            }
        }
    }

    /// The largest frame payload either side buffers: a message (arguments or a body up to a chunk, or a chunk) and
    /// room for a call's header. Larger values cross as a head and chunks.
    var maxPayloadBytes: Int { min(TCPFrame.maxPayloadBytes, limits.maxMessageBytes + TCPFrame.callOverheadBytes) }

    // MARK: Calls

    public func call(_ request: ClusterRequest, on node: NodeID, timeout: Duration) async throws -> ClusterReply {
        let actor = "\(request.address.id)"
        guard request.call.arguments.count <= limits.maxCallBytes else {
            throw ClusterError.messageTooLarge(
                what: "call to \(actor)", claimedBytes: UInt64(request.call.arguments.count),
                limitBytes: limits.maxCallBytes)
        }
        let header = try request.header()
        return try await withSpan(SpanNames.remoteCall, ofKind: .client) { span in
            if span.isRecording {
                span.updateAttributes { a in
                    a["gpubridge.actor"] = actor
                    a["gpubridge.node"] = node.description
                    a["gpubridge.call.argument_bytes"] = request.call.arguments.count
                    a["rpc.system"] = Self.rpcSystem
                }
            }
            do {
                return try await call(
                    header: header, arguments: request.call.arguments, on: node, actor: actor, timeout: timeout)
            } catch {
                span.setStatus(SpanStatus(code: .error))
                throw error
            }
        }
    }

    /// Sends a call's header (as `ClusterRequest.header` writes it) and its arguments: in one frame, or as a head and
    /// chunks when the arguments are longer than `WireLimits.chunkBytes`.
    func call(
        header: [UInt8], arguments: [UInt8], on node: NodeID, actor: String, timeout: Duration
    ) async throws -> ClusterReply {
        // The caller's trace context (this call's client span) goes with the call.
        var entries: [(String, String)] = []
        if let context = ServiceContext.current {
            InstrumentationSystem.instrument.inject(context, into: &entries, using: TraceEntriesInjector())
        }
        let trace = try TCPFrame.traceContext(entries)
        let chunk = limits.chunkBytes
        let answer = try await exchange(on: node, actor: actor, timeout: timeout) { id, allocator in
            guard arguments.count > chunk else {
                return TCPOutgoing(
                    head: TCPFrame.make(
                        .call, id: id, parts: [trace[...], header[...], arguments[...]], allocator: allocator))
            }
            // Arguments longer than a chunk: the header, then the arguments in chunks.
            return TCPOutgoing(
                head: TCPFrame.make(.callHead, id: id, parts: [trace[...], header[...]], allocator: allocator),
                chunks: (arguments.count + chunk - 1) / chunk
            ) { index, allocator in
                let start = index * chunk
                return TCPFrame.make(
                    .chunk, id: id, parts: [arguments[start..<min(start + chunk, arguments.count)]],
                    allocator: allocator)
            }
        }
        if case let .assembled(_, reply) = answer { return reply }
        guard case let .frame(kind, _, payload) = answer else {
            throw ClusterError.malformedMessage(what: "reply", detail: "no frame")
        }
        switch TCPFrameKind(rawValue: kind) {
        case .reply:
            return try payload.withUnsafeReadableBytes { raw in
                try ClusterReply.parse(raw, maxBodyBytes: limits.maxCallBytes)
            }
        case .refused:
            // The node read the frame and refused it (too large, malformed): it was not run.
            throw ClusterError.malformedMessage(
                what: "call to \(actor)", detail: "node \(node) refused it: \(String(buffer: payload))")
        case .unavailable:
            throw ClusterError.nodeUnreachable(node: "\(node)", actor: actor, reason: String(buffer: payload))
        default:
            throw ClusterError.malformedMessage(what: "reply", detail: "a frame of kind \(kind) answering a call")
        }
    }

    public func ping(_ node: NodeID, from prober: String, timeout: Duration) async throws -> NodeID {
        let name = Array(prober.utf8)
        let answer = try await exchange(on: node, actor: "ping", timeout: timeout) { id, allocator in
            TCPOutgoing(head: TCPFrame.make(.ping, id: id, parts: [name[...]], allocator: allocator))
        }
        guard case let .frame(kind, _, payload) = answer else {
            throw ClusterError.malformedMessage(what: "pong", detail: "no frame")
        }
        switch TCPFrameKind(rawValue: kind) {
        case .pong: return try NodeID(parsing: String(buffer: payload))
        case .unavailable, .refused:
            throw ClusterError.nodeUnreachable(node: "\(node)", actor: "ping", reason: String(buffer: payload))
        default:
            throw ClusterError.malformedMessage(what: "pong", detail: "a frame of kind \(kind) answering a ping")
        }
    }

    /// One exchange with `node` within `timeout` (connecting first when there is no connection), its failures as
    /// `ClusterError`s.
    private func exchange(
        on node: NodeID, actor: String, timeout: Duration,
        _ make: @escaping @Sendable (UInt64, ByteBufferAllocator) -> TCPOutgoing
    ) async throws -> TCPInbound {
        let clock = ContinuousClock()
        let started = clock.now
        do {
            let connection = try await self.connection(to: node, within: timeout)
            return try await connection.exchange(timeout: timeout - (clock.now - started), make)
        } catch let failure as TCPExchangeFailure {
            switch failure {
            case .timedOut:
                throw ClusterError.deadlineExceeded(actor: actor, node: "\(node)", timeout: "\(timeout)")
            case let .closed(reason):
                throw ClusterError.nodeUnreachable(node: "\(node)", actor: actor, reason: reason)
            case let .oversized(bytes):
                throw ClusterError.messageTooLarge(
                    what: "reply from \(node)", claimedBytes: UInt64(bytes), limitBytes: limits.maxCallBytes)
            case let .malformed(detail):
                throw ClusterError.malformedMessage(what: "reply from \(node)", detail: detail)
            }
        } catch let error as ClusterError {
            throw error
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            throw ClusterError.nodeUnreachable(node: "\(node)", actor: actor, reason: "\(error)")
        }
    }

    /// The connection to `node`: the one kept, or a new one (callers racing to the same node share one attempt). A kept
    /// connection found closed is replaced once; a new one that closes at once is returned as it is, and the exchange
    /// on it reports why.
    private func connection(to node: NodeID, within timeout: Duration) async throws -> TCPConnection {
        let key = Self.key(node)
        for replacing in [false, true] {
            let attempt = try state.withLock { s -> Task<TCPConnection, any Error> in
                guard !s.closed else { throw TCPExchangeFailure.closed("the transport is shut down") }
                if let existing = s.peers[key] { return existing }
                let attempt = Task { try await self.connect(to: node) }
                s.peers[key] = attempt
                return attempt
            }
            let connection: TCPConnection
            do { connection = try await Self.value(of: attempt, within: timeout) } catch TCPExchangeFailure.timedOut {
                throw TCPExchangeFailure.timedOut  // the attempt goes on for the callers after this one
            } catch is CancellationError {
                throw CancellationError()  // likewise
            } catch {
                state.withLock { s in
                    if s.peers[key] == attempt { s.peers[key] = nil }
                }
                throw error
            }
            guard connection.isClosed, !replacing else { return connection }
            // Closed since it was made: drop it (unless another caller already replaced it) and connect again.
            state.withLock { s in
                if s.peers[key] == attempt { s.peers[key] = nil }
            }
        }
        throw TCPExchangeFailure.closed("the connection closed")
    }

    /// The connection `attempt` makes, or `TCPExchangeFailure.timedOut` once `timeout` has passed (or
    /// `CancellationError` when the caller is cancelled first), without waiting for the attempt to end: it is shared
    /// with other callers and ends by itself within `connectTimeout`.
    private static func value(
        of attempt: Task<TCPConnection, any Error>, within timeout: Duration
    ) async throws -> TCPConnection {
        let waiter = Mutex<CheckedContinuation<TCPConnection, any Error>?>(nil)
        let finish: @Sendable (Result<TCPConnection, any Error>) -> Void = { result in
            waiter.withLock { slot in
                defer { slot = nil }
                return slot
            }?.resume(with: result)
        }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                waiter.withLock { $0 = continuation }
                let nanoseconds =
                    timeout.components.seconds * 1_000_000_000
                    + timeout.components.attoseconds / 1_000_000_000
                let timer = MultiThreadedEventLoopGroup.singleton.any().scheduleTask(
                    in: .nanoseconds(max(1, nanoseconds))
                ) { finish(.failure(TCPExchangeFailure.timedOut)) }
                Task {
                    let result = await attempt.result
                    timer.cancel()
                    finish(result)
                }
            }
        } onCancel: {
            finish(.failure(CancellationError()))
        }
    }

    private func connect(to node: NodeID) async throws -> TCPConnection {
        let tls = clientTLS, maxPayload = maxPayloadBytes, limits = self.limits
        let timeout = Self.connectTimeout.components
        return try await ClientBootstrap(group: group)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .channelOption(.recvAllocator, value: Self.receiveSizes)
            .connectTimeout(.nanoseconds(timeout.seconds * 1_000_000_000 + timeout.attoseconds / 1_000_000_000))
            .connect(host: node.host, port: node.port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    let pipeline = channel.pipeline.syncOperations
                    if let tls { try pipeline.addHandler(try NIOSSLClientHandler(context: tls, serverHostname: nil)) }
                    let connection = TCPConnection(channel: channel)
                    try pipeline.addHandler(ByteToMessageHandler(TCPFrameDecoder(maxPayloadBytes: maxPayload)))
                    try pipeline.addHandler(TCPClientHandler(connection: connection, limits: limits))
                    return connection
                }
            }
    }

    // MARK: Serving

    public func serve(_ handler: any NodeCallHandler, at node: NodeID) async throws -> Int {
        let tls = serverTLS, limits = self.limits, logger = self.logger, maxPayload = maxPayloadBytes
        let server = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelOption(.recvAllocator, value: Self.receiveSizes)
            .childChannelInitializer { [weak self] channel in
                self?.adopt(channel)
                return channel.eventLoop.makeCompletedFuture {
                    let pipeline = channel.pipeline.syncOperations
                    if let tls { try pipeline.addHandler(NIOSSLServerHandler(context: tls)) }
                    try pipeline.addHandler(ByteToMessageHandler(TCPFrameDecoder(maxPayloadBytes: maxPayload)))
                    try pipeline.addHandler(
                        TCPServerHandler(handler: handler, limits: limits, logger: logger, maxFrameBytes: maxPayload))
                }
            }
            .bind(host: node.host, port: node.port).get()
        let stillOpen = state.withLock { s -> Bool in
            guard !s.closed else { return false }
            s.server = server
            return true
        }
        guard stillOpen else {
            try? await server.close()
            throw ClusterError.nodeNotRunning(node: "\(node)", state: "the transport is shut down")
        }
        guard let port = server.localAddress?.port else {
            throw GPUBridgeError.backendFailure(
                backend: "tcp", call: "listen", code: -1, message: "the server has no local port")
        }
        return port
    }

    /// Keeps an accepted connection until it closes, so `shutdown` can close it.
    private func adopt(_ channel: any Channel) {
        let id = ObjectIdentifier(channel)
        let accepted = state.withLock { s -> Bool in
            guard !s.closed else { return false }
            s.children[id] = channel
            return true
        }
        guard accepted else {
            channel.close(promise: nil)
            return
        }
        channel.closeFuture.whenComplete { [weak self] _ in
            _ = self?.state.withLock { $0.children.removeValue(forKey: id) }
        }
    }

    public func shutdown() async {
        let (peers, server, children) = state.withLock {
            s -> ([Task<TCPConnection, any Error>], (any Channel)?, [any Channel]) in
            s.closed = true
            defer {
                s.peers = [:]
                s.server = nil
                s.children = [:]
            }
            return (Array(s.peers.values), s.server, Array(s.children.values))
        }
        try? await server?.close()
        for child in children { try? await child.close() }
        for peer in peers {
            if let connection = try? await peer.value {
                try? await connection.channel.close()
            }
        }
    }

    public var enforcesDeadlines: Bool { true }

    public func forget(_ node: NodeID) {
        guard let attempt = state.withLock({ $0.peers.removeValue(forKey: Self.key(node)) }) else { return }
        Task {
            if let connection = try? await attempt.value { connection.channel.close(promise: nil) }
        }
    }

    static func key(_ node: NodeID) -> String { "\(node.host):\(node.port)@\(node.generation)" }

    /// The nodes this transport holds a connection (or an attempt) to, for tests.
    var connectedPeers: Set<String> { state.withLock { Set($0.peers.keys) } }
}
