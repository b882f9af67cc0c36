import GPUBridge
import GPUBridgeTestSupport
import GPUBridgeOpenCL
import Testing

@Suite("OpenCL memory", .enabled(if: OpenCLTestEnvironment.available, OpenCLTestEnvironment.skipReason))
struct MemoryTests {
    @Test("a view at an aligned offset is a kernel argument; an unaligned one is refused naming the alignment")
    func views() async throws {
        let (device, backend) = try makeOpenCLDevice()
        let alignment = device.info.capabilities.viewOffsetAlignment
        let stride = MemoryLayout<Float>.stride
        let count = 4096
        do {
            let kernel = try device.compile(writeIndexKernel)
            let buffer = try device.makeBuffer(of: Float.self, count: count)
            try await buffer.fill(-1)
            let first = 3 * alignment / stride, second = 7 * alignment / stride
            let viewA = try buffer.view(offset: first, count: 100)
            let viewB = try buffer.view(offset: second, count: 50)
            try await device.launch(
                kernel, .covering(100, groupSize: 32), arguments: [.buffer(viewA), .int32(100), .float(1000)])
            try await device.launch(
                kernel, .covering(50, groupSize: 32), arguments: [.buffer(viewB), .int32(50), .float(5000)])
            let values = try buffer.toArray()
            var expected = [Float](repeating: -1, count: count)
            for i in 0..<100 { expected[first + i] = 1000 + Float(i) }
            for i in 0..<50 { expected[second + i] = 5000 + Float(i) }
            #expect(values == expected)
            #expect(try viewA.toArray() == (0..<100).map { 1000 + Float($0) })

            if alignment > stride {
                let error = bridgeError { try buffer.view(offset: 1, count: 10) }
                guard case let .invalidArgument(name, _, limit) = error else {
                    Issue.record("expected invalidArgument, got \(String(describing: error))")
                    return
                }
                #expect(name == "offset")
                #expect(limit.contains("multiples of \(alignment) bytes"))
            }
        }
        // Both sub-buffers went with their views; the blocks went back to the pool.
        #expect(backend.counters.frees >= 2)
        #expect(device.pool.statistics.bytesInUse == 0)
    }

    @Test("an async copy from an array the caller drops at once lands whole")
    func enqueueFromArray() async throws {
        let (device, _) = try makeOpenCLDevice()
        do {
            let n = 200_000
            let buffer = try device.makeBuffer(of: Int32.self, count: n)
            let completion: Completion
            do {
                let values = (0..<n).map { Int32($0 &* 3) }
                completion = try buffer.enqueueCopy(from: values)
            }
            try await completion.wait()
            #expect(try buffer.toArray() == (0..<n).map { Int32($0 &* 3) })
        }
        #expect(device.pool.statistics.bytesInUse == 0)
    }

    /// Enqueues a copy from a host buffer that only the completion keeps alive once this returns.
    private func enqueueFromTemporaryHost(_ buffer: Buffer<Float>, values: [Float]) throws -> Completion {
        let host = try buffer.device.makeHostBuffer(byteCount: values.count * MemoryLayout<Float>.stride)
        try host.write(values)
        return try buffer.enqueueCopy(from: host)
    }

    @Test("an async copy from a HostBuffer the caller dropped completes with the right data")
    func enqueueFromDroppedHostBuffer() async throws {
        let (device, _) = try makeOpenCLDevice()
        do {
            let n = 100_000
            let values = (0..<n).map { Float($0) * 0.5 }
            let buffer = try device.makeBuffer(of: Float.self, count: n)
            let completions = try (0..<4).map { _ in try enqueueFromTemporaryHost(buffer, values: values) }
            for completion in completions { try await completion.wait() }
            #expect(try buffer.toArray() == values)
        }
        #expect(device.pool.statistics.bytesInUse == 0)
    }

    @Test("async copies honour host and device offsets in both directions")
    func offsets() async throws {
        let (device, _) = try makeOpenCLDevice()
        do {
            let buffer = try device.makeBuffer(of: Float.self, count: 200)
            try await buffer.fill(-1)
            let source = try device.makeHostBuffer(byteCount: 100 * 4)
            try source.write((0..<100).map { Float($0) })
            try await buffer.enqueueCopy(from: source, hostOffset: 10, toOffset: 50, count: 30).wait()
            var expected = [Float](repeating: -1, count: 200)
            for i in 0..<30 { expected[50 + i] = Float(10 + i) }
            #expect(try buffer.toArray() == expected)

            let destination = try device.makeHostBuffer(byteCount: 40 * 4)
            try destination.write([Float](repeating: 0, count: 40))
            try await buffer.enqueueCopy(to: destination, hostOffset: 5, fromOffset: 50, count: 30).wait()
            let back = try destination.read(Float.self, count: 40)
            #expect(Array(back[0..<5]) == [0, 0, 0, 0, 0])
            #expect(Array(back[5..<35]) == (10..<40).map { Float($0) })
            #expect(Array(back[35..<40]) == [0, 0, 0, 0, 0])

            // Synchronous copies with offsets, device-to-device copies and fills at an offset.
            try buffer.copy(from: [7, 8, 9], toOffset: 197)
            #expect(try buffer.toArray(offset: 196, count: 4) == [-1, 7, 8, 9])
            let other = try device.makeBuffer(of: Float.self, count: 200)
            try await other.fill(0)
            try await other.copy(from: buffer, sourceOffset: 50, toOffset: 3, count: 30)
            try await other.fill(42, offset: 100, count: 10)
            let copied = try other.toArray()
            #expect(Array(copied[3..<33]) == (10..<40).map { Float($0) })
            #expect(copied[2] == 0 && copied[33] == 0)
            #expect(Array(copied[100..<110]) == [Float](repeating: 42, count: 10))
            #expect(copied[99] == 0 && copied[110] == 0)
        }
        #expect(device.pool.statistics.bytesInUse == 0)
    }

    @Test("a pinned HostBuffer round trip")
    func pinnedRoundTrip() async throws {
        let (device, backend) = try makeOpenCLDevice()
        do {
            let n = 1 << 20
            let values = (0..<n).map { UInt32(truncatingIfNeeded: $0 &* 2_654_435_761) }
            let upload = try device.makeHostBuffer(byteCount: n * 4, pinned: true)
            let download = try device.makeHostBuffer(byteCount: n * 4, pinned: true)
            #expect(upload.isPinned && download.isPinned)
            try upload.write(values)
            let buffer = try device.makeBuffer(of: UInt32.self, count: n)
            let copies = backend.counters.copies
            try await buffer.copy(from: upload)
            try await buffer.copy(to: download)
            #expect(backend.counters.copies == copies + 2)
            #expect(try download.read(UInt32.self, count: n) == values)
            let unpinned = try device.makeHostBuffer(byteCount: 64, pinned: false)
            #expect(!unpinned.isPinned)
        }
        #expect(device.pool.statistics.bytesInUse == 0)
    }

    @Test("synchronize waits for everything enqueued")
    func synchronize() async throws {
        let (device, _) = try makeOpenCLDevice()
        do {
            let kernel = try device.compile(writeIndexKernel)
            let out = try device.makeBuffer(of: Float.self, count: 1 << 16)
            let completions = try (0..<20).map { i in
                try device.enqueue(
                    kernel, .covering(1 << 16), arguments: [.buffer(out), .int32(1 << 16), .float(Float(i))])
            }
            try await device.synchronize()
            #expect(completions.allSatisfy { $0.isComplete })
            #expect(try out.toArray(offset: 10, count: 1) == [29])
        }
        #expect(device.pool.statistics.bytesInUse == 0)
    }
}
