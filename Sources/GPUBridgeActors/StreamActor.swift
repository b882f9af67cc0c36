import Distributed
import GPUBridge
import Synchronization

/// An elementwise catalog kernel a `StreamActor` runs over each micro-batch: it maps `count` floats of `input` to
/// `count` floats of `output`.
public struct StreamKernel: Sendable {
    /// The catalog kernel id.
    public var kernel: String
    /// The kernel's arguments for one micro-batch, in declared order.
    public var arguments: @Sendable (_ input: Buffer<Float>, _ output: Buffer<Float>, _ count: Int) -> [KernelArgument]

    public init(kernel: String, arguments: @escaping @Sendable (Buffer<Float>, Buffer<Float>, Int) -> [KernelArgument])
    {
        self.kernel = kernel
        self.arguments = arguments
    }

    /// y = alpha * x with the built-in `scale`.
    public static func scale(by alpha: Float) -> StreamKernel {
        StreamKernel(kernel: "scale") { x, y, n in [.buffer(x), .buffer(y), .float(alpha), .int32(Int32(n))] }
    }
}

/// Counters of a stream actor, exact when read.
public struct StreamStatistics: Sendable, Hashable, Codable {
    /// Streams running now.
    public var activeStreams: Int
    /// Elements pulled from input sequences, and results handed to consumers' buffers.
    public var elementsPulled: Int
    public var resultsEmitted: Int
    /// Micro-batches launched.
    public var batches: Int
    /// The most elements waiting between producer and device, and results waiting for the consumer, seen at once.
    public var maxQueued: Int
    public var maxBuffered: Int
}

/// Consumes an `AsyncSequence` of float vectors, coalesces what is waiting into micro-batches (one upload, one
/// launch, one download each), and emits each vector's result, in input order, as an `AsyncSequence`.
///
/// - Back-pressure: the input is read into a queue of `bufferLimit` elements and the reader waits while it is full;
///   results wait for the consumer once `bufferLimit` of them are unconsumed. Memory is therefore bounded by
///   `2 x bufferLimit` elements plus one micro-batch, however fast the producer is.
/// - Device memory: each stream places itself (the system's `place`) and allocates two staging buffers of
///   `maxBatchFloats` floats, reused by every micro-batch and released when the stream ends.
/// - Cancellation: cancelling the consuming task (or dropping the sequence) stops the reader and the device loop,
///   and the staging buffers go back to the pool.
/// - Errors: an element longer than `maxBatchFloats`, or a failed launch, ends the stream with that error.
public distributed actor StreamActor {
    public typealias ActorSystem = EmbeddedActorSystem

    private let kernel: StreamKernel
    /// Most elements per micro-batch, most floats per micro-batch, and the bound of each buffer.
    public let maxBatch: Int
    public let maxBatchFloats: Int
    public let bufferLimit: Int
    private let counters = StreamCounters()

    /// Values below 1 are raised to 1.
    public init(
        actorSystem: EmbeddedActorSystem, kernel: StreamKernel, maxBatch: Int = 256, maxBatchFloats: Int = 1 << 20,
        bufferLimit: Int = 64
    ) {
        self.actorSystem = actorSystem
        self.kernel = kernel
        self.maxBatch = max(1, maxBatch)
        self.maxBatchFloats = max(1, maxBatchFloats)
        self.bufferLimit = max(1, bufferLimit)
    }

    public distributed func statistics() -> StreamStatistics { counters.snapshot }

    /// Starts processing `input`; the results come out of the returned sequence in input order. Local only (a
    /// sequence does not cross nodes): call it through `whenLocal`.
    public func stream<S: AsyncSequence & Sendable>(_ input: S) -> StreamResults
    where S.Element == [Float], S.Failure == any Error {
        let queue = BoundedQueue<[Float]>(capacity: bufferLimit)
        let credits = Credits(permits: bufferLimit)
        let (results, continuation) = AsyncThrowingStream<[Float], any Error>.makeStream()
        let counters = self.counters, kernel = self.kernel, system = actorSystem
        let maxBatch = self.maxBatch, maxFloats = self.maxBatchFloats
        counters.started()

        let reader = Task.detached {
            do {
                for try await element in input {
                    counters.pulled()
                    guard await queue.put(element) else { return }  // waits while the queue is full
                    counters.queued(await queue.count)
                }
                await queue.finish(nil)
            } catch {
                await queue.finish(error)
            }
        }
        let worker = Task.detached {
            defer { counters.ended() }
            do {
                let device = try system.place(footprint: 8 * maxFloats)
                let kernelOnDevice = try system.bridge.catalog.kernel(kernel.kernel, on: device)
                // Staging buffers live as long as this task: released when the stream ends or is cancelled.
                let input = try device.makeBuffer(of: Float.self, count: maxFloats)
                let output = try device.makeBuffer(of: Float.self, count: maxFloats)
                while let batch = try await queue.take(upTo: maxBatch, floats: maxFloats) {
                    try Task.checkCancellation()
                    var flat: [Float] = []
                    flat.reserveCapacity(batch.reduce(0) { $0 + $1.count })
                    for element in batch { flat += element }
                    guard !flat.isEmpty else {
                        for _ in batch { try await credits.acquire(); continuation.yield([]) }
                        continue
                    }
                    try input.copy(from: flat)
                    try await device.launch(
                        kernelOnDevice, .covering(flat.count),
                        arguments: kernel.arguments(input, output, flat.count))
                    let out = try output.toArray(offset: 0, count: flat.count)
                    counters.batch()
                    var start = 0
                    for element in batch {
                        try await credits.acquire()  // waits while `bufferLimit` results are unconsumed
                        continuation.yield(Array(out[start..<start + element.count]))
                        counters.emitted(await credits.outstanding)
                        start += element.count
                    }
                }
                continuation.finish()
            } catch {
                continuation.finish(throwing: error)
            }
        }
        continuation.onTermination = { _ in
            reader.cancel()
            worker.cancel()
            Task {
                await queue.close()
                await credits.close()
            }
        }
        return StreamResults(base: results, credits: credits)
    }
}

/// The results of a stream, in input order. Each element taken frees a slot for the device loop.
public struct StreamResults: AsyncSequence, Sendable {
    public typealias Element = [Float]
    let base: AsyncThrowingStream<[Float], any Error>
    let credits: Credits

    public struct AsyncIterator: AsyncIteratorProtocol {
        var base: AsyncThrowingStream<[Float], any Error>.AsyncIterator
        let credits: Credits

        public mutating func next() async throws -> [Float]? {
            guard let value = try await base.next() else { return nil }
            await credits.release()
            return value
        }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(base: base.makeAsyncIterator(), credits: credits) }
}

final class StreamCounters: Sendable {
    private struct State {
        var active = 0, pulled = 0, emitted = 0, batches = 0, maxQueued = 0, maxBuffered = 0
    }

    private let state = Mutex(State())

    func started() { state.withLock { $0.active += 1 } }
    func ended() { state.withLock { $0.active -= 1 } }
    func pulled() { state.withLock { $0.pulled += 1 } }
    func batch() { state.withLock { $0.batches += 1 } }
    func queued(_ n: Int) { state.withLock { $0.maxQueued = max($0.maxQueued, n) } }
    func emitted(_ buffered: Int) {
        state.withLock { s in
            s.emitted += 1
            s.maxBuffered = max(s.maxBuffered, buffered)
        }
    }

    var snapshot: StreamStatistics {
        state.withLock { s in
            StreamStatistics(
                activeStreams: s.active, elementsPulled: s.pulled, resultsEmitted: s.emitted, batches: s.batches,
                maxQueued: s.maxQueued, maxBuffered: s.maxBuffered)
        }
    }
}

/// A FIFO of at most `capacity` elements between one producer and one consumer; `put` waits while it is full.
actor BoundedQueue<Element: Sendable> {
    private var items: [Element] = []
    private var head = 0
    private let capacity: Int
    private var finished = false
    private var failure: (any Error)?
    private var closed = false
    private var waiters: [CheckedContinuation<Void, Never>] = []

    init(capacity: Int) { self.capacity = capacity }

    var count: Int { items.count - head }

    private func wait() async { await withCheckedContinuation { waiters.append($0) } }

    private func wake() {
        let woken = waiters
        waiters = []
        for w in woken { w.resume() }
    }

    /// Adds `element`, waiting while the queue is full; false once the queue is closed.
    func put(_ element: Element) async -> Bool {
        while count >= capacity, !closed { await wait() }
        guard !closed else { return false }
        items.append(element)
        wake()
        return true
    }

    /// Takes what is waiting (at least one element, waiting for it): up to `limit` elements and `floats` total,
    /// always at least one. Nil once the producer finished and the queue is empty; throws the producer's error.
    func take(upTo limit: Int, floats: Int) async throws -> [Element]? where Element == [Float] {
        while count == 0, !finished, !closed { await wait() }
        if closed { throw CancellationError() }
        if count == 0 {
            if let failure { throw failure }
            return nil
        }
        guard items[head].count <= floats else {
            throw GPUBridgeError.invalidArgument(
                name: "stream element length", value: String(items[head].count),
                limit: "1...\(floats) floats (maxBatchFloats)")
        }
        var batch: [Element] = []
        var total = 0
        while head < items.count, batch.count < limit, total + items[head].count <= floats {
            total += items[head].count
            batch.append(items[head])
            head += 1
        }
        if head > 1024, head * 2 > items.count {
            items.removeFirst(head)
            head = 0
        }
        wake()
        return batch
    }

    func finish(_ error: (any Error)?) {
        finished = true
        failure = error
        wake()
    }

    func close() {
        closed = true
        items = []
        head = 0
        wake()
    }
}

/// Slots for results not yet consumed: the device loop takes one per result, the consumer gives it back.
actor Credits {
    private var permits: Int
    private let total: Int
    private var closed = false
    private var waiters: [CheckedContinuation<Void, Never>] = []

    init(permits: Int) {
        self.permits = permits
        self.total = permits
    }

    /// Results handed out and not yet consumed.
    var outstanding: Int { total - permits }

    func acquire() async throws {
        while permits == 0, !closed { await withCheckedContinuation { waiters.append($0) } }
        if closed { throw CancellationError() }
        permits -= 1
    }

    func release() {
        permits = min(total, permits + 1)
        if !waiters.isEmpty { waiters.removeFirst().resume() }
    }

    func close() {
        closed = true
        let woken = waiters
        waiters = []
        for w in woken { w.resume() }
    }
}
