import GPUBridge
import GPUBridgeTestSupport
import GPUBridgeOpenCL
import Testing

@Suite("OpenCL kernels", .enabled(if: OpenCLTestEnvironment.available, OpenCLTestEnvironment.skipReason))
struct KernelTests {
    @Test("reference VectorAdd of floats", arguments: [1000, 10_000_000])
    func vectorAddFloat(count: Int) async throws {
        let (device, _) = try makeOpenCLDevice()
        let run = try await VectorAddRun.run(Float.self, count: count, on: device)
        #expect(run.mismatches == 0)
        #expect(run.elements == count)
        #expect(run.kernelTime != nil)
        #expect(device.pool.statistics.bytesInUse == 0)
    }

    @Test("loadedKernels lists each kernel text loaded on the device once, by entry point")
    func loadedKernels() async throws {
        let (device, _) = try makeOpenCLDevice()
        #expect(device.loadedKernels.isEmpty)
        _ = try await VectorAddRun.run(Float.self, count: 1000, on: device)
        _ = try await VectorAddRun.run(Float.self, count: 1000, on: device)
        _ = try await VectorAddRun.run(Int32.self, count: 1000, on: device)
        #expect(device.loadedKernels == ["vector_add_float", "vector_add_int"])
    }

    @Test("reference VectorAdd of Int32")
    func vectorAddInt32() async throws {
        let (device, _) = try makeOpenCLDevice()
        #expect(try await VectorAddRun.run(Int32.self, count: 100_000, on: device).mismatches == 0)
        #expect(device.pool.statistics.bytesInUse == 0)
    }

    @Test(
        "reference VectorAdd of Double",
        .enabled(if: OpenCLTestEnvironment.float64, "the OpenCL device has no cl_khr_fp64"))
    func vectorAddDouble() async throws {
        let (device, _) = try makeOpenCLDevice()
        #expect(try await VectorAddRun.run(Double.self, count: 100_000, on: device).mismatches == 0)
        #expect(device.pool.statistics.bytesInUse == 0)
    }

    static let mixedSource = """
        #pragma OPENCL EXTENSION cl_khr_fp64 : enable
        __kernel void mixed(__global const float* x, const int a, __global double* outd, const uint b, const long c,
                            __global long* outl, const float d, const double e, const int n) {
            int i = (int)get_global_id(0);
            if (i >= n) return;
            outd[i] = (double)(x[i] * d) + e * (double)i;
            outl[i] = c + (long)a * (long)i + (long)b;
        }
        """

    @Test(
        "buffers and scalars of every width arrive in declared order",
        .enabled(if: OpenCLTestEnvironment.float64, "the kernel takes doubles; the OpenCL device has no cl_khr_fp64"),
        arguments: [false, true])
    func mixedArguments(declared: Bool) async throws {
        let (device, _) = try makeOpenCLDevice()
        try #require(device.info.capabilities.float64)
        let parameters: [KernelParameter]? =
            declared
            ? [
                .buffer("x", Float.self, extent: .argument(8)), .scalar(name: "a", type: .int32),
                .buffer("outd", Double.self, extent: .argument(8)), .scalar(name: "b", type: .uint32),
                .scalar(name: "c", type: .int64), .buffer("outl", Int64.self, extent: .argument(8)),
                .scalar(name: "d", type: .float32), .scalar(name: "e", type: .float64),
                .scalar(name: "n", type: .int32),
            ] : nil
        let kernel = try device.compile(
            KernelSource(
                name: "mixed", language: .openCLC, text: Self.mixedSource,
                entryPoint: "mixed", parameters: parameters))
        #expect(kernel.program.parameterCount == 9)
        let n = 5000
        let x = (0..<n).map { Float($0 % 100) }
        let a: Int32 = -7, b: UInt32 = 3_000_000_000, c: Int64 = 5_000_000_000_123, d: Float = 0.5, e = 0.25
        do {
            let dx = try device.makeBuffer(copying: x)
            let outd = try device.makeBuffer(of: Double.self, count: n)
            let outl = try device.makeBuffer(of: Int64.self, count: n)
            let result = try await device.launch(
                kernel, .covering(n, groupSize: 128),
                arguments: [
                    .buffer(dx), .int32(a), .buffer(outd), .uint32(b), .int64(c), .buffer(outl), .float(d), .double(e),
                    .int32(Int32(n)),
                ])
            let timings = try #require(result.timings)
            let queued = try #require(timings.queued), submitted = try #require(timings.submitted)
            let start = try #require(timings.start), end = try #require(timings.end)
            #expect(end >= start && start >= submitted && submitted >= queued)
            #expect(timings.duration == .nanoseconds(Int64(end - start)))
            let doubles = try outd.toArray()
            let longs = try outl.toArray()
            var bad = 0
            for i in 0..<n {
                if doubles[i] != Double(x[i] * d) + e * Double(i) { bad += 1 }
                if longs[i] != c + Int64(a) * Int64(i) + Int64(b) { bad += 1 }
            }
            #expect(bad == 0)
        }
        #expect(device.pool.statistics.bytesInUse == 0)
    }

    @Test("a scalar of the wrong width for an undeclared kernel is rejected by the driver check")
    func wrongScalarWidth() throws {
        let (device, _) = try makeOpenCLDevice()
        let kernel = try device.compile(
            KernelSource(
                name: "write_index_undeclared", language: .openCLC,
                text: writeIndexKernel.text ?? "", entryPoint: "write_index"))
        let out = try device.makeBuffer(of: Float.self, count: 64)
        let error = bridgeError {
            try device.enqueue(kernel, .covering(64, groupSize: 64), arguments: [.buffer(out), .int64(64), .float(0)])
        }
        guard case let .argumentMismatch(name, detail) = error else {
            Issue.record("expected argumentMismatch, got \(String(describing: error))")
            return
        }
        #expect(name == "write_index_undeclared")
        #expect(detail.contains("CL_INVALID_ARG_SIZE"))
        #expect(detail.contains("parameter 1"))
    }

    @Test("a syntax error throws compilationFailed with the driver's log naming the line")
    func syntaxError() throws {
        let (device, backend) = try makeOpenCLDevice()
        let source = KernelSource(
            name: "broken", language: .openCLC,
            text: """
                __kernel void broken(__global float* x) {
                    x[0] = 1.0f
                    x[1] = 2.0f;
                }
                """, entryPoint: "broken")
        let error = bridgeError { try device.compile(source) }
        guard case let .compilationFailed(kernel, backendName, log) = error else {
            Issue.record("expected compilationFailed, got \(String(describing: error))")
            return
        }
        #expect(kernel == "broken")
        #expect(backendName == "opencl")
        #expect(log.contains("CL_BUILD_PROGRAM_FAILURE"))
        #expect(log.contains(":2:"))
        #expect(log.contains("expected ';'"))
        #expect(backend.counters.compiles == 1)
        // Nothing is cached for a failed build: the next try compiles again.
        _ = bridgeError { try device.compile(source) }
        #expect(backend.counters.compiles == 2)
    }

    @Test("an entry point the program does not define is not found")
    func missingEntryPoint() throws {
        let (device, _) = try makeOpenCLDevice()
        var source = writeIndexKernel
        source.entryPoint = "no_such_kernel"
        let error = bridgeError { try device.compile(source) }
        guard case let .notFound(kind, name) = error else {
            Issue.record("expected notFound, got \(String(describing: error))")
            return
        }
        #expect(name == "no_such_kernel")
        #expect(kind.contains("write_index"))
    }

    @Test("a launch past a too-small buffer, or with too few arguments, is caught before launch")
    func argumentChecks() throws {
        let (device, backend) = try makeOpenCLDevice()
        let declared = try device.compile(ReferenceKernels.vectorAdd(Float.self, language: .openCLC))
        let small = try device.makeBuffer(of: Float.self, count: 100)
        let large = try device.makeBuffer(of: Float.self, count: 1000)
        let launches = backend.counters.launches
        let tooFar = bridgeError {
            try device.enqueue(
                declared, .covering(1000), arguments: [.buffer(large), .buffer(small), .buffer(large), .int32(1000)])
        }
        guard case let .argumentMismatch(_, detail) = tooFar else {
            Issue.record("expected argumentMismatch, got \(String(describing: tooFar))")
            return
        }
        #expect(detail.contains("argument 1"))

        // No declared parameters: the count comes from CL_KERNEL_NUM_ARGS.
        var undeclaredSource = ReferenceKernels.vectorAdd(Float.self, language: .openCLC)
        undeclaredSource.parameters = nil
        undeclaredSource.name = "vector_add_undeclared"
        let undeclared = try device.compile(undeclaredSource)
        #expect(undeclared.program.parameterCount == 4)
        let short = bridgeError {
            try device.enqueue(undeclared, .covering(100), arguments: [.buffer(small), .buffer(small), .buffer(small)])
        }
        guard case let .argumentMismatch(_, shortDetail) = short else {
            Issue.record("expected argumentMismatch, got \(String(describing: short))")
            return
        }
        #expect(shortDetail.contains("takes 4 arguments"))
        #expect(backend.counters.launches == launches)
    }

    @Test("launch dimensions over the device's limits are invalid")
    func launchLimits() throws {
        let (device, _) = try makeOpenCLDevice()
        let kernel = try device.compile(writeIndexKernel)
        let out = try device.makeBuffer(of: Float.self, count: 16)
        let maxItems = device.info.maxGroupItems
        for launch in [
            Launch(groups: Extent3(1), groupSize: Extent3(maxItems + 1)),
            Launch(groups: Extent3(1, 1), groupSize: Extent3(maxItems, 2)),
            Launch(groups: Extent3(0), groupSize: Extent3(1)),
        ] {
            let error = bridgeError {
                try device.enqueue(kernel, launch, arguments: [.buffer(out), .int32(0), .float(0)])
            }
            guard case .invalidLaunch = error else {
                Issue.record("expected invalidLaunch for \(launch), got \(String(describing: error))")
                continue
            }
        }
    }

    @Test("dynamic shared memory is refused with a pointer to __local")
    func sharedMemory() throws {
        let (device, _) = try makeOpenCLDevice()
        let kernel = try device.compile(writeIndexKernel)
        let out = try device.makeBuffer(of: Float.self, count: 64)
        let error = bridgeError {
            try device.enqueue(
                kernel, Launch(groups: Extent3(1), groupSize: Extent3(64), sharedMemoryBytes: 256),
                arguments: [.buffer(out), .int32(64), .float(0)])
        }
        guard case let .unsupported(feature, backend) = error else {
            Issue.record("expected unsupported, got \(String(describing: error))")
            return
        }
        #expect(backend == "opencl")
        #expect(feature.contains("__local"))
    }

    @Test("a 2-D launch covers every item once")
    func twoDimensions() async throws {
        let (device, _) = try makeOpenCLDevice()
        let kernel = try device.compile(
            KernelSource(
                name: "grid", language: .openCLC,
                text: """
                    __kernel void grid(__global int* out, const int width) {
                        int x = (int)get_global_id(0), y = (int)get_global_id(1);
                        out[y * width + x] = y * 1000 + x;
                    }
                    """, entryPoint: "grid"))
        let width = 64, height = 24
        let out = try device.makeBuffer(of: Int32.self, count: width * height)
        try await device.launch(
            kernel, Launch(groups: Extent3(width / 16, height / 8), groupSize: Extent3(16, 8)),
            arguments: [.buffer(out), .int32(Int32(width))])
        let values = try out.toArray()
        var expected: [Int32] = []
        for y in 0..<height {
            for x in 0..<width { expected.append(Int32(y * 1000 + x)) }
        }
        #expect(values == expected)
    }

    @Test(
        "the portable softmax, cosine and top-k texts are refused, unlaunched, a buffer smaller than their sizes",
        arguments: ["softmax_rows", "cosine_scores", "topk_select"])
    func shortBuffersRefused(kernelID: String) async throws {
        let (device, backend) = try makeOpenCLDevice()
        let kernel = try device.compile(KernelCatalog().definition(kernelID).source(for: .opencl))
        // Each buffer's element count for the sizes given, the sizes, and the launch.
        let (counts, sizes, launch): ([Int], [Int32], Launch) =
            switch kernelID {
            case "softmax_rows": ([4 * 32, 4 * 32], [4, 32], Launch(groups: Extent3(4), groupSize: Extent3(64)))
            case "cosine_scores":
                ([2 * 8, 300 * 8, 2 * 300], [2, 300, 8], Launch(groups: Extent3(2, 2), groupSize: Extent3(256)))
            default: ([2 * 100, 2 * 5, 2 * 5], [2, 100, 5], Launch(groups: Extent3(2), groupSize: Extent3(64)))
            }
        let names = kernel.parameters?.prefix(counts.count).map(\.name) ?? []
        for short in counts.indices {
            // Every buffer holds a sentinel; the short one is one element short.
            let buffers = try counts.indices.map { i in
                try device.makeBuffer(copying: [Float](repeating: 77, count: counts[i] - (i == short ? 1 : 0)))
            }
            let launchesBefore = backend.counters.launches
            let error = await bridgeError {
                try await device.launch(
                    kernel, launch, arguments: buffers.map { .buffer($0) } + sizes.map { .int32($0) })
            }
            guard case let .argumentMismatch(name, detail) = error else {
                Issue.record("\(kernelID), \(names[short]) short: \(String(describing: error))")
                continue
            }
            #expect(name == kernelID)
            #expect(detail.contains("('\(names[short])') holds \(counts[short] - 1) elements"), "\(detail)")
            #expect(backend.counters.launches == launchesBefore, "\(kernelID) was launched")
            for buffer in buffers {
                let untouched = try buffer.toArray().allSatisfy { $0 == 77 }
                #expect(untouched, "\(kernelID): a buffer was written")
            }
        }
    }

    @Test("a buffer sized by a product of counts: a negative count or an overflowing product is refused, unlaunched")
    func productExtent() async throws {
        let (device, backend) = try makeOpenCLDevice()
        let kernel = try device.compile(
            KernelSource(
                name: "fill_box", language: .openCLC,
                text: """
                    __kernel void fill_box(__global float* out, const int x, const int y, const int z) {
                        long i = get_global_id(0);
                        if (i < (long)x * y * z) out[i] = 1.0f;
                    }
                    """, entryPoint: "fill_box",
                parameters: [
                    .buffer("out", Float.self, extent: .product([1, 2, 3])), .scalar(name: "x", type: .int32),
                    .scalar(name: "y", type: .int32), .scalar(name: "z", type: .int32),
                ]))
        let out = try device.makeBuffer(copying: [Float](repeating: 0, count: 24))
        func launch(_ x: Int32, _ y: Int32, _ z: Int32) async -> GPUBridgeError? {
            await bridgeError {
                try await device.launch(
                    kernel, Launch(groups: Extent3(1), groupSize: Extent3(32)),
                    arguments: [.buffer(out), .int32(x), .int32(y), .int32(z)])
            }
        }
        try await device.launch(
            kernel, Launch(groups: Extent3(1), groupSize: Extent3(32)),
            arguments: [.buffer(out), .int32(2), .int32(3), .int32(4)])
        #expect(try out.toArray() == [Float](repeating: 1, count: 24))
        let launched = backend.counters.launches
        let short = await launch(2, 3, 5)
        #expect(
            short?.description.contains(
                "holds 24 elements (96 bytes) but the launch reaches 30 elements (x x y x z = 2 x 3 x 5)")
                == true, "\(String(describing: short))")
        let negative = await launch(-2, 3, -4)
        #expect(
            negative?.description.contains("argument 1 ('x') is -2: a count that sizes 'out' must be at least 0")
                == true,
            "\(String(describing: negative))")
        let huge = await launch(.max, .max, .max)
        #expect(
            huge?.description.contains(
                "the length of 'out', x x y x z = 2147483647 x 2147483647 x 2147483647, is more than 9223372036854775807 elements"
            ) == true,
            "\(String(describing: huge))")
        #expect(backend.counters.launches == launched)
    }

    @Test("the portable texts' group shapes and scalar ranges are enforced before launch: shared arrays stay in bounds")
    func launchLimits() async throws {
        let (device, backend) = try makeOpenCLDevice()
        let catalog = KernelCatalog()
        func refusal(
            _ id: String, _ launch: Launch, _ counts: [Int], _ scalars: [KernelArgument]
        ) async throws -> (GPUBridgeError?, untouched: Bool) {
            let kernel = try device.compile(catalog.definition(id).source(for: .opencl))
            let buffers = try counts.map { try device.makeBuffer(copying: [Float](repeating: 77, count: $0)) }
            let launched = backend.counters.launches
            let error = await bridgeError {
                try await device.launch(kernel, launch, arguments: buffers.map { .buffer($0) } + scalars)
            }
            #expect(backend.counters.launches == launched, "\(id) was launched")
            let untouched = try buffers.allSatisfy { try $0.toArray().allSatisfy { $0 == 77 } }
            return (error, untouched)
        }
        // matmul's 16 x 16 tiles: a 32 x 32 group would index past them.
        let (tile, tileUntouched) = try await refusal(
            "matmul", Launch(groups: Extent3(1, 1), groupSize: Extent3(32, 32)), [32 * 32, 32 * 32, 32 * 32],
            [.int32(32), .int32(32), .int32(32)])
        #expect(
            tile?.description.contains("'group size of 'matmul'': value 32x32 is outside exactly 16x16") == true,
            "\(String(describing: tile))")
        #expect(tileUntouched)
        // The same tile written with its unused dimension is the same shape, and runs.
        let matmul = try device.compile(catalog.definition("matmul").source(for: .opencl))
        let ones = try device.makeBuffer(copying: [Float](repeating: 1, count: 32 * 32))
        let product = try device.makeBuffer(copying: [Float](repeating: 77, count: 32 * 32))
        try await device.launch(
            matmul, Launch(groups: Extent3(2, 2, 1), groupSize: Extent3(16, 16, 1)),
            arguments: [.buffer(ones), .buffer(ones), .buffer(product), .int32(32), .int32(32), .int32(32)])
        #expect(try product.toArray() == [Float](repeating: 32, count: 32 * 32))
        // softmax's 256-element scratch: a group of 512 would write past it.
        let (wide, wideUntouched) = try await refusal(
            "softmax_rows", Launch(groups: Extent3(2), groupSize: Extent3(512)), [2 * 64, 2 * 64],
            [.int32(2), .int32(64)])
        #expect(wide?.description.contains("at most 256 work-items along x") == true, "\(String(describing: wide))")
        #expect(wideUntouched)
        // softmax's tree reduction halves the group each round: a width of 96 would leave elements out.
        let (odd, oddUntouched) = try await refusal(
            "softmax_rows", Launch(groups: Extent3(2), groupSize: Extent3(96)), [2 * 64, 2 * 64],
            [.int32(2), .int32(64)])
        #expect(
            odd?.description.contains("'group size of 'softmax_rows'': value 96 is outside a power of two along x")
                == true, "\(String(describing: odd))")
        #expect(oddUntouched)
        // sum_partial writes one partial per group: 8 groups need 8.
        let (partial, partialUntouched) = try await refusal(
            "sum_partial", Launch(groups: Extent3(8), groupSize: Extent3(256)), [4096, 7], [.int32(4096)])
        #expect(
            partial?.description.contains(
                "('partial') holds 7 elements (28 bytes) but the launch reaches 8 elements (one per group)")
                == true, "\(String(describing: partial))")
        #expect(partialUntouched)
        // histogram's 256 buckets: 300 bins would count past them.
        let (bins, binsUntouched) = try await refusal(
            "histogram", Launch(groups: Extent3(1), groupSize: Extent3(256)), [100, 300],
            [.int32(100), .int32(300), .float(0), .float(1)])
        #expect(
            bins?.description.contains("'argument 3 ('bins') of 'histogram'': value 300 is outside 1...256") == true,
            "\(String(describing: bins))")
        #expect(binsUntouched)
    }
}
