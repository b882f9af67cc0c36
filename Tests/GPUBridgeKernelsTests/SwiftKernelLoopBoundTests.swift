#if SwiftKernels
    import Foundation
    import GPUBridge
    import GPUBridgeKernels
    import Testing

    // Kernels whose body does nothing past `n` along dimension 0: the CPU loop stops at `n`
    // (`WorkItem.forEach(in:limit:)`). Each writes `a[i] + 1` where it works, so a sentinel shows any element written
    // that should not be, and any element not written that should be.

    /// The bound as the whole rest of the body.
    @GPUKernel
    func boundedIf(_ item: WorkItem, a: DeviceArray<Float>, c: MutableDeviceArray<Float>, n: Int32) {
        let i = item.globalID(0)
        if i < n { c[i] = a[i] + 1 }
    }

    /// The bound as an early return, with more work after it.
    @GPUKernel
    func boundedReturn(_ item: WorkItem, a: DeviceArray<Float>, c: MutableDeviceArray<Float>, n: Int32) {
        let i = item.globalID(0)
        if i >= n { return }
        let v = a[i]
        c[i] = v + 1
    }

    /// A two-dimensional launch bounded along x: row `globalID(1)` of width `width` (the launch's x size).
    @GPUKernel
    func boundedRows(_ item: WorkItem, a: DeviceArray<Float>, c: MutableDeviceArray<Float>, n: Int32, width: Int32) {
        let i = item.globalID(0)
        if i < n && item.globalID(1) >= 0 {
            let at = item.globalID(1) * width + i
            c[at] = a[at] + 1
        }
    }

    /// Not bounded: the statement after the `if` runs for every work-item.
    @GPUKernel
    func unboundedTail(_ item: WorkItem, c: MutableDeviceArray<Float>, marks: MutableDeviceArray<Float>, n: Int32) {
        let i = item.globalID(0)
        if i < n { c[i] = 1 }
        marks[i] = 2
    }

    @Suite("Swift kernels: the CPU loop stops where the body's bound does")
    struct SwiftKernelLoopBoundTests {
        static let sentinel: Float = -7

        /// Runs `definition` on the CPU over `launch` with inputs `a[i] = i` and outputs filled with the sentinel.
        static func run(
            _ definition: KernelDefinition, _ launch: Launch, count: Int, scalars: [KernelArgument]
        ) async throws -> [Float] {
            let device = try Device(backend: CPUBackend(ordinal: 0))
            let kernel = try device.compile(try definition.source(for: .cpu))
            let a = try device.makeBuffer(copying: (0..<count).map(Float.init))
            let c = try device.makeBuffer(copying: [Float](repeating: sentinel, count: count))
            try await device.launch(kernel, launch, arguments: [.buffer(a), .buffer(c)] + scalars)
            return try c.toArray()
        }

        @Test(
            "a bound inside, past, below and at the launch: exactly the first min(n, launch) elements are written",
            arguments: [0, -5, 1, 63, 64, 1_000, 1_023, 1_024, 5_000, Int(Int32.max)])
        func bounds(n: Int) async throws {
            let count = 1_024
            for definition in [boundedIfKernel, boundedReturnKernel] {
                let c = try await Self.run(
                    definition, .covering(count, groupSize: 64), count: count, scalars: [.int32(Int32(n))])
                let written = max(0, min(n, count))
                let expected = (0..<count).map { $0 < written ? Float($0) + 1 : Self.sentinel }
                #expect(c == expected, "\(definition.id), n = \(n)")
            }
        }

        @Test("a launch over several rows stops each row at the bound", arguments: [0, 5, 64, 100, 128])
        func rows(n: Int) async throws {
            let width = 128, rows = 3
            let launch = Launch(groups: Extent3(width / 64, rows), groupSize: Extent3(64, 1))
            let c = try await Self.run(
                boundedRowsKernel, launch, count: width * rows,
                scalars: [.int32(Int32(n)), .int32(Int32(width))])
            let expected = (0..<(width * rows)).map { $0 % width < n ? Float($0) + 1 : Self.sentinel }
            #expect(c == expected, "n = \(n)")
        }

        @Test("a body with work after its bound runs every work-item")
        func unbounded() async throws {
            let device = try Device(backend: CPUBackend(ordinal: 0))
            let kernel = try device.compile(try unboundedTailKernel.source(for: .cpu))
            let count = 256
            let c = try device.makeBuffer(copying: [Float](repeating: Self.sentinel, count: count))
            let marks = try device.makeBuffer(copying: [Float](repeating: Self.sentinel, count: count))
            try await device.launch(
                kernel, .covering(count, groupSize: 64), arguments: [.buffer(c), .buffer(marks), .int32(10)])
            #expect(try c.toArray() == (0..<count).map { $0 < 10 ? 1 : Self.sentinel })
            #expect(try marks.toArray() == [Float](repeating: 2, count: count))
        }

        @Test("a launch wider than Int32 along x is refused, naming the dimension and the limit")
        func tooWide() async throws {
            let device = try Device(backend: CPUBackend(ordinal: 0))
            let kernel = try device.compile(try boundedIfKernel.source(for: .cpu))
            let a = try device.makeBuffer(copying: [Float](repeating: 0, count: 4))
            let c = try device.makeBuffer(copying: [Float](repeating: Self.sentinel, count: 4))
            let launch = Launch(groups: Extent3(Int(Int32.max)), groupSize: Extent3(2))
            do {
                try await device.launch(kernel, launch, arguments: [.buffer(a), .buffer(c), .int32(4)])
                Issue.record("a launch of \(launch) ran")
            } catch {
                let text = "\(error)"
                #expect(text.contains("global size along x"), "\(text)")
                #expect(text.contains("2147483647 x 2"), "\(text)")
                #expect(text.contains("at most 2147483647"), "\(text)")
            }
            #expect(try c.toArray() == [Float](repeating: Self.sentinel, count: 4))
        }

        /// The CPU closures the macro writes, as the compiler expands them (`-dump-macro-expansions`).
        static let expansions = Result {
            try KernelTypeChecker.check(
                """
                import GPUBridgeKernels
                @GPUKernel func ifLast(_ item: WorkItem, c: MutableDeviceArray<Float>, n: Int32) {
                    let i = item.globalID(0)
                    if i < n { c[i] = 1 }
                }
                @GPUKernel func mirrored(_ item: WorkItem, c: MutableDeviceArray<Float>, m: Int32, n: Int32) {
                    let i = item.globalID(0)
                    if m > 0 && (n > i) { c[i] = 1 }
                }
                @GPUKernel func direct(_ item: WorkItem, c: MutableDeviceArray<Float>, n: Int32) {
                    if item.globalID(0) < n { c[item.globalID(0)] = 1 }
                }
                @GPUKernel func early(_ item: WorkItem, c: MutableDeviceArray<Float>, rows: Int32, n: Int32) {
                    let i = item.globalID(0)
                    let j = i
                    if item.globalID(1) >= rows || j >= n { return }
                    c[i] = 1
                }
                @GPUKernel func withElse(_ item: WorkItem, c: MutableDeviceArray<Float>, n: Int32) {
                    let i = item.globalID(0)
                    if i < n { c[i] = 1 } else { c[0] = 2 }
                }
                @GPUKernel func tail(_ item: WorkItem, c: MutableDeviceArray<Float>, n: Int32) {
                    let i = item.globalID(0)
                    if i < n { c[i] = 1 }
                    c[0] = 2
                }
                @GPUKernel func inclusive(_ item: WorkItem, c: MutableDeviceArray<Float>, n: Int32) {
                    let i = item.globalID(0)
                    if i <= n { c[i] = 1 }
                }
                @GPUKernel func otherDimension(_ item: WorkItem, c: MutableDeviceArray<Float>, n: Int32) {
                    let i = item.globalID(1)
                    if i < n { c[i] = 1 }
                }
                @GPUKernel func either(_ item: WorkItem, c: MutableDeviceArray<Float>, m: Int32, n: Int32) {
                    let i = item.globalID(0)
                    if i < n || m > 0 { c[i] = 1 }
                }
                @GPUKernel func workFirst(_ item: WorkItem, c: MutableDeviceArray<Float>, n: Int32) {
                    c[0] = 2
                    let i = item.globalID(0)
                    if i < n { c[i] = 1 }
                }
                @GPUKernel func localBound(_ item: WorkItem, c: MutableDeviceArray<Float>, n: Int32) {
                    let i = item.globalID(0)
                    let k = n
                    if i < k { c[i] = 1 }
                }
                @GPUKernel func wideBound(_ item: WorkItem, c: MutableDeviceArray<Float>, n: Int64) {
                    let i = item.globalID(0)
                    if Int64(i) < n { c[i] = 1 }
                }
                """, extraArguments: ["-Xfrontend", "-dump-macro-expansions"])
        }

        /// The CPU closure's loop for kernel `name`: its `WorkItem.forEach` line.
        static func loop(of name: String, in output: String) throws -> String {
            guard let start = output.range(of: "let \(name)Kernel = GPUBridge.KernelDefinition(") else {
                throw KernelTypeChecker.TypeCheckError(reason: "no expansion of \(name) in:\n\(output)")
            }
            let rest = output[start.upperBound...]
            guard let line = rest.split(separator: "\n").first(where: { $0.contains("WorkItem.forEach") }) else {
                throw KernelTypeChecker.TypeCheckError(reason: "no WorkItem.forEach in the expansion of \(name)")
            }
            return line.trimmingCharacters(in: .whitespaces)
        }

        @Test(
            "the macro bounds the loop for a guarded body and only then",
            arguments: [
                ("ifLast", "limit: Int(a1)"), ("mirrored", "limit: Int(a2)"), ("direct", "limit: Int(a1)"),
                ("early", "limit: Int(a2)"), ("withElse", nil), ("tail", nil), ("inclusive", nil),
                ("otherDimension", nil), ("either", nil), ("workFirst", nil), ("localBound", nil), ("wideBound", nil),
            ] as [(String, String?)])
        func expansion(name: String, limit: String?) throws {
            let (status, diagnostics, output) = try Self.expansions.get()
            #expect(status == 0, "\(diagnostics)")
            let loop = try Self.loop(of: name, in: output)
            if let limit {
                #expect(loop.contains("WorkItem.forEach(in: context, \(limit))"), "\(loop)")
            } else {
                #expect(loop.contains("WorkItem.forEach(in: context)"), "\(loop)")
            }
        }
    }
#endif
