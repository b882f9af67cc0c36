import GPUBridgeActors
import NIOCore

/// The frames of `TCPNodeTransport`: a little-endian `u32` length (the bytes after it), a kind byte, a `u64` exchange
/// id chosen by the side that opens the exchange, then the kind's payload.
///
/// | kind | direction | payload |
/// | --- | --- | --- |
/// | call | caller → node | the trace context (`u32` count, then key and value strings), then a `ClusterRequest` |
/// | reply | node → caller | a `ClusterReply` (its header, then its body) |
/// | ping | prober → node | the prober's name (UTF-8) |
/// | pong | node → prober | the node's id (`NodeID.description`, UTF-8) |
/// | refused | node → caller | why the node did not run the call (UTF-8): malformed or larger than its limit |
/// | unavailable | node → caller | why the node cannot answer (UTF-8): it is not running |
/// | call head | caller → node | a call whose arguments follow in chunks: the trace context, the request's header |
/// | reply head | node → caller | a reply whose body follows in chunks: the `ClusterReply` header |
/// | chunk | both | the next bytes of the arguments or body announced by the head with the same id |
/// | abandon | caller → node | the caller stopped sending the call's chunks: drop what was assembled |
///
/// Arguments and bodies longer than `WireLimits.chunkBytes` go as a head and chunks of at most that size.
/// A value type; any thread.
enum TCPFrameKind: UInt8, Sendable {
    case call = 1
    case reply = 2
    case ping = 3
    case pong = 4
    case refused = 5
    case unavailable = 6
    case callHead = 7
    case replyHead = 8
    case chunk = 9
    case abandon = 10
}

/// What reaches an exchange: a whole frame, the head of one longer than this side accepts (its body is skipped as it
/// arrives, never buffered), the bytes of a chunk frame as they arrive, or a reply assembled from chunks.
enum TCPInbound: Sendable {
    case frame(kind: UInt8, id: UInt64, payload: ByteBuffer)
    case oversized(kind: UInt8, id: UInt64, bytes: Int)
    /// The next bytes of the chunk frame with this id, as they were read: a slice of the read buffer, to be copied
    /// before the handler returns (keeping it would make the decoder's buffer copy itself on the next read).
    case piece(id: UInt64, bytes: ByteBuffer)
    case assembled(id: UInt64, reply: ClusterReply)
}

enum TCPFrame {
    /// Bytes before the payload: length, kind, id.
    static let headBytes = 13

    /// Room for everything of a call but its arguments (the header's strings, the trace context).
    static let callOverheadBytes = 1 << 20

    /// A frame of `kind` and `id` whose payload is `parts`, concatenated.
    static func make(
        _ kind: TCPFrameKind, id: UInt64, parts: [ArraySlice<UInt8>], allocator: ByteBufferAllocator
    ) -> ByteBuffer {
        let payload = parts.reduce(0) { $0 + $1.count }
        var buffer = allocator.buffer(capacity: headBytes + payload)
        buffer.writeInteger(UInt32(truncatingIfNeeded: 9 + payload), endianness: .little)
        buffer.writeInteger(kind.rawValue)
        buffer.writeInteger(id, endianness: .little)
        for part in parts { buffer.writeBytes(part) }
        return buffer
    }

    /// A frame whose payload is `text` in UTF-8.
    static func make(_ kind: TCPFrameKind, id: UInt64, text: String, allocator: ByteBufferAllocator) -> ByteBuffer {
        make(kind, id: id, parts: [ArraySlice(Array(text.utf8))], allocator: allocator)
    }

    /// Writes the `count` frames `make` builds, in order. Each is built while the one before it is being written, so
    /// at most two are in memory at once and building overlaps the socket. Stops before building the next once
    /// `goOn` answers false or a write failed; returns how many were written, and the failure.
    static func writeInTurn(
        _ count: Int, to channel: any Channel, goOn: () -> Bool, make: (Int) -> ByteBuffer
    ) async -> (written: Int, failure: (any Error)?) {
        var pending: EventLoopFuture<Void>?
        var index = 0
        while index < count, goOn() {
            let frame = make(index)
            if let pending {
                do { try await pending.get() } catch { return (index - 1, error) }
            }
            pending = channel.writeAndFlush(frame)
            index += 1
        }
        if let pending {
            do { try await pending.get() } catch { return (index - 1, error) }
        }
        return (index, nil)
    }

    /// The largest payload that fits the `u32` length field.
    static let maxPayloadBytes = Int(UInt32.max) - 9

    /// The trace context's entries as a call frame carries them before the request.
    static func traceContext(_ entries: [(String, String)]) throws -> [UInt8] {
        var w = WireWriter(capacity: 128)
        w.u32(UInt32(entries.count))
        for (key, value) in entries {
            try w.string(key)
            try w.string(value)
        }
        return w.bytes
    }

    /// Reads the trace context a call frame starts with; at most 64 entries.
    static func readTraceContext(_ reader: inout WireReader) throws -> [(String, String)] {
        let count = try reader.u32()
        guard count <= 64 else {
            throw ClusterError.malformedMessage(what: "call", detail: "\(count) trace context entries (at most 64)")
        }
        var entries: [(String, String)] = []
        for _ in 0..<count { entries.append((try reader.string(), try reader.string())) }
        return entries
    }
}

/// Cuts the byte stream into frames. A frame whose length is under the head or over `maxPayloadBytes` is not
/// buffered: its head is passed on as `.oversized` (the other side answers it) and its body skipped as it arrives, so
/// a claim allocates nothing. A chunk frame is not buffered either: its payload is passed on in `.piece`s as it is
/// read, so the bytes of a large value go from the read buffer straight into their assembly. One instance per
/// connection, on its event loop.
struct TCPFrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = TCPInbound

    let maxPayloadBytes: Int
    /// Bytes of an oversized frame still to skip.
    private var skipping = 0
    /// The chunk frame being passed on, and how many of its bytes are still to come.
    private var streaming: (id: UInt64, remaining: Int)?

    init(maxPayloadBytes: Int) {
        self.maxPayloadBytes = maxPayloadBytes
    }

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        if skipping > 0 {
            let n = min(skipping, buffer.readableBytes)
            buffer.moveReaderIndex(forwardBy: n)
            skipping -= n
            return skipping == 0 ? .continue : .needMoreData
        }
        if let (id, remaining) = streaming {
            let n = min(remaining, buffer.readableBytes)
            guard n > 0, let bytes = buffer.readSlice(length: n) else { return .needMoreData }
            streaming = remaining == n ? nil : (id, remaining - n)
            context.fireChannelRead(NIOAny(TCPInbound.piece(id: id, bytes: bytes)))
            return .continue
        }
        guard buffer.readableBytes >= TCPFrame.headBytes,
            let length = buffer.getInteger(at: buffer.readerIndex, endianness: .little, as: UInt32.self),
            let kind = buffer.getInteger(at: buffer.readerIndex + 4, as: UInt8.self),
            let id = buffer.getInteger(at: buffer.readerIndex + 5, endianness: .little, as: UInt64.self)
        else { return .needMoreData }
        guard length >= 9 else {
            throw ClusterError.malformedMessage(what: "frame", detail: "a length of \(length) bytes (at least 9)")
        }
        let payload = Int(length) - 9
        if payload > maxPayloadBytes {
            buffer.moveReaderIndex(forwardBy: TCPFrame.headBytes)
            skipping = payload
            context.fireChannelRead(NIOAny(TCPInbound.oversized(kind: kind, id: id, bytes: payload)))
            return .continue
        }
        if kind == TCPFrameKind.chunk.rawValue {
            buffer.moveReaderIndex(forwardBy: TCPFrame.headBytes)
            if payload > 0 { streaming = (id, payload) }
            return .continue
        }
        guard buffer.readableBytes >= TCPFrame.headBytes + payload else { return .needMoreData }
        buffer.moveReaderIndex(forwardBy: TCPFrame.headBytes)
        guard let body = buffer.readSlice(length: payload) else { return .needMoreData }
        context.fireChannelRead(NIOAny(TCPInbound.frame(kind: kind, id: id, payload: body)))
        return .continue
    }

    mutating func decodeLast(
        context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool
    ) throws -> DecodingState {
        while try decode(context: context, buffer: &buffer) == .continue, buffer.readableBytes > 0 {}
        return .needMoreData
    }
}
