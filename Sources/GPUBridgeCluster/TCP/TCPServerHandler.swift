import GPUBridge
import GPUBridgeActors
import Instrumentation
import Logging
import NIOCore
import ServiceContextModule
import Tracing

/// Reads a trace context from the entries a call frame carries. Stateless; any thread.
struct TraceEntriesExtractor: Extractor {
    func extract(key: String, from carrier: [(String, String)]) -> String? {
        carrier.first { $0.0 == key }?.1
    }
}

/// Writes a trace context into the entries a call frame carries. Stateless; any thread.
struct TraceEntriesInjector: Injector {
    func inject(_ value: String, forKey key: String, into carrier: inout [(String, String)]) {
        carrier.removeAll { $0.0 == key }
        carrier.append((key, value))
    }
}

/// The node end of a `TCPNodeTransport` connection: answers pings at once, assembles calls that come in chunks, and
/// runs each call in a task of its own (so calls on one connection run concurrently, as gRPC streams do), writing the
/// reply when it is ready. A frame it cannot read is answered `refused` with the reason, and the connection goes on; a
/// frame longer than the limit is refused without being buffered. Lives on the connection's event loop, which alone
/// touches its assemblies; the tasks write through the channel, which any thread may.
final class TCPServerHandler: ChannelInboundHandler {
    typealias InboundIn = TCPInbound
    typealias OutboundOut = ByteBuffer

    let handler: any NodeCallHandler
    let limits: WireLimits
    let logger: Logger
    let maxFrameBytes: Int

    init(handler: any NodeCallHandler, limits: WireLimits, logger: Logger, maxFrameBytes: Int) {
        self.handler = handler
        self.limits = limits
        self.logger = logger
        self.maxFrameBytes = maxFrameBytes
    }

    /// Calls whose arguments are still arriving in chunks, by id (at most `maxAssemblies` at once).
    private let assemblies = TCPAssemblies<(ClusterRequest, ServiceContext)>()
    static let maxAssemblies = 64

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let channel = context.channel
        func refuse(_ id: UInt64, _ reason: String) {
            context.writeAndFlush(
                wrapOutboundOut(TCPFrame.make(.refused, id: id, text: reason, allocator: channel.allocator)),
                promise: nil)
        }
        switch unwrapInboundIn(data) {
        case .assembled:
            return  // made by the client side only
        case let .piece(id, bytes):
            do {
                if let ((request, traceContext), arguments) = try assemblies.append(bytes, to: id) {
                    var request = request
                    request.call.arguments = arguments
                    serve(request, traceContext, id: id, channel: channel)
                }
            } catch {
                refuse(id, (error as? ClusterError)?.description ?? "malformed call: \(error)")
            }
        case let .oversized(kind, id, bytes):
            refuse(
                id,
                "a frame of kind \(kind) claiming \(bytes) bytes, more than the \(maxFrameBytes) a frame may carry "
                    + "(WireLimits.maxMessageBytes and 1 MiB for headers; larger values go in chunks)")
        case let .frame(kind, id, payload):
            switch TCPFrameKind(rawValue: kind) {
            case .ping:
                let prober = String(buffer: payload)
                let frame: ByteBuffer
                if let me = handler.ping(from: prober) {
                    frame = TCPFrame.make(.pong, id: id, text: me.description, allocator: channel.allocator)
                } else {
                    frame = TCPFrame.make(
                        .unavailable, id: id, text: "the node is not running", allocator: channel.allocator)
                }
                context.writeAndFlush(wrapOutboundOut(frame), promise: nil)
            case .call:
                do {
                    let (request, traceContext) = try Self.parse(payload, limits: limits)
                    serve(request, traceContext, id: id, channel: channel)
                } catch {
                    refuse(id, (error as? ClusterError)?.description ?? "malformed call: \(error)")
                }
            case .callHead:
                do {
                    guard assemblies.count < Self.maxAssemblies else {
                        throw ClusterError.malformedMessage(
                            what: "call", detail: "more than \(Self.maxAssemblies) calls arriving at once")
                    }
                    let (request, traceContext, expected) = try Self.parseHead(payload, limits: limits)
                    if expected == 0 {
                        serve(request, traceContext, id: id, channel: channel)
                    } else {
                        assemblies.begin(id, expected: expected, tag: (request, traceContext))
                    }
                } catch {
                    refuse(id, (error as? ClusterError)?.description ?? "malformed call: \(error)")
                }
            case .abandon:
                assemblies.drop(id)
            default:
                refuse(id, "a frame of unknown kind \(kind)")
            }
        }
    }

    /// Runs `request` in a task of its own and writes its reply: one frame, or a head and chunks when the body is
    /// longer than a chunk (each chunk made while the one before it is written).
    private func serve(_ request: ClusterRequest, _ traceContext: ServiceContext, id: UInt64, channel: any Channel) {
        let handler = self.handler, logger = self.logger, chunk = limits.chunkBytes
        Task {
            let reply = await NodeService.serve(
                request, context: traceContext, handler: handler, system: TCPNodeTransport.rpcSystem)
            let header: [UInt8], body: [UInt8]
            do { (header, body) = try reply.header() } catch {
                logger.error("a reply could not be written", metadata: ["error": "\(error)"])
                channel.writeAndFlush(
                    TCPFrame.make(
                        .refused, id: id, text: "the reply could not be written: \(error)",
                        allocator: channel.allocator), promise: nil)
                return
            }
            guard body.count > chunk else {
                channel.writeAndFlush(
                    TCPFrame.make(.reply, id: id, parts: [header[...], body[...]], allocator: channel.allocator),
                    promise: nil)
                return
            }
            channel.writeAndFlush(
                TCPFrame.make(.replyHead, id: id, parts: [header[...]], allocator: channel.allocator), promise: nil)
            let (_, failure) = await TCPFrame.writeInTurn(
                (body.count + chunk - 1) / chunk, to: channel, goOn: { true }
            ) { index in
                let at = index * chunk
                return TCPFrame.make(
                    .chunk, id: id, parts: [body[at..<min(at + chunk, body.count)]], allocator: channel.allocator)
            }
            if let failure {
                logger.debug("a reply's chunk could not be written", metadata: ["error": "\(failure)"])
            }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        logger.debug("a cluster connection failed", metadata: ["error": "\(error)"])
        context.close(promise: nil)
    }

    /// A call head's payload: its trace context, then the request's header (its arguments follow in chunks); the
    /// arguments' length is checked against `maxCallBytes` before anything is reserved for them.
    static func parseHead(_ payload: ByteBuffer, limits: WireLimits) throws -> (ClusterRequest, ServiceContext, Int) {
        try payload.withUnsafeReadableBytes { raw in
            var reader = WireReader(raw)
            let entries = try TCPFrame.readTraceContext(&reader)
            let (request, expected) = try ClusterRequest.parseHeader(&reader, maxArgumentBytes: limits.maxCallBytes)
            guard reader.remaining == 0 else {
                throw ClusterError.malformedMessage(
                    what: "call", detail: "\(reader.remaining) bytes after the header of a call in chunks")
            }
            var context = ServiceContext.topLevel
            InstrumentationSystem.instrument.extract(entries, into: &context, using: TraceEntriesExtractor())
            return (request, context, expected)
        }
    }

    /// A call frame's payload: its trace context, then the request.
    static func parse(_ payload: ByteBuffer, limits: WireLimits) throws -> (ClusterRequest, ServiceContext) {
        try payload.withUnsafeReadableBytes { raw in
            var reader = WireReader(raw)
            let entries = try TCPFrame.readTraceContext(&reader)
            let request = try ClusterRequest.parse(
                UnsafeRawBufferPointer(rebasing: raw[reader.offset...]), maxArgumentBytes: limits.maxCallBytes)
            var context = ServiceContext.topLevel
            InstrumentationSystem.instrument.extract(entries, into: &context, using: TraceEntriesExtractor())
            return (request, context)
        }
    }
}
