import GPUBridge

/// The benchmark suites. Every figure is a median over `repeats` samples after one warm-up; results are verified
/// where there is a result to verify.
struct Suites {
    let repeats: Int
    let size: Int?
    let progress = Progress()

    // MARK: stream

    func stream(_ device: Device) async throws -> [Figure] {
        var figures: [Figure] = []
        let n = size ?? 20_000_000
        figures += try await stream(Float.self, n, device)
        if device.info.capabilities.float64 { figures += try await stream(Double.self, n, device) }
        return figures
    }

    private func stream<T: StreamElement>(_: T.Type, _ n: Int, _ device: Device) async throws -> [Figure] {
        let t = T.kernelTypeName
        let bytes = MemoryLayout<T>.stride
        let a = try device.makeBuffer(copying: [T](repeating: 1, count: n))
        let b = try device.makeBuffer(copying: [T](repeating: 2, count: n))
        let c = try device.makeBuffer(copying: [T](repeating: 0, count: n))
        let launch = Launch.covering(n, groupSize: min(256, device.info.maxGroupItems))
        var figures: [Figure] = []
        func kernel(_ name: String) throws -> Kernel {
            let (source, options) = try StreamKernels.source(name, T.self, for: device)
            return try device.compile(source, options: options)
        }
        func gbps(_ moved: Int) -> (Double) -> Double { { Double(moved) / $0 / 1e9 } }
        let s: T = 3

        progress.say("stream copy \(t) on \(device.id)")
        let copy = try kernel("copy")
        var samples = try await sample(repeats: repeats) {
            try await device.launch(copy, launch, arguments: [.buffer(a), .buffer(c), .int32(Int32(n))])
        }
        var ok = try c.toArray(offset: n - 1, count: 1)[0] == 1 && c.toArray(offset: 0, count: 1)[0] == 1
        figures.append(
            figure(
                "stream", "copy \(t)", device: device, unit: "GB/s", size: n, sizeUnit: "elements", samples: samples,
                verified: ok, rate: gbps(2 * n * bytes)))

        progress.say("stream mul \(t) on \(device.id)")
        let mul = try kernel("mul")
        samples = try await sample(repeats: repeats) {
            try await device.launch(mul, launch, arguments: [.buffer(c), .buffer(b), T.argument(s), .int32(Int32(n))])
        }
        ok = try b.toArray(offset: n / 2, count: 1)[0] == 3
        figures.append(
            figure(
                "stream", "mul \(t)", device: device, unit: "GB/s", size: n, sizeUnit: "elements", samples: samples,
                verified: ok, rate: gbps(2 * n * bytes)))

        progress.say("stream add \(t) on \(device.id)")
        let add = try kernel("add")
        samples = try await sample(repeats: repeats) {
            try await device.launch(add, launch, arguments: [.buffer(a), .buffer(b), .buffer(c), .int32(Int32(n))])
        }
        ok = try c.toArray(offset: n - 1, count: 1)[0] == 4
        figures.append(
            figure(
                "stream", "add \(t)", device: device, unit: "GB/s", size: n, sizeUnit: "elements", samples: samples,
                verified: ok, rate: gbps(3 * n * bytes)))

        if device.id.backend == .cpu, T.self == Float.self {
            progress.say("stream add float, the README's kernel, on \(device.id)")
            let readme = try device.compile(StreamKernels.readmeAdd)
            try await c.raw.enqueueFill(pattern: [0]).wait()
            samples = try await sample(repeats: repeats) {
                try await device.launch(readme, launch, arguments: [.buffer(a), .buffer(b), .buffer(c)])
            }
            ok = try c.toArray(offset: n - 1, count: 1)[0] == 4 && c.toArray(offset: 0, count: 1)[0] == 4
            figures.append(
                figure(
                    "stream", "add float, README kernel", device: device, unit: "GB/s", size: n, sizeUnit: "elements",
                    samples: samples, verified: ok, note: "for i in context.items where i < c.count",
                    rate: gbps(3 * n * bytes)))
        }

        progress.say("stream triad \(t) on \(device.id)")
        let triad = try kernel("triad")
        samples = try await sample(repeats: repeats) {
            try await device.launch(
                triad, launch, arguments: [.buffer(b), .buffer(c), .buffer(a), T.argument(s), .int32(Int32(n))])
        }
        ok = try a.toArray(offset: n - 1, count: 1)[0] == 15  // 3 + 3 * 4
        figures.append(
            figure(
                "stream", "triad \(t)", device: device, unit: "GB/s", size: n, sizeUnit: "elements", samples: samples,
                verified: ok, rate: gbps(3 * n * bytes)))

        progress.say("stream dot \(t) on \(device.id)")
        let dot = try kernel("dot")
        let groups = min(Operations.reductionGroupLimit(device), (n + 255) / 256)
        let partial = try device.makeBuffer(of: T.self, count: groups)
        var total: T = 0
        samples = try await sample(repeats: repeats) {
            try await device.launch(
                dot, Launch(groups: Extent3(groups), groupSize: Extent3(256)),
                arguments: [.buffer(b), .buffer(c), .buffer(partial), .int32(Int32(n))])
            total = try partial.toArray().reduce(0, +)
        }
        let expected = Double(n) * 12  // b = 3, c = 4
        ok = abs(Double(total) - expected) <= 1e-4 * expected
        figures.append(
            figure(
                "stream", "dot \(t)", device: device, unit: "GB/s", size: n, sizeUnit: "elements", samples: samples,
                verified: ok, note: "includes reading back \(groups) partial sums", rate: gbps(2 * n * bytes)))
        return figures
    }

    // MARK: launch

    func launch(_ device: Device) async throws -> [Figure] {
        let source: KernelSource
        let tiny = """
            GB_KERNEL tiny(GB_GLOBAL int* x) { if (GB_GLOBAL_ID(0) == 0) x[0] += 1; }
            """
        switch device.id.backend {
        case .cpu:
            source = KernelSource(name: "tiny") { context in
                let x = try context.buffer(0, as: Int32.self)
                if context.groups.contains(0) { x[0] += 1 }
            }
        case .cuda, .opencl:
            source = try PortableKernel(name: "tiny", text: tiny, entryPoint: "tiny").source(
                for: device.id.backend == .cuda ? .cuda : .openCLC)
        }
        let kernel = try device.compile(source)
        let x = try device.makeBuffer(copying: [Int32(0)])
        let shape = Launch(groups: Extent3(1), groupSize: Extent3(32))
        progress.say("launch+wait on \(device.id)")
        let samples = try await sample(repeats: max(repeats, 200)) {
            try await device.launch(kernel, shape, arguments: [.buffer(x)])
        }
        var figures = [
            figure("launch", "launch+wait", device: device, unit: "µs", size: 1, sizeUnit: "launches", samples: samples)
            { $0 * 1e6 }
        ]
        progress.say("queued launches on \(device.id)")
        let batch = 1000
        let queued = try await sample(repeats: max(3, repeats / 2)) {
            var last: Completion?
            for _ in 0..<batch { last = try device.enqueue(kernel, shape, arguments: [.buffer(x)]) }
            try await last?.wait()
            try await device.synchronize()
        }
        figures.append(
            figure(
                "launch", "queued launches", device: device, unit: "launches/s", size: batch, sizeUnit: "launches",
                samples: queued
            ) { Double(batch) / $0 })
        let count = try x.toArray()[0]
        figures[0].verified = count > 0
        figures[1].verified = count > 0
        return figures
    }

    // MARK: alloc

    func alloc(_ device: Device) async throws -> [Figure] {
        var figures: [Figure] = []
        let sizes = [256, 4096, 65536, 1 << 20, 16 << 20, 64 << 20]
        let pool = try BufferPool(backend: device.backend)
        for bytes in sizes {
            let iterations = bytes >= 16 << 20 ? 20 : 2000
            progress.say("alloc \(bytes) B on \(device.id)")
            let pooled = try await sample(repeats: repeats) {
                for _ in 0..<iterations { try pool.release(pool.allocate(byteCount: bytes)) }
            }
            let raw = try await sample(repeats: max(3, repeats / 2)) {
                for _ in 0..<min(iterations, 200) {
                    let handle = try device.backend.allocate(byteCount: bytes)
                    device.backend.free(handle: handle, byteCount: bytes)
                }
            }
            let p = figure(
                "alloc", "pooled allocate+release \(bytes) B", device: device, unit: "ns", size: bytes,
                sizeUnit: "bytes", samples: pooled
            ) { $0 / Double(iterations) * 1e9 }
            let r = figure(
                "alloc", "raw allocate+free \(bytes) B", device: device, unit: "ns", size: bytes, sizeUnit: "bytes",
                samples: raw
            ) { $0 / Double(min(iterations, 200)) * 1e9 }
            figures += [p, r, ratio(r, over: p, name: "raw / pooled \(bytes) B")]
        }
        pool.trim()
        return figures
    }

    // MARK: transfer

    func transfer(_ device: Device) async throws -> [Figure] {
        var figures: [Figure] = []
        let limit = size ?? (256 << 20)
        for bytes in [4096, 65536, 1 << 20, 16 << 20, 256 << 20] where bytes <= limit {
            let count = bytes / 4
            let host = [Float](repeating: 1.5, count: count)
            let buffer = try device.makeBuffer(of: Float.self, count: count)
            var back = [Float](repeating: 0, count: count)
            let gbps: (Double) -> Double = { Double(bytes) / $0 / 1e9 }
            progress.say("transfer \(bytes) B on \(device.id)")
            let h2d = try await sample(repeats: repeats) { try buffer.copy(from: host) }
            let d2h = try await sample(repeats: repeats) { try buffer.copy(to: &back) }
            figures.append(
                figure(
                    "transfer", "host->device pageable \(bytes) B", device: device, unit: "GB/s", size: bytes,
                    sizeUnit: "bytes", samples: h2d, verified: back == host, rate: gbps))
            figures.append(
                figure(
                    "transfer", "device->host pageable \(bytes) B", device: device, unit: "GB/s", size: bytes,
                    sizeUnit: "bytes", samples: d2h, verified: back == host, rate: gbps))
            let pinned = try device.makeHostBuffer(byteCount: bytes, pinned: true)
            try pinned.write(host)
            let ph2d = try await sample(repeats: repeats) { try await buffer.copy(from: pinned) }
            let pd2h = try await sample(repeats: repeats) { try await buffer.copy(to: pinned) }
            let ok = try pinned.read(Float.self, count: count) == host
            let kind = pinned.isPinned ? "pinned" : "host buffer (not pinned)"
            figures.append(
                figure(
                    "transfer", "host->device \(kind) \(bytes) B", device: device, unit: "GB/s", size: bytes,
                    sizeUnit: "bytes", samples: ph2d, verified: ok, rate: gbps))
            figures.append(
                figure(
                    "transfer", "device->host \(kind) \(bytes) B", device: device, unit: "GB/s", size: bytes,
                    sizeUnit: "bytes", samples: pd2h, verified: ok, rate: gbps))
        }
        return figures
    }

    // MARK: compile

    func compile(_ device: Device) async throws -> [Figure] {
        guard device.id.backend != .cpu else {
            return [
                Figure(
                    suite: "compile", name: "compile", device: device.id.description, deviceName: device.info.name,
                    unit: "-",
                    median: .nan, min: .nan, max: .nan, samples: 0, size: 0, sizeUnit: "-", verified: nil,
                    note: "not applicable: CPU kernels are Swift functions compiled with the package")
            ]
        }
        let definition = try KernelCatalog().definition("matmul")
        let folder = "/tmp/gpubridge-bench-cache-\(getpid())"
        var cold: [Duration] = [], memory: [Duration] = [], disk: [Duration] = []
        let clock = ContinuousClock()
        for round in 0..<max(3, repeats / 2) {
            progress.say("compile round \(round + 1) on \(device.id)")
            // A unique define makes every round's first compile a real miss.
            let options = CompileOptions(defines: ["GB_BENCH_ROUND": "\(round)_\(getpid())_\(clock.now.hashValue)"])
            let source = try definition.source(for: device.id.backend)
            let fresh = try Device(backend: device.backend, cache: KernelCache(directory: folder))
            var t = clock.now
            _ = try fresh.compile(source, options: options)
            cold.append(clock.now - t)
            let sameCache = try Device(backend: device.backend, cache: fresh.cache)
            t = clock.now
            _ = try sameCache.compile(source, options: options)
            memory.append(clock.now - t)
            let fromDisk = try Device(backend: device.backend, cache: KernelCache(directory: folder))
            t = clock.now
            _ = try fromDisk.compile(source, options: options)
            disk.append(clock.now - t)
        }
        let ms: (Double) -> Double = { $0 * 1e3 }
        return [
            figure(
                "compile", "cold compile (matmul)", device: device, unit: "ms", size: 1, sizeUnit: "kernels",
                samples: cold, rate: ms),
            figure(
                "compile", "memory-cache hit (binary load)", device: device, unit: "ms", size: 1, sizeUnit: "kernels",
                samples: memory, rate: ms),
            figure(
                "compile", "disk-cache hit (read, verify, load)", device: device, unit: "ms", size: 1,
                sizeUnit: "kernels", samples: disk, rate: ms),
        ]
    }

    // MARK: kernels

    func kernels(_ device: Device) async throws -> [Figure] {
        var figures: [Figure] = []
        let n = size ?? 4_000_000
        for name in KernelRunner.names {
            let sizes: [Int]
            switch name {
            case "matmul": sizes = [128, 512]
            case "softmax": sizes = [1024, 16384]
            case "topk": sizes = [10_000, 100_000]
            default: sizes = [n / 16, n]
            }
            for s in sizes {
                progress.say("kernel \(name) size \(s) on \(device.id)")
                // The first run is checked; the timed repeats follow on the same inputs (numpy's figures repeat
                // an operation on the same arrays too).
                let outcome = try await KernelRunner.run(name, size: s, on: device, verify: true, repeats: repeats)
                let verified = outcome.verified, durations = outcome.repeats
                // Work per run: bytes each kernel must read and write, or floating-point operations.
                let (unit, work): (String, Double) =
                    switch name {
                    case "vector-add", "saxpy": ("GB/s", 12 * Double(s))
                    case "scale", "dot": ("GB/s", 8 * Double(s))
                    case "sum", "histogram": ("GB/s", 4 * Double(s))
                    case "softmax": ("GB/s", 8 * 64 * Double(s))
                    case "matmul": ("GFLOP/s", 2 * Double(s) * Double(s) * Double(s))
                    // topk: 8 queries x s rows x 64 dims, 3 multiply-adds each
                    default: ("GFLOP/s", 6 * 8 * 64 * Double(s))
                    }
                figures.append(
                    figure(
                        "kernels", "\(name) size \(s)", device: device, unit: unit, size: s, sizeUnit: "size",
                        samples: durations,
                        verified: verified, note: "end to end: upload, launch, download"
                    ) { work / $0 / 1e9 })
            }
        }
        return figures + (try await residentKernels(device))
    }

    // MARK: batching

    func batching(_ device: Device) async throws -> [Figure] {
        var options = BridgeOptions()
        options.cacheDirectory = nil
        options.backendOrder = [device.id.backend]
        options.maxConcurrentLaunchesPerDevice = 8
        let bridge = try Bridge(options: options, backends: [device.backend])
        let requests = 10_000, width = 16
        func request(_ i: Int) -> Operations.VectorPair {
            Operations.VectorPair((0..<width).map { Float(i + $0) }, [Float](repeating: 1, count: width))
        }
        progress.say("batching: one launch per request on \(device.id)")
        let single = try await sample(repeats: max(1, repeats / 5)) {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for i in 0..<requests { group.addTask { _ = try await bridge.run(Operations.vectorAdd, request(i)) } }
                try await group.waitForAll()
            }
        }
        progress.say("batching: micro-batched on \(device.id)")
        let batcher = try bridge.vectorAddBatcher()
        var wrong = 0
        let batched = try await sample(repeats: max(1, repeats / 5)) {
            wrong = try await withThrowingTaskGroup(of: Int.self) { group in
                for i in 0..<requests {
                    group.addTask { try await batcher.submit(request(i)) == request(i).a.map { $0 + 1 } ? 0 : 1 }
                }
                return try await group.reduce(0, +)
            }
        }
        let perSecond: (Double) -> Double = { Double(requests) / $0 }
        let one = figure(
            "batching", "one launch per request", device: device, unit: "requests/s", size: requests,
            sizeUnit: "requests", samples: single, rate: perSecond)
        let many = figure(
            "batching", "micro-batched", device: device, unit: "requests/s", size: requests, sizeUnit: "requests",
            samples: batched,
            verified: wrong == 0, note: "\(await batcher.batches) batches for \(await batcher.requests) requests",
            rate: perSecond)
        return [one, many, ratio(many, over: one, name: "batched / one per request")]
    }
}

import Glibc
