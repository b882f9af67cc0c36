import Foundation
import Testing

// ACTORS-BEGIN
import Distributed
import GPUBridge
import GPUBridgeActors

/// A running sum of float vectors that lives in device memory. Every `add` is durable when it returns.
distributed actor Accumulator: DurableActor {
    typealias ActorSystem = EmbeddedActorSystem
    /// One journaled change: a vector added to the sum (Codable: journaled as JSON).
    struct Mutation: Codable, Sendable { var delta: [Float] }

    let lifecycle = ActivationLifecycle()
    let journal = ActorJournal()
    let size: Int
    var device: Device?
    var sum: Buffer<Float>?

    init(actorSystem: EmbeddedActorSystem, size: Int) {
        self.actorSystem = actorSystem
        self.size = size
    }

    distributed func add(_ delta: [Float]) async throws {
        try await withActivation {
            guard delta.count == size else {
                throw GPUBridgeError.sizeMismatch(name: "delta.count", expected: size, actual: delta.count)
            }
            try await mutate(Mutation(delta: delta))  // journaled (durable), then applied
        }
    }

    distributed func total() async throws -> [Float] {
        try await withActivation { try sum!.toArray() }
    }

    // The four hooks: build the state from a snapshot, apply a mutation, write a snapshot, release.
    func restore(from snapshot: SnapshotReader?) async throws -> DeviceID? {
        let device = try actorSystem.place(footprint: size * 4)
        var initial = [Float](repeating: 0, count: size)
        if var snapshot { initial = try await snapshot.read(Float.self, count: size) }
        sum = try device.makeBuffer(copying: initial)
        self.device = device
        return device.id
    }

    func apply(_ mutation: Mutation) async throws {
        guard let device, let sum else { return }
        let delta = try device.makeBuffer(copying: mutation.delta)
        let saxpy = try ExecutionContext(device: device, catalog: actorSystem.bridge.catalog).kernel("saxpy")
        try await device.launch(
            saxpy, .covering(size),  // sum = 1 * delta + sum, on the device
            arguments: [.buffer(delta), .buffer(sum), .float(1), .int32(Int32(size))])
    }

    func writeSnapshot(to writer: inout SnapshotWriter) async throws {
        try await writer.write(contentsOf: try sum!.toArray())
    }

    func release() async {
        sum = nil
        device = nil
    }
}
// ACTORS-END

@Suite("docs/ACTORS.md example")
struct DocsExampleTests {
    @Test("the durable accumulator keeps every acknowledged add across a crash")
    func accumulator() async throws {
        let (path, cleanup) = temporaryDatabase()
        defer { cleanup() }
        func open() throws -> EmbeddedActorSystem {
            let system = try EmbeddedActorSystem(
                bridge: try makeBridge([CPUBackend()]),
                storage: try SQLiteActorStorage(path: path))
            try system.register(Accumulator.self, as: "accumulator") { Accumulator(actorSystem: $0, size: 4) }
            return system
        }
        let first = try open()
        let sum = try first.actor(Accumulator.self, key: "grads")
        try await sum.add([1, 2, 3, 4])
        try await sum.add([10, 20, 30, 40])
        #expect(try await sum.total() == [11, 22, 33, 44])
        await #expect(throws: GPUBridgeError.sizeMismatch(name: "delta.count", expected: 4, actual: 1)) {
            try await sum.add([1])
        }
        // A second system on the same file, the first never deactivated (as after kill -9): the journal replays.
        let second = try open()
        #expect(try await second.actor(Accumulator.self, key: "grads").total() == [11, 22, 33, 44])
        // A checkpoint, one more add, a deactivation: snapshot plus journal again.
        let again = try second.actor(Accumulator.self, key: "grads")
        try await second.deactivate(again.id)
        try await again.add([100, 100, 100, 100])
        #expect(try await open().actor(Accumulator.self, key: "grads").total() == [111, 122, 133, 144])
    }

    @Test("is the text docs/ACTORS.md shows")
    func matchesDocs() throws {
        let here = #filePath
        let root = String(here[..<here.range(of: "/Tests/")!.lowerBound])
        let docs = try String(contentsOfFile: root + "/docs/ACTORS.md", encoding: .utf8)
        let test = try String(contentsOfFile: here, encoding: .utf8)
        func between(_ text: String, _ start: String, _ end: String) -> String? {
            guard let a = text.range(of: start), let b = text.range(of: end, range: a.upperBound..<text.endIndex) else {
                return nil
            }
            return String(text[a.upperBound..<b.lowerBound])
        }
        let block = between(docs, "<!-- durable-example -->\n```swift\n", "```")
        let marked = between(test, "// ACTORS-BEGIN\n", "// ACTORS-END")
        #expect(block != nil)
        #expect(block == marked, "docs/ACTORS.md's durable example and this file's Accumulator differ")
    }
}
