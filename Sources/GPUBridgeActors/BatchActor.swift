import Distributed
import GPUBridge
import Synchronization

/// Counts work in flight and the most seen at once. Lock-free; any task may read it.
public final class InFlightGauge: Sendable {
    private let current = Atomic<Int>(0)
    private let peak = Atomic<Int>(0)
    private let done = Atomic<Int>(0)

    public init() {}

    func enter() {
        let now = current.add(1, ordering: .relaxed).newValue
        var seen = peak.load(ordering: .relaxed)
        while now > seen {
            let (exchanged, original) = peak.compareExchange(expected: seen, desired: now, ordering: .relaxed)
            if exchanged { break }
            seen = original
        }
    }

    func exit() {
        current.subtract(1, ordering: .relaxed)
        done.add(1, ordering: .relaxed)
    }

    public var statistics: InFlightStatistics {
        InFlightStatistics(
            inFlight: current.load(ordering: .relaxed), maxInFlight: peak.load(ordering: .relaxed),
            completed: done.load(ordering: .relaxed))
    }
}

/// Work in flight now, the most seen at once, and the items finished (successfully or not).
public struct InFlightStatistics: Sendable, Hashable, Codable {
    public var inFlight: Int
    public var maxInFlight: Int
    public var completed: Int
}

/// Runs a catalog operation over batches of inputs through the `Bridge` (broker placement, retries, fallback per
/// request), with at most `maxInFlight` requests in flight and results in input order.
///
/// Back-pressure: `process` pulls the next input from its sequence only when a slot is free, so a producer faster than
/// the devices is slowed to their pace instead of piling work up; `InFlightStatistics.maxInFlight` never exceeds the
/// bound. A request that fails after the bridge's retries and fallback fails the whole batch with its error (the other
/// requests in flight are cancelled); the actor stays usable.
public distributed actor BatchActor<Input: Codable & Sendable, Output: Codable & Sendable> {
    public typealias ActorSystem = EmbeddedActorSystem

    private let operation: Operation<Input, Output>
    /// The most requests running at once.
    public let maxInFlight: Int
    private let gauge = InFlightGauge()

    /// `maxInFlight` below 1 is raised to 1.
    public init(actorSystem: EmbeddedActorSystem, operation: Operation<Input, Output>, maxInFlight: Int) {
        self.actorSystem = actorSystem
        self.operation = operation
        self.maxInFlight = max(1, maxInFlight)
    }

    /// Runs the operation on every input; the outputs are in input order.
    public distributed func run(_ inputs: [Input]) async throws -> [Output] {
        var index = 0
        return try await drain {
            guard index < inputs.count else { return nil }
            defer { index += 1 }
            return inputs[index]
        }
    }

    /// Runs the operation on every element of `inputs`, pulling the next one only when fewer than `maxInFlight`
    /// requests are running; the outputs are in input order. Local only (a sequence does not cross nodes): call it
    /// through `whenLocal`.
    public func process<S: AsyncSequence & Sendable>(_ inputs: S) async throws -> [Output] where S.Element == Input {
        var iterator = inputs.makeAsyncIterator()
        return try await drain { try await iterator.next() }
    }

    /// Requests in flight now, the most seen at once and the requests finished.
    public distributed func inFlight() -> InFlightStatistics { gauge.statistics }

    private func drain(_ next: () async throws -> Input?) async throws -> [Output] {
        let bridge = actorSystem.bridge, operation = self.operation, gauge = self.gauge, bound = maxInFlight
        return try await withThrowingTaskGroup(of: (Int, Output).self) { group in
            var results: [Output?] = []
            var running = 0
            // Back-pressure: the next input is pulled only when a slot is free.
            while let input = try await next() {
                let index = results.count
                results.append(nil)
                gauge.enter()
                group.addTask {
                    defer { gauge.exit() }
                    return (index, try await bridge.run(operation, input))
                }
                running += 1
                if running == bound, let (i, output) = try await group.next() {
                    results[i] = output
                    running -= 1
                }
            }
            while let (i, output) = try await group.next() { results[i] = output }
            let outputs = results.compactMap { $0 }
            guard outputs.count == results.count else {
                throw GPUBridgeError.sizeMismatch(name: "batch outputs", expected: results.count, actual: outputs.count)
            }
            return outputs
        }
    }
}

/// Two equal-length float vectors (a `Codable` form of `Operations.VectorPair` for actor calls).
public struct FloatPair: Sendable, Hashable, Codable {
    public var a: [Float]
    public var b: [Float]
    public init(_ a: [Float], _ b: [Float]) { self.a = a; self.b = b }
}

/// Catalog operations with `Codable` inputs, for actors.
public enum ActorOperations {
    /// c = a + b through the built-in `vector_add` (`Operations.vectorAdd`).
    public static let vectorAdd = Operation<FloatPair, [Float]>(
        name: "vector-add", kernels: ["vector_add"], footprint: { 12 * $0.a.count }
    ) { context, input throws(GPUBridgeError) in
        try await Operations.vectorAdd.run(
            Operations.VectorPair(input.a, input.b), on: context.device, catalog: context.catalog)
    }
}
