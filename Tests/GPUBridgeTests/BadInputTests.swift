import GPUBridge
import GPUBridgeTestSupport
import Testing

/// Every bad input gets a clear error naming the argument, the value and the limit, and leaves the pool as it was.
@Suite("Bad input")
struct BadInputTests {
    @Test("zero and negative sizes")
    func sizes() throws {
        let device = try makeCPUDevice()
        for n in [0, -1, Int.min] {
            let error = bridgeError { try device.makeRawBuffer(byteCount: n) }
            guard case let .invalidArgument(name, value, _) = error else {
                Issue.record("got \(String(describing: error))"); continue
            }
            #expect(name == "byteCount")
            #expect(value == String(n))
            let typed = bridgeError { try device.makeBuffer(of: Double.self, count: n) }
            #expect(typed?.description.contains("count") == true)
        }
        let overflow = bridgeError { try device.makeBuffer(of: Double.self, count: Int.max / 4) }
        #expect(overflow?.description.contains("count") == true)
        #expect(device.pool.statistics.bytesInUse == 0)
    }

    @Test("a view past the end")
    func viewPastEnd() throws {
        let device = try makeCPUDevice()
        let buffer = try device.makeBuffer(of: Float.self, count: 10)
        let error = bridgeError { try buffer.view(offset: 8, count: 3) }
        #expect(error == .outOfBounds(name: "view", offset: 8, length: 3, limit: 10))
        #expect(error?.description.contains("exceeds 10") == true)
        #expect(bridgeError { try buffer.view(offset: -1, count: 3) } != nil)
        #expect(bridgeError { try buffer.view(offset: 2, count: 0) } != nil)
        #expect(
            bridgeError { try buffer.raw.view(offset: 0, byteCount: 41) }
                == .outOfBounds(name: "view", offset: 0, length: 41, limit: 40))
    }

    @Test("a copy whose length does not match, an offset past the end, a host array too short")
    func copies() throws {
        let device = try makeCPUDevice()
        let buffer = try device.makeBuffer(of: Int32.self, count: 10)
        // More elements than the buffer holds.
        #expect(
            bridgeError { try buffer.copy(from: [Int32](repeating: 1, count: 11)) }
                == .outOfBounds(name: "destination", offset: 0, length: 11, limit: 10))
        // Offset past the end.
        #expect(
            bridgeError { try buffer.copy(from: [1, 2], toOffset: 11) }
                == .outOfBounds(name: "destination", offset: 11, length: 2, limit: 10))
        #expect(bridgeError { try buffer.toArray(offset: 12) } != nil)
        // Host array too short for the count asked.
        #expect(
            bridgeError { try buffer.copy(from: [1, 2, 3], count: 5) }
                == .outOfBounds(name: "source array", offset: 0, length: 5, limit: 3))
        var small = [Int32](repeating: 0, count: 4)
        #expect(
            bridgeError { try buffer.copy(to: &small, count: 5) }
                == .outOfBounds(name: "destination array", offset: 0, length: 5, limit: 4))
        // Device-to-device copy longer than the destination.
        let other = try device.makeBuffer(of: Int32.self, count: 20)
        let raw = bridgeError { try buffer.raw.enqueueCopy(from: other.raw, byteCount: 80) }
        #expect(raw == .outOfBounds(name: "destination", offset: 0, length: 80, limit: 40))
        // Host buffer too short for an async copy.
        let host = try device.makeHostBuffer(byteCount: 8)
        #expect(bridgeError { try buffer.enqueueCopy(from: host, count: 3) } != nil)
        #expect(bridgeError { try buffer.raw.enqueueFill(pattern: [1, 2, 3]) } != nil)
    }

    @Test("launches with zero or oversized dimensions")
    func launchShapes() async throws {
        let device = try makeCPUDevice()
        let kernel = try device.compile(addConstantKernel)
        let data = try device.makeBuffer(copying: [Float](repeating: 0, count: 64))
        let args: [KernelArgument] = [.buffer(data), .float(1), .int32(64)]
        let shapes: [(Launch, String)] = [
            (Launch(groups: Extent3(0), groupSize: Extent3(64)), "groups.x"),
            (Launch(groups: Extent3(1), groupSize: Extent3(0)), "groupSize.x"),
            (Launch(groups: Extent3(1), groupSize: Extent3(-4)), "groupSize.x"),
            (Launch(groups: Extent3(1), groupSize: Extent3(2048)), "groupSize.x"),
            (Launch(groups: Extent3(1, 1), groupSize: Extent3(64, 64)), "groupSize"),
            (Launch(groups: Extent3(1, 70_000), groupSize: Extent3(1)), "groups.y"),
            (Launch(groups: Extent3(1), groupSize: Extent3(64), sharedMemoryBytes: 1), "sharedMemoryBytes"),
        ]
        for (launch, name) in shapes {
            let error = await bridgeError { try await device.launch(kernel, launch, arguments: args) }
            guard case let .invalidLaunch(got, _, limit) = error else {
                Issue.record("\(launch): got \(String(describing: error))"); continue
            }
            #expect(got == name)
            #expect(!limit.isEmpty)
        }
        #expect(try data.toArray().allSatisfy { $0 == 0 })  // nothing ran
    }

    @Test("argument lists that do not match the kernel")
    func arguments() async throws {
        let device = try makeCPUDevice()
        let kernel = try device.compile(addConstantKernel)
        let data = try device.makeBuffer(of: Float.self, count: 64)
        let launch = Launch.covering(64)
        // Too short.
        let short = await bridgeError {
            try await device.launch(kernel, launch, arguments: [.buffer(data), .float(1)])
        }
        #expect(short?.description.contains("expected 3 arguments") == true)
        // Wrong scalar type.
        let type = await bridgeError {
            try await device.launch(kernel, launch, arguments: [.buffer(data), .double(1), .int32(64)])
        }
        #expect(type?.description.contains("float32") == true)
        // Scalar where a buffer belongs.
        let kind = await bridgeError {
            try await device.launch(kernel, launch, arguments: [.int32(1), .float(1), .int32(64)])
        }
        #expect(kind?.description.contains("argument 0") == true)
        // The count argument reaches past the buffer.
        let extent = await bridgeError {
            try await device.launch(kernel, .covering(65), arguments: [.buffer(data), .float(1), .int32(65)])
        }
        #expect(extent?.description.contains("holds 64 elements") == true)
    }

    @Test("a buffer or kernel from another device")
    func otherDevice() async throws {
        let first = try makeCPUDevice(ordinal: 0)
        let second = try makeCPUDevice(ordinal: 1)
        let kernel = try first.compile(addConstantKernel)
        let foreign = try second.makeBuffer(of: Float.self, count: 64)
        let error = await bridgeError {
            try await first.launch(kernel, .covering(64), arguments: [.buffer(foreign), .float(1), .int32(64)])
        }
        #expect(error == .wrongDevice(name: "argument 0 of 'add_constant'", expected: "cpu:0", actual: "cpu:1"))
        let mine = try first.makeBuffer(of: Float.self, count: 64)
        let wrongKernel = await bridgeError {
            try await second.launch(kernel, .covering(64), arguments: [.buffer(mine), .float(1), .int32(64)])
        }
        #expect(wrongKernel?.description.contains("cpu:0") == true)
        let copy = await bridgeError { try await mine.copy(from: foreign) }
        #expect(copy == .wrongDevice(name: "source", expected: "cpu:0", actual: "cpu:1"))
        let host = try second.makeHostBuffer(byteCount: 256)
        #expect(bridgeError { try mine.enqueueCopy(from: host) } != nil)
    }

    @Test("two Device objects with the same id are told apart in the error")
    func sameIdOtherDevice() async throws {
        let first = try makeCPUDevice()
        let second = try makeCPUDevice()  // also cpu:0
        #expect(first.id == second.id && first.serial != second.serial)
        let kernel = try first.compile(addConstantKernel)
        let foreign = try second.makeBuffer(of: Float.self, count: 64)
        let error = await bridgeError {
            try await first.launch(kernel, .covering(64), arguments: [.buffer(foreign), .float(1), .int32(64)])
        }
        #expect(
            error
                == .wrongDevice(
                    name: "argument 0 of 'add_constant'", expected: "cpu:0 (Device object #\(first.serial))",
                    actual: "cpu:0 (Device object #\(second.serial))"))
        let mine = try first.makeBuffer(of: Float.self, count: 64)
        let copy = await bridgeError { try await mine.copy(from: foreign) }
        #expect(
            copy?.description
                == "'source' belongs to device cpu:0 (Device object #\(second.serial)), but was used on device cpu:0 (Device object #\(first.serial))"
        )
    }

    @Test("errors from inside a Swift kernel name the kernel")
    func swiftKernelErrorsNameTheKernel() async throws {
        let device = try makeCPUDevice()
        let kernel = try device.compile(
            KernelSource(name: "reads_a_scalar_as_buffer") { context in
                _ = try context.buffer(0, as: Float.self)
            })
        let error = await bridgeError { try await device.launch(kernel, .covering(1), arguments: [.int32(3)]) }
        guard case let .argumentMismatch(name, detail) = error else {
            Issue.record("expected argumentMismatch, got \(String(describing: error))"); return
        }
        #expect(name == "reads_a_scalar_as_buffer")
        #expect(detail.contains("argument 0 is a scalar"))
        struct Refusal: Error {}
        let throwing = try device.compile(KernelSource(name: "throws_its_own") { _ in throw Refusal() })
        let other = await bridgeError { try await device.launch(throwing, .covering(1), arguments: []) }
        #expect(other?.description.contains("kernel 'throws_its_own'") == true)
    }

    @Test("every error path leaves the pool where it started")
    func nothingLeaked() async throws {
        let device = try makeCPUDevice()
        let start = device.pool.statistics
        do {
            let buffer = try device.makeBuffer(of: Float.self, count: 100)
            _ = bridgeError { try buffer.view(offset: 99, count: 2) }
            _ = bridgeError { try buffer.copy(from: [Float](repeating: 0, count: 101)) }
            _ = bridgeError { try device.makeRawBuffer(byteCount: -5) }
            let kernel = try device.compile(addConstantKernel)
            _ = await bridgeError {
                try await device.launch(kernel, .covering(101), arguments: [.buffer(buffer), .float(0), .int32(101)])
            }
        }
        let end = device.pool.statistics
        #expect(end.bytesInUse == start.bytesInUse)
        #expect(end.blocksInUse == start.blocksInUse)
    }

    @Test("empty kernel names and entry points")
    func emptyNames() throws {
        let device = try makeCPUDevice()
        var source = addConstantKernel
        source.name = ""
        #expect(bridgeError { try device.compile(source) }?.description.contains("source.name") == true)
        let text = KernelSource(name: "k", language: .openCLC, text: "__kernel void k() {}", entryPoint: "k")
        guard case .unsupported = bridgeError({ try device.compile(text) }) else {
            Issue.record("expected unsupported"); return
        }
    }
}
