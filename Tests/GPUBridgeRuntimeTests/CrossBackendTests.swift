import GPUBridge
import GPUBridgeCUDA
import GPUBridgeOpenCL
import GPUBridgeTestSupport
import Testing

/// Discovered once per process: the OpenCL devices (PoCL in CI) and whether NVRTC and a CUDA driver exist.
enum Machine {
    static let openCL: [any DeviceBackend] = OpenCLBackendProvider().discover().devices
    static let cuda: [any DeviceBackend] = CUDABackendProvider().discover().devices
    static var hasOpenCL: Bool { !openCL.isEmpty }
    static var hasCUDA: Bool { !cuda.isEmpty }
    static var nvrtc: NVRTCCompiler? { try? NVRTCCompiler.shared.get() }
}

func noCacheOptions(_ configure: (inout BridgeOptions) -> Void = { _ in }) -> BridgeOptions {
    var options = BridgeOptions()
    options.cacheDirectory = nil
    configure(&options)
    return options
}

/// A user kernel written once in the portable dialect.
let userKernel = PortableKernel(
    name: "clamp_add",
    text: """
        GB_DEVICE float min_portable(float a, float b) { return a < b ? a : b; }
        GB_KERNEL clamp_add(GB_GLOBAL const float* GB_RESTRICT x, GB_GLOBAL float* GB_RESTRICT y, float hi, int n) {
            int i = GB_GLOBAL_ID(0);
            if (i < n) y[i] = GB_FMAXF(-hi, min_portable(x[i] + y[i], hi));
        }
        """,
    entryPoint: "clamp_add",
    parameters: [
        .buffer("x", Float.self, extent: .argument(3)), .buffer("y", Float.self, extent: .argument(3)),
        .scalar(name: "hi", type: .float32), .scalar(name: "n", type: .int32),
    ])

@Suite("Portable kernels and the runtime across backends")
struct CrossBackendTests {
    // Needs an OpenCL platform with a device (PoCL in CI, installed by scripts/test).
    @Test(
        "every built-in kernel on OpenCL agrees with the host reference",
        .enabled(if: Machine.hasOpenCL, "no OpenCL device on this machine"))
    func builtinsOnOpenCL() async throws {
        let device = try Device(backend: Machine.openCL[0])
        let failures = await BuiltinKernelChecks.run(on: device)
        #expect(failures.isEmpty, "\(failures)")
        #expect(device.pool.statistics.bytesInUse == 0)
    }

    // Needs a CUDA driver and a GPU.
    @Test(
        "every built-in kernel on CUDA agrees with the host reference",
        .enabled(if: Machine.hasCUDA, "no CUDA driver or GPU on this machine"))
    func builtinsOnCUDA() async throws {
        let device = try Device(backend: Machine.cuda[0])
        let failures = await BuiltinKernelChecks.run(on: device)
        #expect(failures.isEmpty, "\(failures)")
    }

    // Needs NVRTC (installed from PyPI by scripts/test); no GPU needed to compile.
    @Test(
        "every built-in kernel compiles under NVRTC for sm_80 and sm_90",
        .enabled(if: Machine.nvrtc != nil, "NVRTC not found"))
    func builtinsCompileForCUDA() throws {
        let nvrtc = try #require(Machine.nvrtc)
        for definition in KernelCatalog().all {
            let source = try definition.source(for: .cuda)
            for arch in ["sm_80", "sm_90"] {
                let binary = try nvrtc.compile(source, architecture: arch)
                #expect(
                    binary.bytes.starts(with: [0x7F, 0x45, 0x4C, 0x46]),
                    "\(definition.id) for \(arch) is not an ELF cubin")
            }
        }
    }

    @Test(
        "a user kernel in the portable dialect compiles for CUDA and runs on OpenCL from the same text",
        .enabled(if: Machine.hasOpenCL && Machine.nvrtc != nil, "needs an OpenCL device and NVRTC"))
    func userKernelBothWays() async throws {
        let nvrtc = try #require(Machine.nvrtc)
        let cubin = try nvrtc.compile(try userKernel.source(for: .cuda), architecture: "sm_90")
        #expect(cubin.bytes.starts(with: [0x7F, 0x45, 0x4C, 0x46]))
        let ptx = try nvrtc.compile(
            try userKernel.source(for: .cuda), options: CompileOptions(target: "compute_90"), architecture: "sm_90")
        #expect(String(decoding: ptx.bytes, as: UTF8.self).contains(".entry clamp_add"))

        var devices: [Device] = [try Device(backend: Machine.openCL[0])]
        if Machine.hasCUDA { devices.append(try Device(backend: Machine.cuda[0])) }
        for device in devices {
            let kernel = try device.compile(try userKernel.source(for: device.id.backend == .cuda ? .cuda : .openCLC))
            let x = try device.makeBuffer(copying: (0..<1000).map { Float($0) / 100 - 5 })
            let y = try device.makeBuffer(copying: [Float](repeating: 1, count: 1000))
            try await device.launch(
                kernel, .covering(1000), arguments: [.buffer(x), .buffer(y), .float(3), .int32(1000)])
            let out = try y.toArray()
            #expect((0..<1000).allSatisfy { out[$0] == max(-3, min(Float($0) / 100 - 5 + 1, 3)) }, "\(device.id)")
        }
    }

    @Test(
        "an OpenCL device that fails: the request completes on the CPU; with fallback off the error lists the attempts",
        .enabled(if: Machine.hasOpenCL, "no OpenCL device on this machine"))
    func fallbackOpenCLToCPU() async throws {
        let failing = FaultInjectingBackend(wrapping: Machine.openCL[0], plan: .init(always: [.launch]))
        let bridge = try Bridge(options: noCacheOptions(), backends: [failing, CPUBackend()])
        let c = try await bridge.run(Operations.vectorAdd, .init([1, 2, 3], [4, 5, 6]))
        #expect(c == [5, 7, 9])
        let states = bridge.broker.states
        #expect(states.first { $0.device.backend == .opencl }?.failed == 2)
        #expect(states.first { $0.device.backend == .cpu }?.succeeded == 1)

        let strict = try Bridge(options: noCacheOptions { $0.fallback = false }, backends: [failing, CPUBackend()])
        let error = await #expect(throws: GPUBridgeError.self) {
            try await strict.run(Operations.vectorAdd, .init([1], [2]))
        }
        guard case let .allAttemptsFailed(_, attempts) = error else {
            Issue.record("got \(String(describing: error))"); return
        }
        #expect(attempts.count == 2)
        #expect(attempts.allSatisfy { $0.hasPrefix("opencl:0") })

        // A compile error on OpenCL moves to the CPU without counting against OpenCL's health.
        let noCompile = FaultInjectingBackend(wrapping: Machine.openCL[0], plan: .init(always: [.compile]))
        let compileBridge = try Bridge(options: noCacheOptions(), backends: [noCompile, CPUBackend()])
        #expect(try await compileBridge.run(Operations.scale, (alpha: 2, x: [1, 2])) == [2, 4])
        #expect(compileBridge.broker.states[0].consecutiveFailures == 0)
    }

    @Test(
        "the broker honours backend preference, and spreads load across two PoCL devices",
        .enabled(if: Machine.hasOpenCL, "no OpenCL device on this machine"))
    func spreadAcrossBackends() async throws {
        let bridge = try Bridge(
            options: noCacheOptions {
                $0.backendOrder = [.opencl, .cpu]
                $0.maxConcurrentLaunchesPerDevice = 1
            }, backends: [Machine.openCL[0], CPUBackend()])
        // OpenCL is preferred and healthy: requests queue for its slot rather than spill to the CPU.
        let results = try await withThrowingTaskGroup(of: (Int, [Float]).self) { group in
            for i in 0..<64 {
                group.addTask {
                    (
                        i,
                        try await bridge.run(
                            Operations.scale, (alpha: Float(i), x: [Float](repeating: 1, count: 100_000)))
                    )
                }
            }
            return try await group.reduce(into: [Int: [Float]]()) { $0[$1.0] = $1.1 }
        }
        #expect(results.count == 64)
        for i in 0..<64 { #expect(results[i] == [Float](repeating: Float(i), count: 100_000), "request \(i)") }
        #expect(bridge.broker.states[0].succeeded == 64)  // preference is honoured: every request went to OpenCL
        #expect(bridge.broker.states.allSatisfy { $0.running == 0 && $0.waiting == 0 })

        // Two devices of the same preference: load decides. Two separate PoCL backends (each its own context and
        // queue); the second is renamed opencl:1 by the (fault-free) wrapper so the broker tells them apart.
        let second = try #require(OpenCLBackendProvider().discover().devices.first)
        #expect(second !== Machine.openCL[0])
        let pair = try Bridge(
            options: noCacheOptions {
                $0.backendOrder = [.opencl]; $0.maxConcurrentLaunchesPerDevice = 2
            },
            backends: [Machine.openCL[0], FaultInjectingBackend(wrapping: second, ordinal: 1)])
        let pairResults = try await withThrowingTaskGroup(of: (Int, [Float]).self) { group in
            for i in 0..<64 {
                group.addTask {
                    (
                        i,
                        try await pair.run(
                            Operations.scale, (alpha: Float(i), x: [Float](repeating: 1, count: 100_000)))
                    )
                }
            }
            return try await group.reduce(into: [Int: [Float]]()) { $0[$1.0] = $1.1 }
        }
        #expect(pairResults.count == 64)
        for i in 0..<64 { #expect(pairResults[i] == [Float](repeating: Float(i), count: 100_000), "request \(i)") }
        let states = pair.broker.states
        #expect(states[0].succeeded > 0 && states[1].succeeded > 0, "\(states)")
        #expect(states[0].succeeded + states[1].succeeded == 64)
    }

    @Test(
        "batching on OpenCL: 10 000 concurrent small requests, each gets its own result",
        .enabled(if: Machine.hasOpenCL, "no OpenCL device on this machine"))
    func batchingOnOpenCL() async throws {
        let bridge = try Bridge(options: noCacheOptions { $0.backendOrder = [.opencl] }, backends: [Machine.openCL[0]])
        let batcher = try bridge.vectorAddBatcher()
        let wrong = try await withThrowingTaskGroup(of: Int.self) { group in
            for i in 0..<10_000 {
                group.addTask {
                    let a: [Float] = [Float(i), Float(-i)]
                    return try await batcher.submit(.init(a, [1, 1])) == [Float(i) + 1, Float(-i) + 1] ? 0 : 1
                }
            }
            return try await group.reduce(0, +)
        }
        #expect(wrong == 0)
        #expect(await batcher.requests == 10_000)
        #expect(await batcher.batches < 1000)
    }
}
