import GPUBridge
import NIOCore
import Synchronization

/// Why an exchange on a `TCPConnection` did not get its answer.
enum TCPExchangeFailure: Error, Sendable {
    /// The connection closed (or never opened) before the answer came.
    case closed(String)
    /// No answer within the exchange's timeout.
    case timedOut
    /// The answer is longer than this side accepts (its body was skipped).
    case oversized(Int)
    /// The answer could not be read.
    case malformed(String)
}

/// What one exchange sends: a first frame, then (for a large call) `chunks` frames built one at a time, each only once
/// the one before it has been written, so a large value never sits in memory twice and other exchanges' frames pass
/// between its chunks.
struct TCPOutgoing: Sendable {
    var head: ByteBuffer
    var chunks = 0
    var chunk: @Sendable (Int, ByteBufferAllocator) -> ByteBuffer = { _, allocator in allocator.buffer(capacity: 0) }
}

/// One client connection of `TCPNodeTransport` to a node: exchanges (a call and its reply, a ping and its pong) are
/// multiplexed on it by id; each waits for the answer with its id, its timeout enforced by a timer on the connection's
/// event loop.
///
/// Owned by the transport (one per peer, kept until the connection closes or the peer is forgotten). Any thread may
/// start an exchange; the waiting exchanges are behind a mutex, and the handler completes them from the event loop. A
/// waiting exchange costs one promise and one scheduled timer.
final class TCPConnection: Sendable {
    private struct Waiter {
        let promise: EventLoopPromise<TCPInbound>
        var timer: Scheduled<Void>?
    }

    private struct State {
        var nextID: UInt64 = 0
        var waiting: [UInt64: Waiter] = [:]
        var closed: String?
    }

    let channel: any Channel
    private let state = Mutex(State())

    init(channel: any Channel) {
        self.channel = channel
    }

    /// Sends the frames `make(id)` describes and waits at most `timeout` for the answer with that id.
    func exchange(timeout: Duration, _ make: @Sendable (UInt64, ByteBufferAllocator) -> TCPOutgoing) async throws
        -> TCPInbound
    {
        guard timeout > .zero else { throw TCPExchangeFailure.timedOut }
        // The promise is made only once it is registered: every registered one is completed (by the answer, the
        // timer, a cancellation or the connection's end), and NIO stops a process that drops one.
        let (id, promise) = try state.withLock { s -> (UInt64, EventLoopPromise<TCPInbound>) in
            if let reason = s.closed { throw TCPExchangeFailure.closed(reason) }
            s.nextID &+= 1
            let promise = channel.eventLoop.makePromise(of: TCPInbound.self)
            s.waiting[s.nextID] = Waiter(promise: promise, timer: nil)
            return (s.nextID, promise)
        }
        let nanoseconds = timeout.components.seconds * 1_000_000_000 + timeout.components.attoseconds / 1_000_000_000
        let timer = channel.eventLoop.scheduleTask(in: .nanoseconds(max(1, nanoseconds))) { [self] in
            self.finish(id, .failure(TCPExchangeFailure.timedOut))
        }
        let armed = state.withLock { s -> Bool in
            guard s.waiting[id] != nil else { return false }
            s.waiting[id]?.timer = timer
            return true
        }
        if !armed { timer.cancel() }
        let outgoing = make(id, channel.allocator)
        return try await withTaskCancellationHandler {
            if !Task.isCancelled {
                channel.writeAndFlush(outgoing.head).whenFailure { [self] error in
                    self.finish(id, .failure(TCPExchangeFailure.closed("write failed: \(error)")))
                }
                // A large call's chunks, each written before the next is built; they stop once the exchange has its
                // answer (a refusal) or has ended, and the node is told to drop what it assembled.
                var index = 0
                while index < outgoing.chunks, isWaiting(id) {
                    do { try await channel.writeAndFlush(outgoing.chunk(index, channel.allocator)).get() } catch {
                        finish(id, .failure(TCPExchangeFailure.closed("write failed: \(error)")))
                    }
                    index += 1
                }
                if index < outgoing.chunks {
                    channel.writeAndFlush(
                        TCPFrame.make(.abandon, id: id, parts: [], allocator: channel.allocator), promise: nil)
                }
            }
            return try await promise.futureResult.get()
        } onCancel: {
            finish(id, .failure(CancellationError()))
        }
    }

    private func isWaiting(_ id: UInt64) -> Bool { state.withLock { $0.waiting[id] != nil } }

    /// Completes the exchange `id` (once; later results for it are dropped).
    func finish(_ id: UInt64, _ result: Result<TCPInbound, any Error>) {
        guard let waiter = state.withLock({ $0.waiting.removeValue(forKey: id) }) else { return }
        waiter.timer?.cancel()
        waiter.promise.completeWith(result)
    }

    /// An answer arrived: it completes the exchange with its id.
    func received(_ inbound: TCPInbound) {
        switch inbound {
        case let .frame(_, id, _), let .assembled(id, _): finish(id, .success(inbound))
        case let .oversized(_, id, bytes): finish(id, .failure(TCPExchangeFailure.oversized(bytes)))
        }
    }

    /// The connection is gone: every waiting exchange fails with `reason`, and so does every later one.
    func closed(_ reason: String) {
        let waiters = state.withLock { s -> [Waiter] in
            if s.closed == nil { s.closed = reason }
            defer { s.waiting = [:] }
            return Array(s.waiting.values)
        }
        for waiter in waiters {
            waiter.timer?.cancel()
            waiter.promise.fail(TCPExchangeFailure.closed(reason))
        }
    }

    var isClosed: Bool { state.withLock { $0.closed != nil } }
}

/// The client end of a connection's pipeline: assembles replies that come in chunks, passes every answer to its
/// `TCPConnection`, and tells it when the connection closes or fails. Lives on the connection's event loop, which alone
/// touches its assemblies.
final class TCPClientHandler: ChannelInboundHandler {
    typealias InboundIn = TCPInbound

    let connection: TCPConnection
    let limits: WireLimits
    private var assemblies: [UInt64: TCPAssembly<ClusterReply.Kind>] = [:]

    init(connection: TCPConnection, limits: WireLimits) {
        self.connection = connection
        self.limits = limits
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let inbound = unwrapInboundIn(data)
        guard case let .frame(kind, id, payload) = inbound else {
            connection.received(inbound)
            return
        }
        switch TCPFrameKind(rawValue: kind) {
        case .replyHead:
            do {
                let (replyKind, length) = try payload.withUnsafeReadableBytes {
                    try ClusterReply.parseHeader($0, maxBodyBytes: limits.maxCallBytes)
                }
                if length == 0 {
                    connection.received(.assembled(id: id, reply: try ClusterReply.make(kind: replyKind, body: [])))
                } else {
                    assemblies[id] = TCPAssembly(expected: length, tag: replyKind)
                }
            } catch let error as ClusterError {
                if case let .messageTooLarge(_, claimed, _) = error {
                    connection.finish(id, .failure(TCPExchangeFailure.oversized(Int(clamping: claimed))))
                } else {
                    connection.finish(id, .failure(TCPExchangeFailure.malformed(error.description)))
                }
            } catch {
                connection.finish(id, .failure(TCPExchangeFailure.malformed("\(error)")))
            }
        case .chunk:
            guard var assembly = assemblies.removeValue(forKey: id) else { return }
            do {
                if let body = try assembly.append(payload) {
                    let reply = try ClusterReply.make(kind: assembly.tag, body: body)
                    connection.received(.assembled(id: id, reply: reply))
                } else {
                    assemblies[id] = assembly
                }
            } catch {
                connection.finish(id, .failure(TCPExchangeFailure.malformed("\(error)")))
            }
        default:
            connection.received(inbound)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        assemblies = [:]
        connection.closed("the connection closed")
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        connection.closed("\(error)")
        context.close(promise: nil)
    }
}

/// A value arriving in chunks: the chunks are kept as they came (nothing is reserved for bytes that have not come),
/// more bytes than its head announced are refused, and once every byte has come they are copied once into an array
/// of the exact size (`FreshArrays`). Growing one array as the chunks came copied and faulted in about twice the value
/// (each doubling a fresh mapping). Confined to one event loop.
struct TCPAssembly<Tag> {
    let expected: Int
    let tag: Tag
    private var chunks: [ByteBuffer] = []
    private var received = 0

    init(expected: Int, tag: Tag) {
        self.expected = expected
        self.tag = tag
    }

    /// Takes a chunk; returns the whole value once every announced byte has come, and nil before.
    mutating func append(_ chunk: ByteBuffer) throws -> [UInt8]? {
        guard chunk.readableBytes <= expected - received else {
            throw ClusterError.malformedMessage(
                what: "chunk",
                detail: "\(chunk.readableBytes) bytes after \(received): more than the \(expected) bytes its head said")
        }
        chunks.append(chunk)
        received += chunk.readableBytes
        guard received == expected else { return nil }
        let parts = chunks
        chunks = []
        return FreshArrays.joining(count: expected) { copy in for part in parts { part.withUnsafeReadableBytes(copy) } }
    }
}
