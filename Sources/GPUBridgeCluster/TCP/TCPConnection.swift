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

/// What one exchange sends: a first frame, then (for a large call) `chunks` frames built one at a time, each while the
/// one before it is being written (`TCPFrame.writeInTurn`), so a large value never sits in memory twice and other
/// exchanges' frames pass between its chunks.
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
                // A large call's chunks, each built while the one before it is written; they stop once the exchange
                // has its answer (a refusal) or has ended, and the node is told to drop what it assembled.
                let (written, failure) = await TCPFrame.writeInTurn(
                    outgoing.chunks, to: channel, goOn: { isWaiting(id) }
                ) { outgoing.chunk($0, channel.allocator) }
                if let failure { finish(id, .failure(TCPExchangeFailure.closed("write failed: \(failure)"))) }
                if written < outgoing.chunks {
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
        case .piece: return  // assembled by the handler
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
    private let assemblies = TCPAssemblies<ClusterReply.Kind>()

    init(connection: TCPConnection, limits: WireLimits) {
        self.connection = connection
        self.limits = limits
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let inbound = unwrapInboundIn(data)
        switch inbound {
        case let .piece(id, bytes):
            do {
                if let (kind, body) = try assemblies.append(bytes, to: id) {
                    connection.received(.assembled(id: id, reply: try ClusterReply.make(kind: kind, body: body)))
                }
            } catch {
                connection.finish(id, .failure(TCPExchangeFailure.malformed("\(error)")))
            }
        case let .frame(kind, id, payload) where kind == TCPFrameKind.replyHead.rawValue:
            do {
                let (replyKind, length) = try payload.withUnsafeReadableBytes {
                    try ClusterReply.parseHeader($0, maxBodyBytes: limits.maxCallBytes)
                }
                if length == 0 {
                    connection.received(.assembled(id: id, reply: try ClusterReply.make(kind: replyKind, body: [])))
                } else {
                    assemblies.begin(id, expected: length, tag: replyKind)
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
        default:
            connection.received(inbound)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        assemblies.removeAll()
        connection.closed("the connection closed")
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        connection.closed("\(error)")
        context.close(promise: nil)
    }
}
