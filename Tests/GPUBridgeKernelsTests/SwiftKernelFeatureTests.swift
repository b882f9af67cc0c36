#if SwiftKernels
    import Foundation
    import GPUBridge
    import GPUBridgeKernels
    import Testing

    @Suite("Swift kernels: helper functions (@GPUFunction) and atomics")
    struct SwiftKernelFeatureTests {
        @Test("a kernel's text holds each helper it calls once, callees first")
        func helperText() throws {
            let text = try #require(activateKernel.portable?.text)
            let softplus = try #require(text.range(of: "GB_DEVICE float softplus(float x) {"))
            let scaled = try #require(text.range(of: "GB_DEVICE float scaledSoftplus(float x, float factor) {"))
            let kernel = try #require(text.range(of: "GB_KERNEL activate("))
            #expect(softplus.lowerBound < scaled.lowerBound && scaled.lowerBound < kernel.lowerBound)
            #expect(text.components(separatedBy: "GB_DEVICE float softplus(").count == 2)
            #expect(text.contains("const float s = scaledSoftplus(v[i], factor);"))
            #expect(scaledSoftplusGPUFunction.uses.map(\.name) == ["softplus"])
        }

        @Test("the atomics become the prelude's atomic macros")
        func atomicText() throws {
            let text = try #require(histogramKernel.portable?.text)
            #expect(text.contains("const int before = GB_ATOMIC_ADD_INT(&bins[((int)((v % binCount)))], 1);"))
            #expect(text.contains("GB_ATOMIC_MIN_UINT(&stats[0], v);"))
            #expect(text.contains("GB_ATOMIC_MAX_INT(&spread[1], (((int)((v % 1000u))) - 500));"))
            let floats = try #require(floatAtomicsKernel.portable?.text)
            #expect(floats.contains("GB_ATOMIC_ADD_FLOAT(&totals[0], v);"))
            #expect(floats.contains("GB_ATOMIC_MIN_FLOAT(&totals[1], v);"))
            #expect(floats.contains("GB_ATOMIC_MAX_FLOAT(&totals[2], v);"))
            #expect(floats.contains("const float ticket = GB_ATOMIC_ADD_FLOAT(&totals[3], 1.0f);"))
        }

        @Test("Float atomicMin and atomicMax never store a NaN, order -0 and 0 as equal, and return the value before")
        func floatAtomicEdges() {
            let storage = UnsafeMutableBufferPointer<Float>.allocate(capacity: 3)
            defer { storage.deallocate() }
            _ = storage.initialize(from: [1, 2, 0])
            let cells = MutableDeviceArray(storage)
            #expect(cells.atomicMin(0, .nan) == 1)
            #expect(cells.atomicMax(1, .nan) == 2)
            #expect(cells.atomicMin(2, -0.0) == 0)
            #expect(storage[2].sign == .plus)
            #expect(cells.atomicAdd(0, 0.5) == 1)
            #expect(cells.atomicMin(1, -3) == 2)
            #expect(cells.atomicMax(2, .infinity) == 0)
            #expect(Array(storage) == [1.5, -3, .infinity])
        }

        @Test("atomicMin and atomicMax compare UInt32 as unsigned and return the value before")
        func unsignedAtomics() {
            let storage = UnsafeMutableBufferPointer<UInt32>.allocate(capacity: 2)
            defer { storage.deallocate() }
            _ = storage.initialize(from: [UInt32.max, 5])
            let cells = MutableDeviceArray(storage)
            #expect(cells.atomicMin(0, 17) == UInt32.max)
            #expect(cells.atomicMax(1, 0x8000_0000) == 5)
            #expect(cells.atomicAdd(1, 1) == 0x8000_0000)
            #expect(Array(storage) == [17, 0x8000_0001])
        }

        @Test("helpers on the CPU backend")
        func helpersCPU() async throws { try await Self.helpers(try KernelDevices.cpu()) }

        @Test("helpers on OpenCL", .enabled(if: KernelDevices.openCL != nil, KernelDevices.openCLReason))
        func helpersOpenCL() async throws { try await Self.helpers(try KernelDevices.openCLDevice()) }

        static func helpers(_ devices: [Device]) async throws {
            let n = 2_000
            let input = (0..<n).map { Float($0 - 1_000) * 0.031 }
            func softplus(_ x: Float) -> Float { x > 20 ? x : Foundation.log(1 + Foundation.exp(x)) }
            let expected = input.map { softplus($0) * 0.5 + softplus(-$0) }
            for device in devices {
                let values = try device.makeBuffer(copying: input)
                try await run(activateKernel, on: device, count: n, [.buffer(values), .float(0.5), .int32(Int32(n))])
                let out = try values.toArray()
                let worst = zip(out, expected).map { Swift.abs($0 - $1) / Swift.max(1, Swift.abs($1)) }.max() ?? .nan
                #expect(worst <= 1e-5, "\(device.id): largest relative difference \(worst)")
            }
        }

        @Test("atomic add, min and max on the CPU backend: exact under concurrent groups")
        func atomicsCPU() async throws { try await Self.atomics(try KernelDevices.cpu()) }

        @Test(
            "atomic add, min and max on OpenCL, exact",
            .enabled(if: KernelDevices.openCL != nil, KernelDevices.openCLReason))
        func atomicsOpenCL() async throws { try await Self.atomics(try KernelDevices.openCLDevice()) }

        @Test("Float atomic add, min and max on the CPU backend: exact sums of integers, every ticket once")
        func floatAtomicsCPU() async throws { try await Self.floatAtomics(try KernelDevices.cpu()) }

        @Test(
            "Float atomic add, min and max on OpenCL: exact sums of integers, every ticket once",
            .enabled(if: KernelDevices.openCL != nil, KernelDevices.openCLReason))
        func floatAtomicsOpenCL() async throws { try await Self.floatAtomics(try KernelDevices.openCLDevice()) }

        static func floatAtomics(_ devices: [Device]) async throws {
            let n = 50_000
            // Integers, so every partial sum is exact (|sum| < 2^24) and the order of the adds cannot show.
            let input = (0..<n).map { Float(Int(UInt32(truncatingIfNeeded: ($0 &* 2_654_435_761) >> 9) % 601) - 300) }
            let expected: [Float] = [input.reduce(0, +), input.min()!, input.max()!, Float(n)]
            for device in devices {
                for optimize in [true, false] {
                    let values = try device.makeBuffer(copying: input)
                    let totals = try device.makeBuffer(copying: [Float(0), 1e30, -1e30, 0])
                    let tickets = try device.makeBuffer(copying: [UInt32](repeating: 7, count: n + 1))
                    let kernel = try device.compile(
                        try floatAtomicsKernel.source(for: device.id.backend),
                        options: CompileOptions(optimize: optimize))
                    try await device.launch(
                        kernel, .covering(n, groupSize: 64),
                        arguments: [.buffer(values), .buffer(totals), .buffer(tickets), .int32(Int32(n))])
                    #expect(try totals.toArray() == expected, "\(device.id), optimize \(optimize)")
                    let marks = try tickets.toArray()
                    #expect(marks.prefix(n).allSatisfy { $0 == 8 }, "\(device.id): every ticket taken once")
                    #expect(marks[n] == 7, "\(device.id): no ticket past n")
                }
            }
        }

        static func atomics(_ devices: [Device]) async throws {
            let n = 200_000
            let binCount: UInt32 = 61
            let input = (0..<n).map { UInt32(truncatingIfNeeded: ($0 &* 2_654_435_761) >> 7) % 1_000_003 + 17 }
            var bins = [Int32](repeating: 0, count: Int(binCount))
            for v in input { bins[Int(v % binCount)] += 1 }
            let hit = UInt32(bins.filter { $0 > 0 }.count)
            let stats: [UInt32] = [input.min()!, input.max()!, hit]
            let shifted = input.map { Int32($0 % 1000) - 500 }
            let signed: [Int32] = [shifted.min()!, shifted.max()!]
            for device in devices {
                let values = try device.makeBuffer(copying: input)
                let binBuffer = try device.makeBuffer(copying: [Int32](repeating: 0, count: Int(binCount)))
                let statBuffer = try device.makeBuffer(copying: [UInt32.max, 0, 0])
                let signedBuffer = try device.makeBuffer(copying: [Int32.max, Int32.min])
                try await run(
                    histogramKernel, on: device, count: n,
                    [
                        .buffer(values), .buffer(binBuffer), .buffer(statBuffer), .buffer(signedBuffer),
                        .uint32(binCount), .int32(Int32(n)),
                    ])
                let gotBins = try binBuffer.toArray()
                let gotStats = try statBuffer.toArray()
                let gotSpread = try signedBuffer.toArray()
                #expect(gotBins == bins, "\(device.id)")
                #expect(gotStats == stats, "\(device.id): [min, max, bins hit]")
                #expect(gotSpread == signed, "\(device.id)")
            }
        }
    }
#endif
