import Distributed
import Foundation
import GPUBridge
import GPUBridgeActors
import GPUBridgeTestSupport
import Testing

/// The cases `GPUBridgeTests.BadInputTests` does not cover. Each bad input gets an error naming the argument, the
/// value and the limit; the process carries on (the next call on the same object works) and pools return to baseline.
@Suite("Bad input matrix")
struct BadInputMatrixTests {
    static let extremes = [0, -1, -4096, Int.min, Int.max, Int.max / 2 + 1]

    @Test("buffers, views and host buffers: zero, negative and huge counts and offsets")
    func buffersAndViews() async throws {
        let device = try Device(backend: CPUBackend())
        let baseline = Baseline(device)
        do {
            for n in Self.extremes {
                let raw = bridgeError { try device.makeRawBuffer(byteCount: n) }
                if n <= 0 {
                    expectNames(raw, argument: "byteCount", value: String(n))
                } else if case .outOfMemory = raw {
                } else {
                    Issue.record("\(n) bytes: got \(String(describing: raw))")
                }
                expectNames(bridgeError { try device.makeBuffer(of: Int64.self, count: n) }, argument: "count")
                expectNames(
                    bridgeError { try device.makeHostBuffer(byteCount: min(n, 0)) }, argument: "byteCount",
                    value: String(min(n, 0)))
            }
            let buffer = try device.makeBuffer(copying: (0..<16).map(Int32.init))
            for offset in Self.extremes + [16, 17] {
                for count in Self.extremes + [1, 16] {
                    let valid = offset >= 0 && count >= 1 && offset <= 16 - count
                    if valid {
                        #expect(
                            try buffer.view(offset: offset, count: count).toArray()
                                == Array(Int32(offset)..<Int32(offset + count)))
                    } else {
                        let error = bridgeError { try buffer.view(offset: offset, count: count) }
                        let text = error?.description ?? ""
                        #expect(
                            text.contains(String(offset)) || text.contains(String(count)),
                            "view(\(offset), \(count)): \(text)")
                    }
                    let rawValid = offset >= 0 && count >= 1 && offset <= 64 - count
                    if !rawValid {
                        #expect(bridgeError { try buffer.raw.view(offset: offset, byteCount: count) } != nil)
                    }
                }
            }
            // Host buffer reads and writes out of range, with overflowing element offsets.
            let host = try device.makeHostBuffer(byteCount: 64)
            expectNames(bridgeError { try host.write([Int64](repeating: 1, count: 9)) }, argument: "host buffer")
            expectNames(bridgeError { try host.write([Int64(1)], at: Int.max / 2) }, argument: "offset")
            expectNames(bridgeError { try host.read(Int64.self, count: Int.max / 4) }, argument: "count")
            expectNames(bridgeError { try host.read(Int64.self, count: -1) }, argument: "length", value: "-8")
            expectNames(bridgeError { try host.read(Int32.self, count: 2, at: 15) }, argument: "host buffer")
            // Fills: a pattern of the wrong size, a length that is not a whole number of patterns.
            expectNames(bridgeError { try buffer.raw.enqueueFill(pattern: []) }, argument: "pattern.count", value: "0")
            expectNames(
                bridgeError { try buffer.raw.enqueueFill(pattern: [1, 2, 3, 4], offset: 0, byteCount: 6) },
                argument: "byteCount", value: "6")
            // The process carries on: the same buffer still works.
            try buffer.copy(from: [7], toOffset: 15)
            #expect(try buffer.toArray(offset: 15) == [7])
        }
        await baseline.check()
    }

    @Test("released and moved objects: views and enqueued work keep their memory; dropping everything returns it")
    func releasedObjects() async throws {
        let device = try Device(backend: CPUBackend())
        let baseline = Baseline(device)
        var view: Buffer<Float>?
        do {
            let parent = try device.makeBuffer(copying: (0..<64).map(Float.init))
            view = try parent.view(offset: 32, count: 8)
        }  // the parent variable is gone; the view holds its memory
        #expect(device.pool.statistics.blocksInUse == 1)
        #expect(try view?.toArray() == (32..<40).map(Float.init))
        // A host buffer dropped right after enqueueing its copy: the completion keeps it until the copy is done.
        do {
            let host = try device.makeHostBuffer(byteCount: 32)
            try host.write([Float](repeating: 9, count: 8))
            let completion = try view!.enqueueCopy(from: host)
            _ = consume host
            try await completion.wait()
        }
        #expect(try view?.toArray() == [Float](repeating: 9, count: 8))
        // A buffer moved into a launch and dropped by the caller stays valid until the launch ends.
        do {
            let kernel = try device.compile(
                KernelSource(name: "double_it", parameters: [.buffer("x", Float.self, extent: .globalSize)]) {
                    context in
                    let x = try context.buffer(0, as: Float.self)
                    for i in context.items where i < x.count { x[i] *= 2 }
                })
            let completion = try device.enqueue(
                kernel, Launch(groups: Extent3(1), groupSize: Extent3(8)), arguments: [.buffer(view!)])
            let readBack = view!
            view = nil
            try await completion.wait()
            #expect(try readBack.toArray() == [Float](repeating: 18, count: 8))
        }
        await baseline.check()
    }

    // Needs an OpenCL platform with a device (PoCL in CI, installed by scripts/test).
    @Test(
        "malformed kernel text on OpenCL fails with the compiler's log; the device compiles the next kernel",
        .enabled(if: Machine.hasOpenCL, "no OpenCL device on this machine"))
    func malformedOpenCL() async throws {
        let device = try Device(backend: Machine.openCL[0])
        let baseline = Baseline(device)
        let broken = [
            "__kernel void broken(__global float* x) { x[get_global_id(0)] = ; }",
            "__kernel void broken(__global float* x) { undeclared_function(x); }",
            "this is not OpenCL C at all",
            "__kernel void other(__global float* x) { x[0] = 1.0f; }",  // compiles, but the entry point is missing
        ]
        for text in broken {
            let error = bridgeError {
                try device.compile(KernelSource(name: "broken", language: .openCLC, text: text, entryPoint: "broken"))
            }
            switch error {
            case let .compilationFailed(kernel, backend, log):
                #expect(kernel == "broken" && backend == "opencl")
                #expect(!log.isEmpty, "no compiler log for: \(text)")
            case .backendFailure, .notFound:
                #expect(error?.description.contains("broken") == true, "\(String(describing: error))")
            default:
                Issue.record("\(text): got \(String(describing: error))")
            }
        }
        let good = try device.compile(
            KernelSource(
                name: "ok", language: .openCLC,
                text: "__kernel void ok(__global float* x) { x[get_global_id(0)] += 1.0f; }", entryPoint: "ok"))
        do {
            let x = try device.makeBuffer(copying: [Float](repeating: 1, count: 64))
            try await device.launch(good, .covering(64, groupSize: 64), arguments: [.buffer(x)])
            #expect(try x.toArray() == [Float](repeating: 2, count: 64))
        }
        await baseline.check(ownsBackend: false)
    }

    @Test("empty names: kernels, entry points, catalog ids, actor types and keys, storage paths")
    func emptyNames() async throws {
        let device = try Device(backend: CPUBackend())
        expectNames(
            bridgeError { try device.compile(KernelSource(name: "", parameters: nil) { _ in }) },
            argument: "source.name")
        expectNames(
            bridgeError { try device.compile(KernelSource(name: "k", language: .swift, text: "x", entryPoint: "")) },
            argument: "source.entryPoint")
        let catalog = KernelCatalog()
        expectNames(
            bridgeError {
                try catalog.register(
                    KernelDefinition(
                        id: "", summary: "", parameters: [], portableText: "x", entryPoint: "x", swift: nil))
            }, argument: "id")
        #expect(bridgeError { try catalog.definition("") } == .notFound(kind: "kernel", name: ""))
        let bridge = try Bridge(options: options(), backends: [CPUBackend()])
        let system = try EmbeddedActorSystem(bridge: bridge, storage: InMemoryActorStorage())
        expectNames(
            bridgeError {
                try system.register(VectorIndexActor.self, as: "") { VectorIndexActor(actorSystem: $0, dim: 4) }
            }, argument: "name")
        expectNames(bridgeError { try SQLiteActorStorage(path: "") }, argument: "path")
        // An empty key is a key like any other (Orleans grain keys may be empty strings): it works.
        try system.register(VectorIndexActor.self, as: "index") { VectorIndexActor(actorSystem: $0, dim: 4) }
        #expect(try await system.actor(VectorIndexActor.self, key: "").vectorCount() == 0)
    }

    @Test("bridge options at and past every limit")
    func bridgeOptions() throws {
        let bad: [(String, String, (inout BridgeOptions) -> Void)] = [
            ("backendOrder", "[]", { $0.backendOrder = [] }),
            ("backendOrder", "opencl", { $0.backendOrder = [.opencl, .cpu, .opencl] }),
            ("maxConcurrentLaunchesPerDevice", "4097", { $0.maxConcurrentLaunchesPerDevice = 4097 }),
            ("maxConcurrentLaunchesPerDevice", "\(Int.min)", { $0.maxConcurrentLaunchesPerDevice = .min }),
            ("poolLimitPerDevice", "0", { $0.poolLimitPerDevice = 0 }),
            ("poolLimitPerDevice", "\(Int.min)", { $0.poolLimitPerDevice = .min }),
            ("microBatchSize", "\((1 << 20) + 1)", { $0.microBatchSize = (1 << 20) + 1 }),
            ("microBatchSize", "-1", { $0.microBatchSize = -1 }),
            ("microBatchWindow", "11", { $0.microBatchWindow = .seconds(11) }),
            ("attemptsPerDevice", "101", { $0.attemptsPerDevice = 101 }),
            ("attemptsPerDevice", "\(Int.max)", { $0.attemptsPerDevice = .max }),
            ("failureThreshold", "-5", { $0.failureThreshold = -5 }),
            ("probeInterval", "-", { $0.probeInterval = .nanoseconds(-1) }),
        ]
        for (name, value, change) in bad {
            var options = BridgeOptions()
            change(&options)
            let error = bridgeError { try options.validate() }
            guard case let .invalidArgument(got, shown, limit) = error else {
                Issue.record("\(name): got \(String(describing: error))"); continue
            }
            #expect(got == name)
            #expect(shown.contains(value), "\(name): value shown \(shown)")
            #expect(!limit.isEmpty)
            #expect(throws: GPUBridgeError.self) { try Bridge(options: options, backends: [CPUBackend()]) }
        }
        // The limits themselves are accepted.
        var edge = BridgeOptions()
        edge.maxConcurrentLaunchesPerDevice = 4096
        edge.microBatchSize = 1 << 20
        edge.microBatchWindow = .seconds(10)
        edge.attemptsPerDevice = 100
        edge.probeInterval = .zero
        edge.poolLimitPerDevice = 1
        edge.cacheDirectory = nil
        #expect(throws: Never.self) { try edge.validate() }
        // A pool limit of 1 byte is valid and makes every allocation fail clearly.
        let bridge = try Bridge(options: edge, backends: [CPUBackend()])
        guard case .outOfMemory = bridgeError({ try bridge.devices[0].makeRawBuffer(byteCount: 1) }) else {
            Issue.record("expected outOfMemory"); return
        }
        // Actor system options.
        for timeout in [Duration.zero, .seconds(-1), .seconds(86_400 * 366)] {
            var actorOptions = ActorSystemOptions()
            actorOptions.idleTimeout = timeout
            expectNames(bridgeError { try actorOptions.validate() }, argument: "idleTimeout")
            #expect(throws: GPUBridgeError.self) {
                try EmbeddedActorSystem(bridge: bridge, storage: InMemoryActorStorage(), options: actorOptions)
            }
        }
    }

    @Test("the catalog: unknown ids, definitions without an implementation, a kernel missing for a backend")
    func catalog() async throws {
        let catalog = KernelCatalog()
        let device = try Device(backend: CPUBackend())
        for id in ["", "no_such_kernel", "vector_add ", "VECTOR_ADD", String(repeating: "x", count: 10_000)] {
            #expect(bridgeError { try catalog.kernel(id, on: device) } == .notFound(kind: "kernel", name: id))
        }
        expectNames(
            bridgeError {
                try catalog.register(
                    KernelDefinition(
                        id: "nothing", summary: "", parameters: [], portableText: nil, entryPoint: "nothing", swift: nil
                    ))
            }, argument: "nothing")
        // Only portable text: the CPU has no implementation and says so.
        try catalog.register(
            KernelDefinition(
                id: "gpu_only", summary: "", parameters: [], portableText: "GB_KERNEL gpu_only() {}",
                entryPoint: "gpu_only", swift: nil))
        guard case let .unsupported(feature, backend) = bridgeError({ try catalog.kernel("gpu_only", on: device) })
        else {
            Issue.record("expected unsupported"); return
        }
        #expect(feature.contains("gpu_only") && backend == "cpu")
        // Re-registering an id replaces or is refused, but never breaks the built-ins.
        _ = try? catalog.register(
            KernelDefinition(
                id: "vector_add", summary: "", parameters: [], portableText: nil, entryPoint: "x", swift: nil))
        #expect(catalog.all.contains { $0.id == "vector_add" })
        // An operation whose input is wrong is a caller error, reported at once and not retried.
        let flaky = FaultInjectingBackend(wrapping: CPUBackend(), plan: .init())
        let bridge = try Bridge(options: options(), backends: [flaky])
        let baselines = Baselines(bridge)
        #expect(
            await bridgeError { try await bridge.run(Operations.vectorAdd, .init([], [])) }
                == .invalidArgument(name: "a.count", value: "0", limit: "1...\(Int32.max) elements"))
        #expect(
            await bridgeError { try await bridge.run(Operations.vectorAdd, .init([1, 2], [1])) }
                == .sizeMismatch(name: "b.count", expected: 2, actual: 1))
        #expect(flaky.calls(.launch) == 0)
        #expect(try await bridge.run(Operations.vectorAdd, .init([1], [2])) == [3])
        await baselines.check()
    }

    @Test("actors: bad dims, k, query and vector sizes, unregistered types; each actor stays usable")
    func actors() async throws {
        let bridge = try Bridge(options: options(), backends: [CPUBackend()])
        let baselines = Baselines(bridge)
        let system = try EmbeddedActorSystem(bridge: bridge, storage: InMemoryActorStorage())
        try system.register(VectorIndexActor.self, as: "index") {
            VectorIndexActor(actorSystem: $0, dim: 4, initialCapacity: 8)
        }
        let index = try system.actor(VectorIndexActor.self, key: "bad-input")
        try await index.upsert(ids: [1, 2], vectors: [1, 0, 0, 0, 0, 1, 0, 0])
        let query: [Float] = [1, 0, 0, 0]
        for k in [0, -1, Int.min, 1025, Int.max] {
            #expect(
                await bridgeError { try await index.query(query, k: k) }
                    == .invalidArgument(name: "k", value: String(k), limit: "1...1024"))
        }
        for q in [[], [Float](repeating: 1, count: 3), [Float](repeating: 1, count: 5)] {
            expectNames(
                await bridgeError { try await index.query(q, k: 1) }, argument: "queries.count", value: String(q.count))
        }
        for (ids, count) in [([3], 3), ([3, 4], 4), ([], 1), ([5], 0)] {
            expectNames(
                await bridgeError { try await index.upsert(ids: ids, vectors: [Float](repeating: 1, count: count)) },
                argument: "vectors.count")
        }
        #expect(try await index.delete(ids: [Int.min, -1, 999]) == 0)  // unknown ids are ignored
        #expect(try await index.query(query, k: 5) == [[VectorHit(id: 1, score: 1), VectorHit(id: 2, score: 0)]])

        // Dims out of range fail at activation, naming dim; the next call tries again and fails the same way.
        let zeroSystem = try EmbeddedActorSystem(bridge: bridge, storage: InMemoryActorStorage())
        try zeroSystem.register(VectorIndexActor.self, as: "zero-dim") { VectorIndexActor(actorSystem: $0, dim: 0) }
        let zero = try zeroSystem.actor(VectorIndexActor.self, key: "z")
        for _ in 0..<2 {
            #expect(
                await bridgeError { try await zero.vectorCount() }
                    == .invalidArgument(name: "dim", value: "0", limit: "1...65536"))
        }

        // Unknown and wrongly typed actors.
        let other = try EmbeddedActorSystem(bridge: bridge, storage: InMemoryActorStorage())
        guard case .notFound = bridgeError({ try other.actor(VectorIndexActor.self, key: "x") }) else {
            Issue.record("expected notFound"); return
        }
        guard
            case .notFound = bridgeError({
                try VectorIndexActor.resolve(id: GPUActorID(type: "nobody", key: "x"), using: system)
            })
        else {
            Issue.record("expected notFound"); return
        }
        expectNames(
            bridgeError {
                try system.register(VectorIndexActor.self, as: "index") { VectorIndexActor(actorSystem: $0, dim: 4) }
            }, argument: "name")

        // Batch actor: a bad request in a batch fails the batch with the caller's error; the actor stays usable.
        typealias Adder = BatchActor<FloatPair, [Float]>
        try system.register(Adder.self, as: "add") {
            Adder(actorSystem: $0, operation: ActorOperations.vectorAdd, maxInFlight: 0)
        }
        let adder = try system.actor(Adder.self, key: "a")
        #expect(
            await bridgeError { try await adder.run([FloatPair([1], [2]), FloatPair([1, 2], [3])]) }
                == .sizeMismatch(name: "b.count", expected: 2, actual: 1))
        #expect(try await adder.run([FloatPair([1], [2])]) == [[3]])
        #expect(try await adder.run([]) == [])
        try await system.deactivate(index.id)
        await baselines.check()
    }

    /// The built `gpubridge` executable (`CLIBinary`).
    static let cli = CLIBinary.path

    // Needs the gpubridge executable built beside the tests (always the case with `swift build --build-tests`).
    @Test(
        "CLI flags: each command's validate() names the flag, the value and the range, and exits with a usage error",
        .enabled(if: cli != nil, "the gpubridge executable was not built beside the tests"))
    func cliFlags() throws {
        let cases: [([String], String)] = [
            (["run", "vector-add", "--size", "0"], "--size 0"),
            (["run", "vector-add", "--size=-5"], "--size -5"),
            (["run", "vector-add", "--size", "2147483648"], "--size 2147483648"),
            (["run", "vector-add", "--size", "99999999999999999999"], "--size"),
            (["run", "vector-add", "--backend", "tpu"], "--backend 'tpu'"),
            (["run", "vector-add", "--type", "float16"], "--type 'float16'"),
            (["run", "", "--size", "1"], "unknown kernel ''"),
            (["run", "no-such-kernel"], "unknown kernel 'no-such-kernel'"),
            (["selftest", "--size", "0"], "--size 0"),
            (["bench", "stream", "--repeat", "0"], "--repeat 0"),
            (["bench", "stream", "--size", "10"], "--size 10"),
            (["bench", "nothing"], "unknown suite 'nothing'"),
            (["devices", "--no-such-flag"], "--no-such-flag"),
            (["node"], "node traffic needs --tls-cert, --tls-key and --tls-ca"),
            (["node", "--plaintext", "--listen", "127.0.0.1:99999"], "invalid --listen 127.0.0.1:99999"),
            (["node", "--plaintext", "--listen", "nohost"], "invalid --listen nohost"),
            (["node", "--plaintext", "--tls-cert", "a.pem"], "invalid --plaintext with TLS files"),
            (["node", "--plaintext", "--devices", "tpu"], "invalid --devices tpu"),
            (["node", "--plaintext", "--vector-dim", "0"], "invalid --vector-dim 0"),
            (["node", "--plaintext", "--round-interval-ms", "1"], "roundInterval"),
            (["node", "--plaintext", "--lease-ms", "2000"], "leaseDuration"),
            (
                ["node", "--tls-cert", "/no/cert.pem", "--tls-key", "/no/key.pem", "--tls-ca", "/no/ca.pem"],
                "tls certificate"
            ),
            (
                ["node", "--plaintext", "--metrics-file", "/no/such/folder/m.prom"],
                "invalid --metrics-file /no/such/folder/m.prom"
            ),
            (["node", "--plaintext", "--database-url", "mysql://u@h/db"], "invalid --database-url"),
            (["node", "--config", "/no/such/config.json"], "invalid --config /no/such/config.json"),
            (["certs", "--out", "/tmp/gpubridge-unused-certs", "--days", "0"], "invalid --days 0"),
            (["call", "echo", "k", "nope"], "unknown method 'nope' of echo"),
            (["call", "teapot", "k", "echo"], "unknown actor 'teapot'"),
            (["call", "vector-index", "k", "query-random", "--k", "0"], "invalid --k 0"),
            (["call", "vector-index", "k", "upsert-random", "--rows", "100001"], "invalid --rows 100001"),
            (["call", "echo", "k", "echo", "--plaintext"], "call needs the cluster's --database-url"),
            (
                ["call", "echo", "k", "echo", "--database-url", "postgres://u@127.0.0.1:1/db"],
                "node traffic needs --tls-cert"
            ),
        ]
        for (arguments, expected) in cases {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: Self.cli!)
            process.arguments = arguments
            let errors = Pipe(), output = Pipe()
            process.standardError = errors
            process.standardOutput = output
            try process.run()
            let text = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            _ = output.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            #expect(process.terminationStatus == 64, "\(arguments): exit \(process.terminationStatus)")
            #expect(text.contains(expected), "\(arguments): \(text)")
        }
    }
}
