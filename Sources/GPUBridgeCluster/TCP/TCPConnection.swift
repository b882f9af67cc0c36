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
}

/// One client connection of `TCPNodeTransport` to a node: exchanges (a call and its reply, a ping and its pong) are
/// multiplexed on it by id; each waits for the frame with its id, its timeout enforced by a timer on the connection's
/// event loop.
///
/// Owned by the transport (one per peer, kept until the connection closes or the peer is forgotten). Any thread may
/// start an exchange; the waiting exchanges are behind a mutex, and the handler resumes them from the event loop. A
/// waiting exchange costs one continuation and one scheduled timer.
final class TCPConnection: Sendable {
    private struct Waiter {
        let continuation: CheckedContinuation<TCPInbound, any Error>
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

    /// Sends the frame `make(id)` builds and waits at most `timeout` for the frame answering it.
    func exchange(timeout: Duration, _ make: @Sendable (UInt64, ByteBufferAllocator) -> ByteBuffer) async throws
        -> TCPInbound
    {
        guard timeout > .zero else { throw TCPExchangeFailure.timedOut }
        let id = state.withLock { s -> UInt64 in
            s.nextID &+= 1
            return s.nextID
        }
        let frame = make(id, channel.allocator)
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<TCPInbound, any Error>) in
                let refused = state.withLock { s -> String? in
                    if let reason = s.closed { return reason }
                    s.waiting[id] = Waiter(continuation: continuation, timer: nil)
                    return nil
                }
                if let refused {
                    continuation.resume(throwing: TCPExchangeFailure.closed(refused))
                    return
                }
                let nanoseconds =
                    timeout.components.seconds * 1_000_000_000
                    + timeout.components.attoseconds / 1_000_000_000
                let timer = channel.eventLoop.scheduleTask(in: .nanoseconds(max(1, nanoseconds))) { [self] in
                    self.finish(id, .failure(TCPExchangeFailure.timedOut))
                }
                let stillWaiting = state.withLock { s -> Bool in
                    guard s.waiting[id] != nil else { return false }
                    s.waiting[id]?.timer = timer
                    return true
                }
                if !stillWaiting { timer.cancel() }
                if Task.isCancelled {
                    // Cancelled before the frame left: it is not sent.
                    finish(id, .failure(CancellationError()))
                    return
                }
                channel.writeAndFlush(frame).whenFailure { [self] error in
                    self.finish(id, .failure(TCPExchangeFailure.closed("write failed: \(error)")))
                }
            }
        } onCancel: {
            finish(id, .failure(CancellationError()))
        }
    }

    /// Resumes the exchange `id` (once; later results for it are dropped).
    func finish(_ id: UInt64, _ result: Result<TCPInbound, any Error>) {
        guard let waiter = state.withLock({ $0.waiting.removeValue(forKey: id) }) else { return }
        waiter.timer?.cancel()
        waiter.continuation.resume(with: result)
    }

    /// A frame arrived: it answers the exchange with its id.
    func received(_ inbound: TCPInbound) {
        switch inbound {
        case let .frame(_, id, _): finish(id, .success(inbound))
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
            waiter.continuation.resume(throwing: TCPExchangeFailure.closed(reason))
        }
    }

    var isClosed: Bool { state.withLock { $0.closed != nil } }
}

/// The client end of a connection's pipeline: passes every decoded frame to its `TCPConnection`, and tells it when
/// the connection closes or fails. Lives on the connection's event loop.
final class TCPClientHandler: ChannelInboundHandler {
    typealias InboundIn = TCPInbound

    let connection: TCPConnection

    init(connection: TCPConnection) {
        self.connection = connection
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        connection.received(unwrapInboundIn(data))
    }

    func channelInactive(context: ChannelHandlerContext) {
        connection.closed("the connection closed")
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        connection.closed("\(error)")
        context.close(promise: nil)
    }
}
