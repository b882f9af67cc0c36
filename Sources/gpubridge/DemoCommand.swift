import ArgumentParser
import Foundation
import GPUBridge

struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "A showcase on the best device available: kernels, views, pool and cache, then GPU actors.",
        discussion: """
            Part 1 runs the reference VectorAdd, the same kernel on views, and shows the pool and cache. Part 2 runs \
            a resident vector index actor (--vectors x --dim float32 in device memory): bulk load, concurrent top-k \
            queries, deactivation to a SQLite file, reactivation and the same queries again, and an actor call \
            measured against the same request made directly. Part 3 runs a cluster of three nodes in this process on \
            loopback (gRPC with mutual TLS, in-memory membership): vector indexes placed by capacity, one node halting \
            as if it crashed, found Dead when its lease ends, and its indexes reactivated on the others from their \
            snapshots.
            """
    )

    @Option(name: .long, help: "Elements in the vector-add part.")
    var size: Int = 10_000_000

    @Option(name: .long, help: "Vectors in the resident vector index.")
    var vectors: Int = 100_000

    @Option(name: .long, help: "Dimensions of each indexed vector.")
    var dim: Int = 384

    @Flag(name: .long, help: "Print JSON instead of text.")
    var json = false

    func validate() throws {
        guard size >= 1024, size <= Int(Int32.max) else {
            throw ValidationError("invalid --size \(size); expected 1024...\(Int32.max)")
        }
        guard vectors >= 1, vectors <= 10_000_000 else {
            throw ValidationError("invalid --vectors \(vectors); expected 1...10000000")
        }
        guard dim >= 1, dim <= 4096 else { throw ValidationError("invalid --dim \(dim); expected 1...4096") }
    }

    struct DemoJSON: Encodable {
        var device: String
        var vectorAdd: [String: Double]
        var vectorAddVerified: Bool
        /// The launch on views wrote 2·a inside the view and nothing outside it.
        var viewsVerified: Bool
        var viewLaunchAllocations: Int
        var viewLaunchCopies: Int
        var pool: BufferPool.Statistics
        var actors: ActorDemoReport
        var cluster: ClusterDemoReport
    }

    func run() async throws {
        let json = self.json
        let say: (String) -> Void = { if !json { print($0) } }
        let clock = ContinuousClock()
        var t = clock.now
        let (reports, devices, _) = Backends.discover()
        say("GPUBridge \(GPUBridgeVersion.string) — discovered \(devices.count) device(s) in \((clock.now - t).short)")
        for report in reports {
            let state =
                report.isAvailable
                ? "\(report.devices.count) device(s)" : "unavailable: \(report.unavailableReason ?? "no device")"
            say("  \(report.backend): \(state)")
        }
        let device = try BackendChoice.auto.select(from: devices, reports: reports)[0]
        say(
            "\nUsing \(device.id): \(device.info.name), \(formatBytes(device.info.totalMemory)), \(device.info.computeUnits) compute units"
        )

        // 1. The reference VectorAdd, end to end and verified.
        let run = try await VectorAddRun.run(Float.self, count: size, on: device, verify: true)
        let p = run.phases
        let outcome =
            run.mismatches == 0
            ? "correct"
            : run.mismatches.map { "VERIFY FAILED: \($0) mismatches" } ?? "VERIFY FAILED: not checked"
        say("\n1. vector-add of \(size) float32 (c = a + b), verified against the host: \(outcome)")
        say(
            "   allocate \(p.allocate.short) · copy in \(p.copyIn.short) · compile \(p.compile.short) · launch \(p.launch.short) · copy out \(p.copyOut.short)"
        )
        if let k = run.kernelTime {
            let gbps = Double(3 * 4 * size) / (Double(k.nanoseconds) + 1)  // bytes per ns = GB/s
            say("   kernel on the device clock: \(k.short) (\(Int(gbps.rounded())) GB/s counted as 2 reads + 1 write)")
        }

        // 2. Views: the same kernel over the middle half of the buffers, no copies.
        let language = ReferenceKernels.language(for: device)
        let kernel = try device.compile(ReferenceKernels.vectorAdd(Float.self, language: language))
        let align = max(1, device.info.capabilities.viewOffsetAlignment / 4)
        let offset = (size / 4) / align * align
        let half = size / 2
        let a = try device.makeBuffer(copying: (0..<size).map { Float($0 % 1000) })
        let c = try device.makeBuffer(of: Float.self, count: size)
        try await c.fill(0)
        let before = device.counters.snapshot
        t = clock.now
        try await device.launch(
            kernel, .covering(half),
            arguments: [
                .buffer(try a.view(offset: offset, count: half)), .buffer(try a.view(offset: offset, count: half)),
                .buffer(try c.view(offset: offset, count: half)), .int32(Int32(half)),
            ])
        let elapsed = clock.now - t
        let after = device.counters.snapshot
        let sample = try c.toArray(offset: offset, count: 4)
        let outside = try c.toArray(offset: 0, count: 4)
        let whole = try c.toArray()
        let viewsVerified = whole.indices.allSatisfy { i in
            whole[i] == ((offset..<offset + half).contains(i) ? 2 * Float(i % 1000) : 0)
        }
        say("\n2. the same kernel on views [\(offset) ..< \(offset + half)]: \(elapsed.short)")
        say(
            "   c[\(offset)...] = \(sample) (2·a), outside the view still \(outside): "
                + (viewsVerified
                    ? "all \(size) elements checked"
                    : "VERIFY FAILED: c differs from 2·a inside the view or 0 outside it"))
        let newObjects = after.allocations - before.allocations
        say(
            "   bytes copied during the launch: \(after.bytesCopied - before.bytesCopied); new device objects: \(newObjects)"
                + (newObjects > 0 ? " (OpenCL sub-buffers for the views, made once per view region and cached)" : ""))

        // 3. Pool and cache.
        let stats = device.pool.statistics
        _ = try device.compile(ReferenceKernels.vectorAdd(Float.self, language: language))
        let cache = device.cache.statistics
        say(
            "\n3. buffer pool: \(formatBytes(stats.bytesInUse)) in use, \(formatBytes(stats.bytesCached)) cached, peak \(formatBytes(stats.peakBytesInUse)), \(stats.hits) hits / \(stats.misses) misses"
        )
        if language == .swift {
            say("   kernel cache: not used — CPU kernels are Swift functions compiled with the package")
        } else {
            say(
                "   kernel cache: \(cache.loadedHits) loaded hits, \(cache.memoryHits) memory hits, \(cache.diskHits) disk hits, \(cache.misses) compiles"
            )
        }

        // 4. GPU actors: a resident vector index, placed by the broker, persisted in SQLite.
        say("\n4. GPU actors")
        let bridge = try Bridge(backends: reports.flatMap(\.devices), reports: reports)
        let actors = try await runActorDemo(bridge: bridge, vectors: vectors, dim: dim, log: say)

        // 5. A cluster in this process: placement, a node dying, reactivation from snapshots.
        say("\n5. A cluster of GPU actor nodes")
        let cluster = try await runClusterDemo(dim: dim, log: say)
        say(
            "\nDone. `gpubridge devices` lists every backend; `gpubridge selftest` checks each device; `gpubridge bench` measures."
        )
        if json {
            try printJSON(
                DemoJSON(
                    device: device.id.description,
                    vectorAdd: [
                        "allocate": p.allocate.milliseconds, "copyIn": p.copyIn.milliseconds,
                        "compile": p.compile.milliseconds,
                        "launch": p.launch.milliseconds, "copyOut": p.copyOut.milliseconds,
                    ],
                    vectorAddVerified: run.mismatches == 0,
                    viewsVerified: viewsVerified,
                    viewLaunchAllocations: after.allocations - before.allocations,
                    viewLaunchCopies: after.copies - before.copies,
                    pool: stats, actors: actors, cluster: cluster))
        }
        // Every part's check gates the exit status: the vector add and the views against the host, the actors' answers
        // after reactivation and their vector add, the cluster against a single process and against its answers
        // before the node died.
        let checks: [(String, Bool)] = [
            ("vector-add", run.mismatches == 0), ("views", viewsVerified),
            ("actor answers after reactivation", actors.identicalAnswersAfterReactivation),
            ("actor vector add", actors.vectorAddVerified), ("cluster answers", cluster.answersEqualSingleProcess),
            ("cluster reactivation from snapshots", cluster.reactivatedFromSnapshot),
        ]
        let failed = checks.filter { !$0.1 }.map(\.0)
        if !failed.isEmpty {
            FileHandle.standardError.write(Data("demo: checks failed: \(failed.joined(separator: ", "))\n".utf8))
            throw ExitCode(1)
        }
    }
}
