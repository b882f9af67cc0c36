/// A fixed set of end-to-end checks run on one device by `gpubridge selftest`.
///
/// Each check does real work on the device and compares with a host result or with the exact error expected; none
/// is skipped silently: a check that does not apply to a backend says why.
public enum SelfTest {
    /// The outcome of one check.
    public struct Check: Sendable, Hashable, Codable {
        public enum Status: String, Sendable, Hashable, Codable {
            case passed, failed, notApplicable = "not-applicable"
        }
        public var name: String
        public var status: Status
        /// What was measured or what went wrong.
        public var detail: String
        public var duration: Duration
    }

    /// Runs every check on `device`. `largeCount` is the element count of the large VectorAdd.
    public static func run(
        on device: Device, largeCount: Int = 10_000_000,
        progress: @Sendable (Check) -> Void = { _ in }
    ) async -> [Check] {
        var checks: [Check] = []
        func record(_ name: String, _ body: () async throws -> (Check.Status, String)) async {
            let clock = ContinuousClock()
            let start = clock.now
            let check: Check
            do {
                let (status, detail) = try await body()
                check = Check(name: name, status: status, detail: detail, duration: clock.now - start)
            } catch {
                check = Check(name: name, status: .failed, detail: "\(error)", duration: clock.now - start)
            }
            progress(check)
            checks.append(check)
        }
        let language = ReferenceKernels.language(for: device)
        let baseline = device.pool.statistics.bytesInUse

        await record("vector-add float32 x 1000") {
            let run = try await VectorAddRun.run(Float.self, count: 1000, on: device)
            return (run.mismatches == 0 ? .passed : .failed, "\(run.mismatches ?? -1) mismatches")
        }
        await record("vector-add float32 x \(largeCount)") {
            let run = try await VectorAddRun.run(Float.self, count: largeCount, on: device, verify: true)
            let kernel = run.kernelTime.map { " kernel \(Double($0.nanoseconds) / 1e6) ms on the device clock" } ?? ""
            return (run.mismatches == 0 ? .passed : .failed, "\(run.mismatches ?? -1) mismatches;\(kernel)")
        }
        await record("vector-add int32 and float64 x 100000") {
            let i = try await VectorAddRun.run(Int32.self, count: 100_000, on: device)
            if device.info.capabilities.float64 {
                let d = try await VectorAddRun.run(Double.self, count: 100_000, on: device)
                return (
                    i.mismatches == 0 && d.mismatches == 0 ? .passed : .failed,
                    "int32 \(i.mismatches ?? -1), float64 \(d.mismatches ?? -1) mismatches"
                )
            }
            return (
                i.mismatches == 0 ? .passed : .failed, "int32 \(i.mismatches ?? -1) mismatches; device has no float64"
            )
        }
        await record("views as kernel arguments") {
            let align = max(1, device.info.capabilities.viewOffsetAlignment / MemoryLayout<Float>.stride)
            let n = 4096, offset = align * 2
            let total = n + offset * 2
            let a = try device.makeBuffer(copying: (0..<total).map { Float($0) })
            let b = try device.makeBuffer(copying: [Float](repeating: 0.5, count: total))
            let c = try device.makeBuffer(copying: [Float](repeating: -1, count: total))
            let kernel = try device.compile(ReferenceKernels.vectorAdd(Float.self, language: language))
            try await device.launch(
                kernel, .covering(n),
                arguments: [
                    .buffer(try a.view(offset: offset, count: n)), .buffer(try b.view(offset: offset, count: n)),
                    .buffer(try c.view(offset: offset, count: n)), .int32(Int32(n)),
                ])
            let out = try c.toArray()
            var bad = 0
            for i in 0..<total {
                let expected: Float = (i >= offset && i < offset + n) ? Float(i) + 0.5 : -1
                if out[i] != expected { bad += 1 }
            }
            return (bad == 0 ? .passed : .failed, "offset \(offset) elements, \(bad) mismatches")
        }
        for pinned in [true, false] {
            await record("async copies with offsets (\(pinned ? "pinned" : "pageable") host memory)") {
                let n = 1 << 16
                let host = try device.makeHostBuffer(byteCount: n * 4, pinned: pinned)
                try host.write((0..<n).map { UInt32($0 &* 2654435761 % 1_000_003) })
                let buffer = try device.makeBuffer(of: UInt32.self, count: n + 100)
                try await buffer.fill(7)
                try await buffer.copy(from: host, hostOffset: 10, toOffset: 50, count: n - 10)
                let back = try device.makeHostBuffer(byteCount: n * 4, pinned: pinned)
                try await buffer.copy(to: back, hostOffset: 3, fromOffset: 50, count: n - 10)
                let expected = try host.read(UInt32.self, count: n - 10, at: 10)
                let got = try back.read(UInt32.self, count: n - 10, at: 3)
                let untouched = try buffer.toArray(offset: 0, count: 50).allSatisfy { $0 == 7 }
                let ok = expected == got && untouched
                return (ok ? .passed : .failed, "\(n - 10) elements; host pinned: \(host.isPinned)")
            }
        }
        await record("200 concurrent launches") {
            let kernel = try device.compile(ReferenceKernels.vectorAdd(Int32.self, language: language))
            let bad = try await withThrowingTaskGroup(of: Int.self) { group in
                for task in 0..<200 {
                    group.addTask {
                        let n = 1000 + task
                        let a = try device.makeBuffer(copying: (0..<n).map { Int32($0) })
                        let b = try device.makeBuffer(copying: [Int32](repeating: Int32(task), count: n))
                        let c = try device.makeBuffer(of: Int32.self, count: n)
                        try await device.launch(
                            kernel, .covering(n), arguments: [.buffer(a), .buffer(b), .buffer(c), .int32(Int32(n))])
                        let out = try c.toArray()
                        return (0..<n).filter { out[$0] != Int32($0) + Int32(task) }.count
                    }
                }
                return try await group.reduce(0, +)
            }
            return (bad == 0 ? .passed : .failed, "\(bad) mismatches")
        }
        await record("compile error is reported with the compiler log") {
            guard let source = brokenKernel(language) else {
                return (.notApplicable, "Swift kernels are compiled with the package, not at run time")
            }
            do {
                _ = try device.compile(source)
                return (.failed, "the broken kernel compiled")
            } catch let error as GPUBridgeError {
                guard case let .compilationFailed(_, _, log) = error else {
                    return (.failed, "unexpected error: \(error)")
                }
                let mentions = log.contains("undeclared_identifier")
                return (mentions ? .passed : .failed, "log: \(log.split(separator: "\n").first ?? "")")
            }
        }
        await record("out-of-memory request is refused cleanly") {
            let before = device.pool.statistics
            let huge = device.info.totalMemory &* 2
            do {
                _ = try device.makeRawBuffer(byteCount: huge)
                return (.failed, "allocating \(huge) bytes succeeded")
            } catch let error as GPUBridgeError {
                guard case .outOfMemory = error else { return (.failed, "unexpected error: \(error)") }
                let after = device.pool.statistics
                return (after.bytesInUse == before.bytesInUse ? .passed : .failed, "\(error)")
            }
        }
        await record("oversized launch is refused") {
            let kernel = try device.compile(ReferenceKernels.vectorAdd(Float.self, language: language))
            let a = try device.makeBuffer(of: Float.self, count: 16)
            do {
                try await device.launch(
                    kernel, Launch(groups: Extent3(1), groupSize: Extent3(device.info.maxGroupItems + 1)),
                    arguments: [.buffer(a), .buffer(a), .buffer(a), .int32(16)])
                return (.failed, "the launch was accepted")
            } catch let error as GPUBridgeError {
                guard case .invalidLaunch = error else { return (.failed, "unexpected error: \(error)") }
                return (.passed, "\(error)")
            }
        }
        await record("built-in kernels agree with the host reference") {
            let failures = await BuiltinKernelChecks.run(on: device)
            return (
                failures.isEmpty ? .passed : .failed,
                failures.isEmpty
                    ? "vector_add, saxpy, scale, dot, sum, matmul, softmax, cosine top-k, histogram"
                    : failures.joined(separator: "; ")
            )
        }
        await record("no memory leaked") {
            let now = device.pool.statistics.bytesInUse
            return (now == baseline ? .passed : .failed, "pool bytes in use \(now), baseline \(baseline)")
        }
        return checks
    }

    /// A kernel that does not compile, in `language`; nil for Swift.
    public static func brokenKernel(_ language: KernelLanguage) -> KernelSource? {
        switch language {
        case .openCLC:
            return KernelSource(
                name: "broken", language: .openCLC,
                text: """
                    __kernel void broken(__global float* a) {
                        a[get_global_id(0)] = undeclared_identifier;
                    }
                    """, entryPoint: "broken")
        case .cuda:
            return KernelSource(
                name: "broken", language: .cuda,
                text: """
                    extern "C" __global__ void broken(float* a) {
                        a[threadIdx.x] = undeclared_identifier;
                    }
                    """, entryPoint: "broken")
        case .swift:
            return nil
        }
    }
}
