import GPUBridge
import GPUBridgeActors
import GRPCCore
import ServiceContextModule
import Tracing

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
                    what: "call stream", expected: argumentBytes, initial: []
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
    static func serve(
        _ request: ClusterRequest, context: ServiceContext, handler: any NodeCallHandler, system: String = "grpc"
    ) async -> ClusterReply {
        await withSpan(SpanNames.serveCall, context: context, ofKind: .server) { span in
            if span.isRecording {
                span.updateAttributes { a in
                    a["gpubridge.actor"] = "\(request.address.id)"
                    a["gpubridge.actor.method"] = CallTargetName.readable(request.call.target)
                    a["gpubridge.node"] = request.address.node.description
                    a["gpubridge.caller"] = request.caller
                    a["gpubridge.call.argument_bytes"] = request.call.arguments.count
                    a["rpc.system"] = system
                }
            }
            return await handler.handle(request)
        }
    }

    /// The `expected` bytes of a call's arguments or a reply's body: `initial` (what came with the header), then the
    /// chunks `next` returns. The chunks are kept as they come and copied once, when the last has come, into an array
    /// of the exact size (`FreshArrays`), so a header's claim (already checked against `maxCallBytes`) allocates
    /// nothing by itself and the value is not copied again as it grows. More or fewer bytes than expected are refused
    /// with `ClusterError.malformedMessage`.
    static func assemble(
        what: String, expected: Int, initial: ArraySlice<UInt8>,
        next: () async throws -> [UInt8]?
    ) async throws -> [UInt8] {
        guard expected >= 0, initial.count <= expected else {
            throw ClusterError.malformedMessage(
                what: what,
                detail: "more than the \(max(0, expected)) bytes its header says")
        }
        var chunks: [ArraySlice<UInt8>] = [initial]
        var received = initial.count
        while received < expected, let chunk = try await next() {
            guard chunk.count <= expected - received else {
                throw ClusterError.malformedMessage(
                    what: what,
                    detail: "\(chunk.count) bytes after \(received): more than the \(expected) bytes its header says")
            }
            chunks.append(chunk[...])
            received += chunk.count
        }
        guard received == expected else {
            throw ClusterError.malformedMessage(what: what, detail: "\(received) bytes, header says \(expected)")
        }
        if chunks.count == 1 { return Array(initial) }
        return FreshArrays.joining(count: expected) { copy in for chunk in chunks { chunk.withUnsafeBytes(copy) } }
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
