import GPUBridge
import GPUBridgeOpenCL
import Testing

@Suite("OpenCL runtime", .enabled(if: OpenCLTestEnvironment.available, OpenCLTestEnvironment.skipReason))
struct RuntimeTests {
    @Test("200 concurrent tasks allocating, launching and reading back each get their own result")
    func concurrentTasks() async throws {
        let (device, _) = try makeOpenCLDevice()
        let kernel = try device.compile(scaleKernel)
        let wrong = try await withThrowingTaskGroup(of: Int.self) { group in
            for task in 0..<200 {
                group.addTask {
                    let n = 1000 + task * 37
                    let input = (0..<n).map { Float(($0 + task) % 97) }
                    let a = try device.makeBuffer(copying: input)
                    let b = try device.makeBuffer(of: Float.self, count: n)
                    try await device.launch(
                        kernel, .covering(n, groupSize: 64),
                        arguments: [.buffer(a), .buffer(b), .float(Float(task)), .int32(Int32(n))])
                    let output = try b.toArray()
                    return zip(input, output).filter { $0 * 2 + Float(task) != $1 }.count
                }
            }
            return try await group.reduce(0, +)
        }
        #expect(wrong == 0)
        #expect(device.pool.statistics.bytesInUse == 0)
    }

    @Test("a fresh KernelCache on the same folder loads the binary from disk; a changed option misses")
    func diskCache() async throws {
        let folder = temporaryFolder("disk-cache")
        defer { removeFolder(folder) }
        let (first, backend) = try makeOpenCLDevice(cacheFolder: folder)
        _ = try first.compile(scaleKernel)
        #expect(backend.counters.compiles == 1)
        #expect(first.cache.statistics.misses == 1)
        #expect(first.cache.statistics.diskWrites == 1)

        let fresh = KernelCache(directory: folder)
        let second = try Device(backend: backend, cache: fresh)
        let kernel = try second.compile(scaleKernel)
        #expect(fresh.statistics.diskHits == 1)
        #expect(fresh.statistics.misses == 0)
        #expect(backend.counters.compiles == 1)
        do {
            // The program loaded from the binary runs.
            let input = try second.makeBuffer(copying: [Float](repeating: 1, count: 10))
            let output = try second.makeBuffer(of: Float.self, count: 10)
            try await second.launch(
                kernel, .covering(10, groupSize: 10),
                arguments: [.buffer(input), .buffer(output), .float(3), .int32(10)])
            #expect(try output.toArray() == [Float](repeating: 5, count: 10))
        }

        _ = try second.compile(scaleKernel, options: CompileOptions(defines: ["UNUSED": "1"]))
        #expect(fresh.statistics.misses == 1)
        #expect(backend.counters.compiles == 2)
        #expect(second.pool.statistics.bytesInUse == 0)
    }

    @Test("1000 launches over resident buffers and views allocate nothing and copy nothing")
    func zeroCopy() async throws {
        let (device, backend) = try makeOpenCLDevice()
        let alignment = device.info.capabilities.viewOffsetAlignment
        do {
            let kernel = try device.compile(scaleKernel)
            let n = 4096
            let input = try device.makeBuffer(copying: (0..<n).map { Float($0) })
            let output = try device.makeBuffer(of: Float.self, count: n)
            let viewOffset = alignment / MemoryLayout<Float>.stride * 4
            let view = try output.view(offset: viewOffset, count: 256)
            let arguments: [KernelArgument] = [.buffer(input), .buffer(view), .float(1), .int32(256)]
            // warm-up: makes the view's sub-buffer
            try await device.launch(kernel, .covering(256, groupSize: 64), arguments: arguments)
            let before = backend.counters.snapshot
            for _ in 0..<1000 {
                try await device.launch(kernel, .covering(256, groupSize: 64), arguments: arguments)
            }
            let after = backend.counters.snapshot
            #expect(after.allocations == before.allocations)
            #expect(after.frees == before.frees)
            #expect(after.copies == before.copies)
            #expect(after.bytesCopied == before.bytesCopied)
            #expect(after.launches == before.launches + 1000)
            #expect(try view.toArray() == (0..<256).map { Float($0) * 2 + 1 })
        }
        #expect(device.pool.statistics.bytesInUse == 0)
    }
}
