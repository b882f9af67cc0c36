import ArgumentParser
import GPUBridge

struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "A short showcase on the best device available: discovery, buffers, views, kernels, pool and cache."
    )

    @Option(name: .long, help: "Elements in the demo's vectors.")
    var size: Int = 10_000_000

    func validate() throws {
        guard size >= 1024, size <= Int(Int32.max) else { throw ValidationError("invalid --size \(size); expected 1024...\(Int32.max)") }
    }

    func run() async throws {
        let clock = ContinuousClock()
        var t = clock.now
        let (reports, devices, _) = Backends.discover()
        print("GPUBridge \(GPUBridgeVersion.string) — discovered \(devices.count) device(s) in \((clock.now - t).short)")
        for report in reports {
            let state = report.isAvailable ? "\(report.devices.count) device(s)" : "unavailable: \(report.unavailableReason ?? "no device")"
            print("  \(report.backend): \(state)")
        }
        let device = try BackendChoice.auto.select(from: devices, reports: reports)[0]
        print("\nUsing \(device.id): \(device.info.name), \(formatBytes(device.info.totalMemory)), \(device.info.computeUnits) compute units")

        // 1. The reference VectorAdd, end to end and verified.
        let run = try await VectorAddRun.run(Float.self, count: size, on: device, verify: true)
        let p = run.phases
        print("\n1. vector-add of \(size) float32 (c = a + b), verified against the host: \(run.mismatches == 0 ? "correct" : "\(run.mismatches ?? -1) mismatches")")
        print("   allocate \(p.allocate.short) · copy in \(p.copyIn.short) · compile \(p.compile.short) · launch \(p.launch.short) · copy out \(p.copyOut.short)")
        if let k = run.kernelTime {
            let gbps = Double(3 * 4 * size) / (Double(k.nanoseconds) + 1) // bytes per ns = GB/s
            print("   kernel on the device clock: \(k.short) (\(Int(gbps.rounded())) GB/s counted as 2 reads + 1 write)")
        }

        // 2. Views: the same kernel over the middle half of the buffers, no copies.
        let language = ReferenceKernels.language(for: device)
        let kernel = try device.compile(ReferenceKernels.vectorAdd(Float.self, language: language))
        let align = max(1, device.info.capabilities.viewOffsetAlignment / 4)
        let offset = (size / 4) / align * align
        let half = size / 2
        let a = try device.makeBuffer(copying: (0 ..< size).map { Float($0 % 1000) })
        let c = try device.makeBuffer(of: Float.self, count: size)
        try await c.fill(0)
        let before = device.counters.snapshot
        t = clock.now
        try await device.launch(kernel, .covering(half), arguments: [
            .buffer(try a.view(offset: offset, count: half)), .buffer(try a.view(offset: offset, count: half)),
            .buffer(try c.view(offset: offset, count: half)), .int32(Int32(half)),
        ])
        let elapsed = clock.now - t
        let after = device.counters.snapshot
        let sample = try c.toArray(offset: offset, count: 4)
        let outside = try c.toArray(offset: 0, count: 4)
        print("\n2. the same kernel on views [\(offset) ..< \(offset + half)]: \(elapsed.short)")
        print("   c[\(offset)...] = \(sample) (2·a), outside the view still \(outside)")
        print("   device allocations during the launch: \(after.allocations - before.allocations), copies: \(after.copies - before.copies)")

        // 3. Pool and cache.
        let stats = device.pool.statistics
        _ = try device.compile(ReferenceKernels.vectorAdd(Float.self, language: language))
        let cache = device.cache.statistics
        print("\n3. buffer pool: \(formatBytes(stats.bytesInUse)) in use, \(formatBytes(stats.bytesCached)) cached, peak \(formatBytes(stats.peakBytesInUse)), \(stats.hits) hits / \(stats.misses) misses")
        if language == .swift {
            print("   kernel cache: not used — CPU kernels are Swift functions compiled with the package")
        } else {
            print("   kernel cache: \(cache.loadedHits) loaded hits, \(cache.memoryHits) memory hits, \(cache.diskHits) disk hits, \(cache.misses) compiles")
        }
        print("\nDone. `gpubridge devices` lists every backend; `gpubridge selftest` checks each device.")
    }
}
