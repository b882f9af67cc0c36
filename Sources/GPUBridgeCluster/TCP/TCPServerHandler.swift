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

/// The node end of a `TCPNodeTransport` connection: answers pings at once and runs each call in a task of its own
/// (so calls on one connection run concurrently, as gRPC streams do), writing the reply frame when it is ready. A
/// frame it cannot read is answered `refused` with the reason, and the connection goes on; a frame longer than the
/// limit is refused without being buffered. Lives on the connection's event loop; the tasks write through the channel,
/// which any thread may.
final class TCPServerHandler: ChannelInboundHandler {
    typealias InboundIn = TCPInbound
    typealias OutboundOut = ByteBuffer

    let handler: any NodeCallHandler
    let limits: WireLimits
    let logger: Logger

    init(handler: any NodeCallHandler, limits: WireLimits, logger: Logger) {
        self.handler = handler
        self.limits = limits
        self.logger = logger
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let channel = context.channel
        switch unwrapInboundIn(data) {
        case let .oversized(kind, id, bytes):
            let reason = ClusterError.messageTooLarge(
                what: kind == TCPFrameKind.call.rawValue ? "call" : "frame of kind \(kind)",
                claimedBytes: UInt64(bytes), limitBytes: limits.maxCallBytes
            ).description
            context.writeAndFlush(
                wrapOutboundOut(TCPFrame.make(.refused, id: id, text: reason, allocator: channel.allocator)),
                promise: nil)
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
                let parsed: (ClusterRequest, ServiceContext)
                do { parsed = try Self.parse(payload, limits: limits) } catch {
                    let reason = (error as? ClusterError)?.description ?? "malformed call: \(error)"
                    context.writeAndFlush(
                        wrapOutboundOut(TCPFrame.make(.refused, id: id, text: reason, allocator: channel.allocator)),
                        promise: nil)
                    return
                }
                let (request, traceContext) = parsed
                let handler = self.handler, logger = self.logger
                Task {
                    let reply = await NodeService.serve(
                        request, context: traceContext, handler: handler, system: TCPNodeTransport.rpcSystem)
                    let frame: ByteBuffer
                    do {
                        let (header, body) = try reply.header()
                        frame = TCPFrame.make(
                            .reply, id: id, parts: [header[...], body[...]], allocator: channel.allocator)
                    } catch {
                        logger.error("a reply could not be written", metadata: ["error": "\(error)"])
                        frame = TCPFrame.make(
                            .refused, id: id, text: "the reply could not be written: \(error)",
                            allocator: channel.allocator)
                    }
                    channel.writeAndFlush(frame, promise: nil)
                }
            default:
                context.writeAndFlush(
                    wrapOutboundOut(
                        TCPFrame.make(
                            .refused, id: id, text: "a frame of unknown kind \(kind)", allocator: channel.allocator)),
                    promise: nil)
            }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        logger.debug("a cluster connection failed", metadata: ["error": "\(error)"])
        context.close(promise: nil)
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
