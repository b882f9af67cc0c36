import Glibc
import GPUBridge
import GPUBridgeCUDA
import Testing

/// End-to-end tests on a real CUDA device. They need `libcuda.so.1`, a GPU and NVRTC; without them (CI) they are
/// skipped with the reason shown.
@Suite("CUDA device", .enabled(if: CUDATestSupport.hasDevice, "needs libcuda.so.1, a CUDA device and NVRTC"))
struct CUDADeviceTests {
    var backend: CUDABackend { CUDATestSupport.backend! }  // the suite only runs when there is one

    @Test("device attributes come from the driver")
    func attributes() throws {
        let device = try CUDATestSupport.device()
        let info = device.info
        let properties = backend.properties
        #expect(info.id == DeviceID(backend: .cuda, ordinal: 0))
        #expect(info.architecture == "sm_\(properties.computeCapabilityMajor)\(properties.computeCapabilityMinor)")
        #expect(!info.name.isEmpty)
        #expect(info.totalMemory > 1 << 30)
        #expect(info.computeUnits == properties.multiprocessors && info.computeUnits > 0)
        #expect(info.maxGroupItems >= 1024)
        #expect(info.maxGroupSize.count == 3 && info.maxGroupSize[0] >= 1024)
        #expect(info.maxGroups == [Int(Int32.max), 65535, 65535])
        #expect(info.capabilities.sharedMemoryPerGroup >= 48 * 1024)
        #expect(info.capabilities.viewOffsetAlignment == 1)
        #expect(properties.warpSize == 32)
        #expect(properties.unifiedAddressing == true)
        #expect(backend.driverVersion >= 11000)
        let free = try device.freeMemory()
        #expect(free > 0 && free <= info.totalMemory)
        #expect(backend.compilerVersion.hasPrefix("NVRTC "))
    }

    @Test("VectorAdd is exact", arguments: [1000, 100_000_000])
    func vectorAdd(count: Int) async throws {
        let device = try CUDATestSupport.device()
        let run = try await VectorAddRun.run(Float.self, count: count, on: device)
        #expect(run.mismatches == 0)
        #expect(run.kernelTime != nil)
        #expect(device.pool.statistics.bytesInUse == 0, "the run's buffers went back to the pool")
    }

    @Test("Int32 and Double VectorAdd")
    func otherTypes() async throws {
        let device = try CUDATestSupport.device()
        #expect(try await VectorAddRun.run(Int32.self, count: 100_000, on: device).mismatches == 0)
        #expect(try await VectorAddRun.run(Double.self, count: 100_000, on: device).mismatches == 0)
    }

    @Test("views are passed as pointer plus offset")
    func views() async throws {
        let device = try CUDATestSupport.device()
        let kernel = try device.compile(ReferenceKernels.vectorAdd(Float.self, language: .cuda))
        let a = try device.makeBuffer(copying: (0..<1000).map(Float.init))
        let b = try device.makeBuffer(copying: [Float](repeating: 0.5, count: 1000))
        let c = try device.makeBuffer(of: Float.self, count: 1000)
        try await c.fill(-1)
        let av = try a.view(offset: 3, count: 500)
        let bv = try b.view(offset: 101, count: 500)
        let cv = try c.view(offset: 7, count: 500)
        #expect(cv.raw.address == c.raw.address + 28)
        try await device.launch(
            kernel, .covering(500, groupSize: 128),
            arguments: [.buffer(av), .buffer(bv), .buffer(cv), .int32(500)])
        let out = try c.toArray()
        #expect(out[0..<7].allSatisfy { $0 == -1 })
        #expect((0..<500).allSatisfy { out[7 + $0] == Float(3 + $0) + 0.5 })
        #expect(out[507...].allSatisfy { $0 == -1 })
        #expect(try cv.toArray(offset: 10, count: 2) == [13.5, 14.5])
    }

    @Test("fills with 1, 2, 4 and 8 byte patterns, aligned and not")
    func fills() async throws {
        let device = try CUDATestSupport.device()
        let raw = try device.makeRawBuffer(byteCount: 256)
        let patterns: [[UInt8]] = [
            [7], [1, 2], [1, 2, 3, 4], [1, 2, 3, 4, 5, 6, 7, 8], [1, 2, 3, 4, 1, 2, 3, 4], [9, 9, 9, 9],
        ]
        for pattern in patterns {
            for start in [0, 1, 2, 4, 6] {
                let length = pattern.count * 16
                try await raw.enqueueFill(pattern: [0]).wait()
                try await raw.enqueueFill(pattern: pattern, offset: start, byteCount: length).wait()
                var bytes = [UInt8](repeating: 0xFF, count: 256)
                try bytes.withUnsafeMutableBytes { try raw.copy(to: $0) }
                let expected = (0..<256).map { index -> UInt8 in
                    index >= start && index < start + length ? pattern[(index - start) % pattern.count] : 0
                }
                #expect(bytes == expected, "pattern \(pattern) at offset \(start)")
            }
        }
        let doubles = try device.makeBuffer(of: Double.self, count: 1001)
        try await doubles.fill(3.25)
        try await doubles.fill(-0.5, offset: 1, count: 999)
        let values = try doubles.toArray()
        #expect(values.first == 3.25 && values.last == 3.25)
        #expect(values[1..<1000].allSatisfy { $0 == -0.5 })
    }

    @Test("device-to-device copies with offsets; overlapping ranges are refused")
    func deviceCopies() async throws {
        let device = try CUDATestSupport.device()
        let source = try device.makeBuffer(copying: (0..<1000).map(Int32.init))
        let destination = try device.makeBuffer(of: Int32.self, count: 1000)
        try await destination.fill(0)
        try await destination.copy(from: source, sourceOffset: 10, toOffset: 20, count: 100)
        let out = try destination.toArray()
        #expect(out[19] == 0 && out[120] == 0)
        #expect((0..<100).allSatisfy { out[20 + $0] == Int32(10 + $0) })
        await #expect(throws: GPUBridgeError.self) {
            try await source.copy(from: source, sourceOffset: 0, toOffset: 10, count: 100)
        }
    }

    @Test("async copies from and to host memory, pinned and pageable, with offsets", arguments: [true, false])
    func hostCopies(pinned: Bool) async throws {
        let device = try CUDATestSupport.device()
        let count = 4096
        let host = try device.makeHostBuffer(byteCount: count * 4, pinned: pinned)
        #expect(host.isPinned == pinned)
        try host.write((0..<count).map(Float.init))
        let buffer = try device.makeBuffer(of: Float.self, count: count)
        try await buffer.fill(0)
        try await buffer.copy(from: host, hostOffset: 5, toOffset: 11, count: 1000)
        let values = try buffer.toArray()
        #expect(values[10] == 0 && values[1011] == 0)
        #expect((0..<1000).allSatisfy { values[11 + $0] == Float(5 + $0) })

        let back = try device.makeHostBuffer(byteCount: count * 4, pinned: pinned)
        try back.write([Float](repeating: -1, count: count))
        try await buffer.copy(to: back, hostOffset: 20, fromOffset: 11, count: 1000)
        let read = try back.read(Float.self, count: count)
        #expect(read[19] == -1 && read[1020] == -1)
        #expect((0..<1000).allSatisfy { read[20 + $0] == Float(5 + $0) })

        // The completion keeps the staging host memory alive after the caller's references are gone.
        let pending = try buffer.enqueueCopy(from: [Float](repeating: 2, count: 64), toOffset: 100)
        try await pending.wait()
        #expect(try buffer.toArray(offset: 100, count: 64).allSatisfy { $0 == 2 })
    }

    @Test("registered host memory is usable for async copies")
    func registeredHostMemory() async throws {
        let device = try CUDATestSupport.device()
        let count = 1 << 16
        let memory = UnsafeMutableRawBufferPointer.allocate(byteCount: count * 4, alignment: 4096)
        defer { memory.deallocate() }
        let floats = memory.bindMemory(to: Float.self)
        for index in 0..<count { floats[index] = Float(index) }
        let registration = try backend.registerHostMemory(memory)
        #expect(registration.allocation.pinned && registration.isRegistered)
        let buffer = try device.makeBuffer(of: Float.self, count: count)
        try await backend.enqueueCopy(from: registration.allocation, offset: 0, owner: registration, to: buffer.region)
            .wait()
        #expect(try buffer.toArray() == (0..<count).map(Float.init))
        for index in 0..<count { floats[index] = 0 }
        try await backend.enqueueCopy(
            from: buffer.region.slice(offset: 400, byteCount: 400), to: registration.allocation,
            offset: 40, owner: registration
        ).wait()
        #expect(floats[9] == 0 && floats[110] == 0)
        #expect((0..<100).allSatisfy { floats[10 + $0] == Float(100 + $0) })
        try registration.unregister()
        #expect(!registration.isRegistered)
    }

    @Test("200 concurrent launches each get their own correct result")
    func concurrentLaunches() async throws {
        let device = try CUDATestSupport.device()
        let kernel = try device.compile(ReferenceKernels.vectorAdd(Float.self, language: .cuda))
        let n = 10_000
        let a = try device.makeBuffer(copying: (0..<n).map(Float.init))
        try await withThrowingTaskGroup(of: Bool.self) { group in
            for k in 0..<200 {
                group.addTask {
                    let b = try device.makeBuffer(copying: [Float](repeating: Float(k), count: n))
                    let c = try device.makeBuffer(of: Float.self, count: n)
                    try await device.launch(
                        kernel, .covering(n), arguments: [.buffer(a), .buffer(b), .buffer(c), .int32(Int32(n))])
                    let out = try c.toArray()
                    return (0..<n).allSatisfy { out[$0] == Float($0) + Float(k) }
                }
            }
            var correct = 0
            for try await ok in group where ok { correct += 1 }
            #expect(correct == 200)
        }
    }

    @Test("synchronize waits for everything enqueued")
    func synchronize() async throws {
        let device = try CUDATestSupport.device()
        let kernel = try device.compile(ReferenceKernels.vectorAdd(Float.self, language: .cuda))
        let n = 1 << 20
        let a = try device.makeBuffer(copying: [Float](repeating: 1, count: n))
        let c = try device.makeBuffer(of: Float.self, count: n)
        var completions: [Completion] = []
        for _ in 0..<50 {
            completions.append(
                try device.enqueue(
                    kernel, .covering(n), arguments: [.buffer(a), .buffer(a), .buffer(c), .int32(Int32(n))]))
        }
        try await device.synchronize()
        #expect(completions.allSatisfy { $0.isComplete })
        #expect(try c.toArray(offset: n - 4, count: 4) == [2, 2, 2, 2])
    }

    @Test("1 000 launches allocate nothing and copy nothing, and report device timings")
    func zeroCopyLaunch() async throws {
        let device = try Device(backend: try CUDABackend.open())  // its own counters, untouched by other tests
        let kernel = try device.compile(ReferenceKernels.vectorAdd(Float.self, language: .cuda))
        let n = 1 << 16
        let a = try device.makeBuffer(copying: [Float](repeating: 1, count: n))
        let c = try device.makeBuffer(copying: [Float](repeating: -1, count: n))  // a sentinel
        let before = device.counters.snapshot
        let poolBefore = device.pool.statistics
        for _ in 0..<999 {
            _ = try device.enqueue(
                kernel, .covering(n), arguments: [.buffer(a), .buffer(a), .buffer(c), .int32(Int32(n))])
        }
        let result = try await device.launch(
            kernel, .covering(n), arguments: [.buffer(a), .buffer(a), .buffer(c), .int32(Int32(n))])
        let after = device.counters.snapshot
        #expect(after.allocations == before.allocations)
        #expect(after.copies == before.copies)
        #expect(after.bytesCopied == before.bytesCopied)
        #expect(after.launches == before.launches + 1000)
        #expect(after.compiles == 1)
        let poolAfter = device.pool.statistics
        #expect(poolAfter.misses == poolBefore.misses && poolAfter.hits == poolBefore.hits)
        #expect(try c.toArray() == [Float](repeating: 2, count: n))
        let timings = try #require(result.timings)
        // CUDA events give the elapsed time between two events, not timestamps: the points stay unmeasured.
        #expect(timings.start == nil && timings.end == nil && timings.queued == nil && timings.submitted == nil)
        #expect(timings.duration > .zero)
        #expect(timings.duration < result.hostDuration + .milliseconds(1))
    }

    @Test("shared memory kernels: dynamic shared memory, past 48 KiB with opt-in, and a 2-D tile transpose")
    func sharedMemory() async throws {
        let device = try CUDATestSupport.device()
        let sum = try device.compile(CUDATestSupport.blockSum)
        let blocks = 64
        let threads = 256
        let input = (0..<blocks * threads).map { Float($0 % 7) }
        let expected = (0..<blocks).map { block in (0..<threads).reduce(Float(0)) { $0 + input[block * threads + $1] } }
        let a = try device.makeBuffer(copying: input)
        let out = try device.makeBuffer(of: Float.self, count: blocks)
        for shared in [threads * 4, 64 * 1024] where shared <= device.info.capabilities.sharedMemoryPerGroup {
            try await out.fill(-1)
            try await device.launch(
                sum, Launch(groups: Extent3(blocks), groupSize: Extent3(threads), sharedMemoryBytes: shared),
                arguments: [.buffer(a), .buffer(out), .int32(Int32(blocks * threads))])
            #expect(try out.toArray() == expected, "\(shared) bytes of dynamic shared memory")
        }
        if backend.driverVersion >= 12040 {
            #expect(sum.program.parameterCount == 3)
        } else {
            #expect(sum.program.parameterCount == nil)
        }

        let transpose = try device.compile(CUDATestSupport.transpose)
        let width = 100
        let height = 70
        let matrix = (0..<width * height).map(Float.init)
        let source = try device.makeBuffer(copying: matrix)
        let target = try device.makeBuffer(of: Float.self, count: width * height)
        try await device.launch(
            transpose, Launch(groups: Extent3((width + 31) / 32, (height + 31) / 32), groupSize: Extent3(32, 32)),
            arguments: [.buffer(source), .buffer(target), .int32(Int32(width)), .int32(Int32(height))])
        let transposed = try target.toArray()
        #expect(
            (0..<height).allSatisfy { y in
                (0..<width).allSatisfy { x in transposed[x * height + y] == matrix[y * width + x] }
            })
    }

    @Test("a compile error carries NVRTC's log; a missing extern \"C\" entry point is named")
    func compileErrors() throws {
        let device = try CUDATestSupport.device()
        do {
            _ = try device.compile(CUDATestSupport.broken)
            Issue.record("broken source compiled")
        } catch {
            guard case let .compilationFailed(kernel, backend, log) = error else {
                Issue.record("unexpected error \(error)")
                return
            }
            #expect(kernel == "broken" && backend == "cuda")
            #expect(log.contains("broken.cu(3)"))
        }
        let mangled = KernelSource(
            name: "mangled", language: .cuda, text: "__global__ void mangled(float* x) { x[threadIdx.x] = 1.0f; }",
            entryPoint: "mangled")
        do {
            _ = try device.compile(mangled)
            Issue.record("found a C++-mangled kernel by its plain name")
        } catch {
            guard case let .notFound(kind, name) = error else {
                Issue.record("unexpected error \(error)")
                return
            }
            #expect(name == "mangled")
            #expect(kind.contains("extern \"C\""))
        }
    }

    @Test("PTX loads, or the driver's refusal of newer PTX is explained")
    func ptxTarget() async throws {
        let device = try CUDATestSupport.device()
        let virtual = "compute_" + device.info.architecture.dropFirst(3)
        do {
            let kernel = try device.compile(
                ReferenceKernels.vectorAdd(Float.self, language: .cuda), options: CompileOptions(target: virtual))
            let a = try device.makeBuffer(copying: [Float](repeating: 1.5, count: 300))
            let c = try device.makeBuffer(of: Float.self, count: 300)
            try await device.launch(
                kernel, .covering(300), arguments: [.buffer(a), .buffer(a), .buffer(c), .int32(300)])
            #expect(try c.toArray() == [Float](repeating: 3, count: 300))
        } catch {
            guard case let .backendFailure(backend, call, code, message) = error else {
                Issue.record("unexpected error \(error)")
                return
            }
            #expect(backend == "cuda" && call == "cuModuleLoadData")
            #expect(code == 222, "CUDA_ERROR_UNSUPPORTED_PTX_VERSION")
            #expect(message.contains("newer than this CUDA"))
        }
    }

    @Test("a request larger than the card is outOfMemory and leaves nothing in use")
    func outOfMemory() throws {
        let device = try CUDATestSupport.device(poolLimit: Int.max / 4)
        let total = device.info.totalMemory
        do {
            _ = try device.makeRawBuffer(byteCount: total * 2)
            Issue.record("allocated twice the card's memory")
        } catch {
            guard case let .outOfMemory(_, requested, _, _, _, detail) = error else {
                Issue.record("unexpected error \(error)")
                return
            }
            #expect(requested == total * 2)
            #expect(detail.contains("CUDA_ERROR_OUT_OF_MEMORY"), "detail: \(detail)")
        }
        #expect(device.pool.statistics.bytesInUse == 0)
        #expect(device.pool.statistics.trimsForSpace >= 1)
        let small = try device.makeRawBuffer(byteCount: 1 << 20)
        #expect(small.byteCount == 1 << 20)

        let capped = try CUDATestSupport.device()
        #expect(throws: GPUBridgeError.self) { _ = try capped.makeRawBuffer(byteCount: total + 1) }
        #expect(capped.pool.statistics.bytesInUse == 0)
    }

    @Test("several streams: round-robin launches and copies, synchronize covers all streams")
    func severalStreams() async throws {
        #expect(throws: GPUBridgeError.self) { _ = try CUDABackend.open(options: CUDABackend.Options(streams: 0)) }
        let device = try Device(backend: try CUDABackend.open(options: CUDABackend.Options(streams: 4)))
        #expect(try await VectorAddRun.run(Float.self, count: 100_000, on: device).mismatches == 0)
        let kernel = try device.compile(ReferenceKernels.vectorAdd(Int32.self, language: .cuda))
        let n = 4096
        let a = try device.makeBuffer(copying: (0..<n).map(Int32.init))
        var outputs: [Buffer<Int32>] = []
        var completions: [Completion] = []
        for _ in 0..<32 {
            let c = try device.makeBuffer(of: Int32.self, count: n)
            outputs.append(c)
            completions.append(
                try device.enqueue(
                    kernel, .covering(n), arguments: [.buffer(a), .buffer(a), .buffer(c), .int32(Int32(n))]))
        }
        try await device.synchronize()
        #expect(completions.allSatisfy { $0.isComplete })
        for c in outputs { #expect(try c.toArray() == (0..<n).map { Int32($0 * 2) }) }
    }

    @Test("static + dynamic shared memory past 48 KiB opts in on the total, not on the dynamic part alone")
    func staticPlusDynamicShared() async throws {
        let device = try CUDATestSupport.device()
        let kernel = try device.compile(CUDATestSupport.staticAndDynamicShared)
        let dynamicBytes = 40 * 1024
        guard device.info.capabilities.sharedMemoryPerGroup >= 56 * 1024 else {
            Issue.record("the device allows \(device.info.capabilities.sharedMemoryPerGroup) bytes per block")
            return
        }
        let blocks = 8
        let threads = 256
        let dynamicFloats = dynamicBytes / 4
        let input = (0..<blocks * threads).map { Float($0 % 5) }
        let a = try device.makeBuffer(copying: input)
        let out = try device.makeBuffer(of: Float.self, count: blocks * threads)
        try await out.fill(-1)
        try await device.launch(
            kernel, Launch(groups: Extent3(blocks), groupSize: Extent3(threads), sharedMemoryBytes: dynamicBytes),
            arguments: [.buffer(a), .buffer(out), .int32(Int32(dynamicFloats))])
        let values = try out.toArray()
        // Thread t of a block reads dynamicPart[dynamicFloats - 1 - t], written by the thread with the same k:
        // input[that thread's i] + k, where that thread is k % threads of the same block.
        for block in 0..<blocks {
            for t in 0..<threads {
                let k = dynamicFloats - 1 - t
                let writer = block * threads + k % threads
                #expect(
                    values[block * threads + t] == Float(t) + input[writer] + Float(k), "block \(block) thread \(t)")
            }
        }
        // Past the device's opt-in limit it is refused before the driver, naming both parts.
        let tooMuch = device.info.capabilities.sharedMemoryPerGroup - 8 * 1024
        #expect {
            try device.enqueue(
                kernel, Launch(groups: Extent3(1), groupSize: Extent3(32), sharedMemoryBytes: tooMuch),
                arguments: [.buffer(a), .buffer(out), .int32(Int32(tooMuch / 4))])
        } throws: { error in
            guard case let .invalidLaunch(_, value, _) = error as? GPUBridgeError else { return false }
            return value.contains("16384 bytes static")
        }
    }

    @Test("fills of 8-byte and misaligned patterns over megabytes are exact (seed plus doubling copies)")
    func largeFills() async throws {
        let device = try CUDATestSupport.device()
        let raw = try device.makeRawBuffer(byteCount: 3 << 20)
        for (pattern, start) in [([UInt8]([1, 2, 3, 4, 5, 6, 7, 8]), 3), ([9, 8], 1), ([4, 3, 2, 1], 2)] {
            let length = ((3 << 20) - 8) / pattern.count * pattern.count
            try await raw.enqueueFill(pattern: [0xEE]).wait()
            try await raw.enqueueFill(pattern: pattern, offset: start, byteCount: length).wait()
            var bytes = [UInt8](repeating: 0, count: 3 << 20)
            try bytes.withUnsafeMutableBytes { try raw.copy(to: $0) }
            let wrong = (0..<bytes.count).first { index in
                let expected =
                    index >= start && index < start + length ? pattern[(index - start) % pattern.count] : 0xEE
                return bytes[index] != expected
            }
            #expect(wrong == nil, "pattern \(pattern) at \(start): first wrong byte \(wrong ?? -1)")
        }
    }

    @Test("copies larger than a staging block, synchronous and asynchronous, from and to pageable memory")
    func stagedCopies() async throws {
        let device = try CUDATestSupport.device()
        let count = 10 << 20 + 3  // 40 MiB + 12 bytes of Float: three staging blocks
        let values = (0..<count).map { Float($0 % 1_000_003) }
        let buffer = try device.makeBuffer(of: Float.self, count: count)
        try buffer.copy(from: values)
        #expect(try buffer.toArray() == values)
        try await buffer.fill(0)
        try await buffer.enqueueCopy(from: values).wait()
        let host = try device.makeHostBuffer(byteCount: count * 4, pinned: false)
        #expect(!host.isPinned)
        try host.write([Float](repeating: -1, count: count))
        try await buffer.copy(to: host)
        #expect(try host.read(Float.self, count: count) == values)
        try await buffer.fill(0)
        try await buffer.copy(from: host)
        #expect(try buffer.toArray() == values)
    }

    @Test("discovery opens no context; the first call that needs one does")
    func lazyContext() throws {
        let report = CUDABackendProvider().discover()
        let fresh = try #require(report.devices.first as? CUDABackend)
        #expect(!fresh.isOpen)
        #expect(try fresh.freeMemory() > 0)
        #expect(fresh.isOpen)
    }

    @Test("an int32 given for a 64-bit parameter is refused with both sizes (driver 12.4+)")
    func parameterSizeChecked() async throws {
        try #require(backend.driverVersion >= 12040, "cuFuncGetParamInfo needs CUDA 12.4")
        let device = try CUDATestSupport.device()
        let kernel = try device.compile(
            KernelSource(
                name: "takes_size_t", language: .cuda,
                text: """
                    extern "C" __global__ void takes_size_t(float* out, unsigned long long n) {
                        if (threadIdx.x == 0) out[0] = (float)n;
                    }
                    """, entryPoint: "takes_size_t"))
        let out = try device.makeBuffer(of: Float.self, count: 1)
        #expect {
            try device.enqueue(kernel, .covering(1), arguments: [.buffer(out), .int32(5)])
        } throws: { error in
            guard case let .argumentMismatch(_, detail) = error as? GPUBridgeError else { return false }
            return detail.contains("argument 1 is 4 bytes") && detail.contains("takes 8 bytes")
        }
        try await device.launch(kernel, .covering(1), arguments: [.buffer(out), .uint64(7)])
        #expect(try out.toArray() == [7])
    }

    @Test("buffers dropped after enqueueing are back in the pool as soon as the await returns")
    func poolExactAfterAwait() async throws {
        let device = try CUDATestSupport.device()
        let kernel = try device.compile(ReferenceKernels.vectorAdd(Float.self, language: .cuda))
        for _ in 0..<200 {
            let a = try device.makeBuffer(copying: [Float](repeating: 1, count: 1024))
            let c = try device.makeBuffer(of: Float.self, count: 1024)
            let completion = try device.enqueue(
                kernel, .covering(1024), arguments: [.buffer(a), .buffer(a), .buffer(c), .int32(1024)])
            _ = consume a
            _ = consume c
            try await completion.wait()
            #expect(device.pool.statistics.bytesInUse == 0)
        }
    }
}
