/// The execution checks of `DeviceChecks`: launches in flight, compiler errors, large shared memory and device faults.
extension DeviceChecks {
    /// Launches enqueued in `concurrentLaunches` before the first is awaited.
    static let launchCount = 1000

    /// 1 000 vector adds enqueued before any is awaited, each into its own view of one output buffer with its own
    /// values; then every completion is awaited and every element checked.
    static func concurrentLaunches(on device: Device) async throws -> (SelfTest.Check.Status, String) {
        let align = alignedElements(Int32.self, on: device)
        let n = (max(64, align) + align - 1) / align * align
        let launches = launchCount
        let a = try device.makeBuffer(copying: (0..<n).map { Int32($0) })
        let b = try device.makeBuffer(copying: (0..<launches * n).map { Int32($0 / n) * 1000 })
        let c = try device.makeBuffer(of: Int32.self, count: launches * n)
        try await c.fill(-1)
        let kernel = try device.compile(
            ReferenceKernels.vectorAdd(Int32.self, language: ReferenceKernels.language(for: device)))
        let shape = Launch.covering(n, groupSize: min(64, device.info.maxGroupItems))
        let clock = ContinuousClock()
        let start = clock.now
        var completions: [Completion] = []
        completions.reserveCapacity(launches)
        for i in 0..<launches {
            completions.append(
                try device.enqueue(
                    kernel, shape,
                    arguments: [
                        .buffer(a), .buffer(try b.view(offset: i * n, count: n)),
                        .buffer(try c.view(offset: i * n, count: n)), .int32(Int32(n)),
                    ]))
        }
        let enqueued = clock.now - start
        let pendingAfterEnqueue = completions.filter { !$0.isComplete }.count
        for completion in completions { try await completion.wait() }
        let finished = clock.now - start
        let out = try c.toArray()
        var wrong = 0
        for i in 0..<launches * n where out[i] != Int32(i % n) + Int32(i / n) * 1000 { wrong += 1 }
        return (
            wrong == 0 ? .passed : .failed,
            "\(launches) launches of \(n) int32 elements enqueued in \(ms(enqueued)) (\(pendingAfterEnqueue) still pending then), all complete after \(ms(finished)); \(wrong) of \(launches * n) elements wrong"
        )
    }

    /// A kernel with a syntax error, in the device's kernel language, fails with `compilationFailed` and a log.
    static func compileError(on device: Device) throws -> (SelfTest.Check.Status, String) {
        let languages = device.backend.languages
        guard let language = [KernelLanguage.cuda, .openCLC].first(where: { languages.contains($0) }),
            let source = SelfTest.brokenKernel(language)
        else {
            let names = languages.map(\.rawValue).sorted().joined(separator: ", ")
            return (
                .notApplicable,
                "the \(device.id.backend.rawValue) backend takes kernels in \(names) only: they are compiled with the package, not at run time"
            )
        }
        do {
            _ = try device.compile(source)
            return (.failed, "a \(language.rawValue) kernel using an undeclared identifier compiled")
        } catch {
            guard case let .compilationFailed(kernel, _, log) = error else {
                return (.failed, "expected compilationFailed, got: \(error)")
            }
            guard log.contains(where: { !$0.isWhitespace }) else {
                return (.failed, "compilationFailed for '\(kernel)' with an empty log")
            }
            return (
                .passed,
                "\(language.rawValue) kernel '\(kernel)' refused with a \(log.utf8.count)-byte log: \(firstLine(log))"
            )
        }
    }

    /// Bytes of static shared memory the shared-memory kernel declares.
    static let staticSharedBytes = 16 * 1024
    /// Bytes of dynamic shared memory the shared-memory launch asks for.
    static let dynamicSharedBytes = 40 * 1024

    /// A CUDA kernel with 16 KiB of static and 40 KiB of dynamic shared memory (56 KiB, past the 48 KiB a block gets
    /// without opting in) writes values read back through both arrays.
    static func largeSharedMemory(on device: Device) async throws -> (SelfTest.Check.Status, String) {
        guard device.id.backend == .cuda else {
            return (
                .notApplicable,
                "CUDA only: static __shared__ plus dynamic (extern __shared__) memory past 48 KiB is a CUDA opt-in; this is \(device.id.backend.rawValue)"
            )
        }
        let needed = staticSharedBytes + dynamicSharedBytes
        let available = device.info.capabilities.sharedMemoryPerGroup
        guard available >= needed else {
            return (
                .notApplicable,
                "the device allows \(available) bytes of shared memory per block, the check needs \(needed) (\(staticSharedBytes) static + \(dynamicSharedBytes) dynamic)"
            )
        }
        let fixedCount = staticSharedBytes / 4, dynamicCount = dynamicSharedBytes / 4
        // 7 and dynamicCount (2^11 * 5) are coprime, so `(i * 7) % dynamicCount` visits every dynamic element once.
        let source = KernelSource(
            name: "gb_check_shared", language: .cuda,
            text: """
                extern "C" __global__ void gb_check_shared(float* out, int n) {
                    __shared__ float fixed[\(fixedCount)];
                    extern __shared__ float dynamic[];
                    for (int i = threadIdx.x; i < \(fixedCount); i += blockDim.x) fixed[i] = (float)i;
                    for (int i = threadIdx.x; i < \(dynamicCount); i += blockDim.x) dynamic[i] = (float)(2 * i);
                    __syncthreads();
                    for (int i = threadIdx.x; i < n; i += blockDim.x)
                        out[i] = fixed[i % \(fixedCount)] + dynamic[(i * 7) % \(dynamicCount)];
                }
                """, entryPoint: "gb_check_shared",
            parameters: [.buffer("out", Float.self, extent: .argument(1)), .scalar(name: "n", type: .int32)])
        let n = dynamicCount
        let out = try device.makeBuffer(of: Float.self, count: n)
        try await out.fill(sentinel)
        let kernel = try device.compile(source)
        let result = try await device.launch(
            kernel,
            Launch(
                groups: Extent3(1), groupSize: Extent3(min(256, device.info.maxGroupItems)),
                sharedMemoryBytes: dynamicSharedBytes),
            arguments: [.buffer(out), .int32(Int32(n))])
        let values = try out.toArray()
        var wrong = 0
        for i in 0..<n where values[i] != Float(i % fixedCount) + Float(2 * ((i * 7) % dynamicCount)) { wrong += 1 }
        let kernelTime = result.timings.map { ", kernel \(ms($0.duration)) on the device clock" } ?? ""
        return (
            wrong == 0 ? .passed : .failed,
            "\(staticSharedBytes) bytes static + \(dynamicSharedBytes) bytes dynamic = \(needed) bytes per block (device allows \(available)); \(wrong) of \(n) results wrong\(kernelTime)"
        )
    }

    /// A CUDA kernel (no declared parameters) stores a float 1 byte past a 4-byte-aligned address: awaiting it must
    /// fail with the device lost, and so must a small launch after it. Destroys the CUDA context: see `run`.
    static func deviceLost(on device: Device) async throws -> (SelfTest.Check.Status, String) {
        guard device.id.backend == .cuda else {
            return (
                .notApplicable,
                "CUDA only: a device fault loses the CUDA context; this is \(device.id.backend.rawValue), where a misaligned store does not fault the device"
            )
        }
        let fault = KernelSource(
            name: "gb_check_fault", language: .cuda,
            text: """
                extern "C" __global__ void gb_check_fault(float* p) {
                    *(float*)((char*)p + 1) = 1.0f;
                }
                """, entryPoint: "gb_check_fault")
        let target = try device.makeBuffer(of: Float.self, count: 64)
        let kernel = try device.compile(fault)
        let one = Launch(groups: Extent3(1), groupSize: Extent3(1))
        var first = ""
        do {
            try await device.enqueue(kernel, one, arguments: [.buffer(target)]).wait()
            return (.failed, "the misaligned store completed without an error")
        } catch {
            guard isDeviceLost(error) else {
                return (.failed, "the faulting launch failed, but not with the device lost: \(error)")
            }
            first = firstLine("\(error)")
        }
        // Any step of a small launch after the fault (allocate, copy, compile, launch, wait) must fail the same way.
        do {
            let run = try await VectorAddRun.run(Float.self, count: 256, on: device)
            return (
                .failed,
                "the fault was reported (\(first)), but a vector add of 256 elements afterwards ran (\(run.mismatches ?? -1) mismatches)"
            )
        } catch {
            guard isDeviceLost(error) else {
                return (.failed, "the fault was reported (\(first)), but the next launch failed otherwise: \(error)")
            }
            return (.passed, "faulting launch: \(first); next vector add of 256 elements: \(firstLine("\(error)"))")
        }
    }
}
