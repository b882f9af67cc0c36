/// Coalesces many small requests into one device launch and scatters the results back to their callers.
///
/// A batch runs when `maxBatch` requests are waiting, or `window` after its first request arrived, whichever comes
/// first; `execute` receives the requests in arrival order and must return one response per request, in the same
/// order. If it throws, every caller of that batch gets the error. Nothing is dropped: each `submit` returns exactly
/// its own response or an error.
///
/// Thread safety: an actor; any task may submit. Cost: one `execute` per batch instead of one launch per request.
public actor Batcher<Request: Sendable, Response: Sendable> {
    public typealias Execute = @Sendable ([Request]) async throws(GPUBridgeError) -> [Response]

    private var pending: [(Request, CheckedContinuation<Result<Response, GPUBridgeError>, Never>)] = []
    private var generation = 0
    private let execute: Execute
    private let validate: @Sendable (Request) throws(GPUBridgeError) -> Void
    public let maxBatch: Int
    public let window: Duration
    /// Batches run so far, and the requests they carried.
    public private(set) var batches = 0
    public private(set) var requests = 0

    /// `validate` runs on each request as it is submitted, so one caller's bad input fails that caller alone.
    public init(
        maxBatch: Int, window: Duration,
        validate: @escaping @Sendable (Request) throws(GPUBridgeError) -> Void = { _ in },
        execute: @escaping Execute
    ) throws(GPUBridgeError) {
        guard maxBatch >= 1 else {
            throw .invalidArgument(name: "maxBatch", value: String(maxBatch), limit: "1...\(Int.max)")
        }
        guard window >= .zero else { throw .invalidArgument(name: "window", value: "\(window)", limit: "zero or more") }
        self.maxBatch = maxBatch
        self.window = window
        self.execute = execute
        self.validate = validate
    }

    /// Adds a request to the current batch and suspends until its response (or the batch's error) is ready.
    public func submit(_ request: Request) async throws(GPUBridgeError) -> Response {
        try validate(request)
        let result = await withCheckedContinuation {
            (continuation: CheckedContinuation<Result<Response, GPUBridgeError>, Never>) in
            pending.append((request, continuation))
            if pending.count >= maxBatch {
                flush()
            } else if pending.count == 1 {
                let generation = self.generation
                let window = self.window
                Task {
                    // The batching window: a real timer that bounds how long the first request waits for company.
                    try? await Task.sleep(for: window)
                    self.flush(ifGeneration: generation)
                }
            }
        }
        return try result.get()
    }

    private func flush(ifGeneration expected: Int) {
        if generation == expected, !pending.isEmpty { flush() }
    }

    private func flush() {
        let batch = pending
        pending = []
        generation += 1
        batches += 1
        requests += batch.count
        let execute = self.execute
        Task {
            let outcome: Result<[Response], GPUBridgeError>
            do throws(GPUBridgeError) {
                outcome = .success(try await execute(batch.map(\.0)))
            } catch {
                outcome = .failure(error)
            }
            switch outcome {
            case let .success(responses) where responses.count == batch.count:
                for (i, (_, continuation)) in batch.enumerated() {
                    continuation.resume(returning: .success(responses[i]))
                }
            case let .success(responses):
                let error = GPUBridgeError.sizeMismatch(
                    name: "batch responses", expected: batch.count, actual: responses.count)
                for (_, continuation) in batch { continuation.resume(returning: .failure(error)) }
            case let .failure(error):
                for (_, continuation) in batch { continuation.resume(returning: .failure(error)) }
            }
        }
    }
}

extension Bridge {
    /// A batcher that coalesces small vector additions into one `vector_add` launch through this bridge (with its
    /// retries and fallback), using the bridge's micro-batch size and window.
    public func vectorAddBatcher() throws(GPUBridgeError) -> Batcher<Operations.VectorPair, [Float]> {
        try Batcher(
            maxBatch: options.microBatchSize, window: options.microBatchWindow,
            validate: { request throws(GPUBridgeError) in
                try Operations.checkCount("a.count", request.a.count)
                try Operations.checkEqual("b.count", request.a.count, request.b.count)
            }
        ) { [self] requests throws(GPUBridgeError) in
            var a: [Float] = [], b: [Float] = []
            var bounds: [Range<Int>] = []
            for request in requests {
                bounds.append(a.count..<a.count + request.a.count)
                a += request.a
                b += request.b
            }
            let c = try await run(Operations.vectorAdd, Operations.VectorPair(a, b))
            return bounds.map { Array(c[$0]) }
        }
    }
}
