import Foundation
import Testing

@testable import GPUBridge

/// Buffers over a caller's array on the CPU backend (`Device.borrowBuffer`): no copy, read-only, and the operations
/// that use them for their inputs.
@Suite("Borrowed read-only buffers: CPU operations read the caller's arrays in place")
struct BorrowedBufferTests {
    static func cpu() throws -> Device { try Device(backend: CPUBackend(cores: 2)) }

    /// A kernel that doubles `x` into `y`, with `x` declared as `access`.
    static func double(_ device: Device, access: BufferAccess) throws -> Kernel {
        try device.compile(
            KernelSource(
                name: "double_\(access.rawValue)",
                parameters: [
                    .buffer("x", Float.self, access: access), .buffer("y", Float.self),
                    .scalar(name: "n", type: .int32),
                ]
            ) { context in
                let x = try context.buffer(0, as: Float.self), y = try context.buffer(1, as: Float.self)
                for i in context.items where i < x.count { y[i] = 2 * x[i] }
            })
    }

    @Test("the buffer is the array's own storage, and it outlives the caller's copy")
    func noCopy() throws {
        let device = try Self.cpu()
        var values: [Float]? = (0..<1000).map(Float.init)
        let address = values!.withUnsafeBytes { UInt64(UInt(bitPattern: $0.baseAddress!)) }
        let buffer = try #require(device.borrowBuffer(values!))
        #expect(buffer.raw.address == address)
        #expect(buffer.raw.isReadOnly)
        #expect(buffer.count == 1000)
        values = nil
        #expect(try buffer.toArray() == (0..<1000).map(Float.init))
    }

    @Test("an empty array is not borrowed")
    func empty() throws {
        #expect(try Self.cpu().borrowBuffer([Float]()) == nil)
    }

    @Test("a kernel reads it through a read-only parameter, and the caller's array is unchanged")
    func readOnlyLaunch() async throws {
        let device = try Self.cpu()
        let x: [Float] = (0..<4096).map { Float($0) - 100 }
        let y = try device.makeBuffer(of: Float.self, count: x.count)
        try await y.fill(-1)
        try await device.launch(
            try Self.double(device, access: .readOnly), .covering(x.count),
            arguments: [.buffer(try #require(device.borrowBuffer(x))), .buffer(y), .int32(Int32(x.count))])
        #expect(try y.toArray() == x.map { 2 * $0 })
        #expect(x == (0..<4096).map { Float($0) - 100 })
    }

    @Test("a launch passing it to a parameter the kernel may write fails, naming the argument")
    func writableParameterRefused() async throws {
        let device = try Self.cpu()
        let x: [Float] = [1, 2, 3]
        let y = try device.makeBuffer(of: Float.self, count: 3)
        let borrowed = try #require(device.borrowBuffer(x))
        do {
            try await device.launch(
                try Self.double(device, access: .readWrite), .covering(3),
                arguments: [.buffer(borrowed), .buffer(y), .int32(3)])
            Issue.record("the launch was accepted")
        } catch let GPUBridgeError.invalidArgument(name, _, limit) {
            #expect(name == "argument 0 of 'double_read-write'")
            #expect(limit.contains(".readOnly"))
        }
        // A kernel with no declared parameters cannot promise to only read it either.
        let undeclared = try device.compile(KernelSource(name: "undeclared") { _ in })
        await #expect(throws: GPUBridgeError.self) {
            try await device.launch(undeclared, .covering(3), arguments: [.buffer(borrowed)])
        }
        #expect(x == [1, 2, 3])
    }

    @Test("copies and fills into it fail, and the array is unchanged")
    func writesRefused() async throws {
        let device = try Self.cpu()
        let x: [Float] = [1, 2, 3, 4]
        let borrowed = try #require(device.borrowBuffer(x))
        let other = try device.makeBuffer(copying: [Float](repeating: 9, count: 4))
        let host = try device.makeHostBuffer(byteCount: 16)
        #expect(throws: GPUBridgeError.self) { try borrowed.copy(from: [5, 6, 7, 8]) }
        #expect(throws: GPUBridgeError.self) { try borrowed.raw.enqueueCopy(from: other.raw) }
        #expect(throws: GPUBridgeError.self) { try borrowed.raw.enqueueCopy(from: host) }
        #expect(throws: GPUBridgeError.self) { try borrowed.raw.enqueueFill(pattern: [0]) }
        await #expect(throws: GPUBridgeError.self) { try await borrowed.fill(0) }
        #expect(x == [1, 2, 3, 4])
        // Reading from it is allowed: a copy out of it, into a buffer of the pool.
        try await other.copy(from: borrowed)
        #expect(try other.toArray() == [1, 2, 3, 4])
    }

    @Test("sum, dot, matmul and softmax copy no input bytes on the CPU backend, and are right")
    func operationsReadInPlace() async throws {
        let device = try Self.cpu()
        let catalog = KernelCatalog()
        let n = 1 << 20
        let a = (0..<n).map { Float($0 % 7) - 3 }, b = (0..<n).map { Float($0 % 5) }
        // Compile first, so that only the operations' own copies are counted.
        _ = try await Operations.sum.run([1], on: device, catalog: catalog)
        _ = try await Operations.dot.run(.init([1], [1]), on: device, catalog: catalog)

        var before = device.counters.bytesCopied
        let sum = try await Operations.sum.run(a, on: device, catalog: catalog)
        // Only the partial sums and the result move: far less than the 4 MiB input.
        #expect(device.counters.bytesCopied - before < 64 << 10)
        #expect(Double(sum) == a.reduce(0.0) { $0 + Double($1) })

        before = device.counters.bytesCopied
        let dot = try await Operations.dot.run(.init(a, b), on: device, catalog: catalog)
        #expect(device.counters.bytesCopied - before < 64 << 10)
        #expect(Double(dot) == zip(a, b).reduce(0.0) { $0 + Double($1.0) * Double($1.1) })

        let m = 64, k = 32, cols = 48
        let ma = (0..<(m * k)).map { Float($0 % 11) - 5 }, mb = (0..<(k * cols)).map { Float($0 % 13) - 6 }
        before = device.counters.bytesCopied
        let c = try await Operations.matmul.run(
            .init(a: ma, b: mb, m: m, n: cols, k: k), on: device, catalog: catalog)
        // Only the result is read back.
        #expect(device.counters.bytesCopied - before == 4 * m * cols)
        var expected = [Float](repeating: 0, count: m * cols)
        for i in 0..<m {
            for j in 0..<cols {
                var s: Float = 0
                for p in 0..<k { s += ma[i * k + p] * mb[p * cols + j] }
                expected[i * cols + j] = s
            }
        }
        #expect(c == expected)

        let x: [Float] = [0, 1, 2, 3, 4, 5]
        before = device.counters.bytesCopied
        let y = try await Operations.softmax.run((x: x, rows: 2, cols: 3), on: device, catalog: catalog)
        #expect(device.counters.bytesCopied - before == 4 * x.count)
        let row: [Float] = [0, 1, 2].map { Float(exp(Double($0)) / (1 + exp(1) + exp(2))) }
        for (got, want) in zip(y, row + row) { #expect(abs(got - want) < 1e-6) }
        #expect(x == [0, 1, 2, 3, 4, 5])
    }

    @Test("a catalog kernel that replaces a built-in and may write its input gets a copy")
    func replacedKernelGetsACopy() async throws {
        let device = try Self.cpu()
        let catalog = KernelCatalog()
        // A sum whose first stage declares (and does) a write to its input: it zeroes x after summing it.
        try catalog.register(
            KernelDefinition(
                id: "sum_partial", summary: "a sum that clears its input",
                parameters: [
                    .buffer("x", Float.self), .buffer("partial", Float.self), .scalar(name: "n", type: .int32),
                ],
                // `.threaded`: one call over all groups, so the serial sum below sees the whole input.
                portableText: nil, entryPoint: "sum_partial", scheduling: .threaded
            ) { context in
                let x = try context.buffer(0, as: Float.self), partial = try context.buffer(1, as: Float.self)
                let n = Int(try context.int32(2))
                var total: Float = 0
                for i in 0..<n { total += x[i] }
                for i in 0..<n { x[i] = 0 }
                for g in 0..<partial.count { partial[g] = 0 }
                partial[0] = total
            })
        let values: [Float] = [1, 2, 3, 4]
        let before = device.counters.bytesCopied
        let sum = try await Operations.sum.run(values, on: device, catalog: catalog)
        #expect(sum == 10)
        // The input was copied to the device (16 bytes), and the caller's array was not touched.
        #expect(device.counters.bytesCopied - before >= 16)
        #expect(values == [1, 2, 3, 4])
    }
}
