#if SwiftKernels
    import GPUBridge
    import GPUBridgeKernels
    import Testing

    @Suite("Swift kernels with shared arrays and barriers, on the CPU backend and OpenCL")
    struct SwiftKernelBarrierTests {
        @Test("the text declares the shared array and places each barrier")
        func text() throws {
            let text = try #require(groupSumsKernel.portable?.text)
            #expect(text.contains("GB_SHARED float tile[256];"))
            #expect(text.components(separatedBy: "GB_BARRIER();").count == 3)
            #expect(groupSumsKernel.swift?.scheduling == .perGroup)
            #expect(saxpyKernel.swift?.scheduling == .perItem)
        }

        static func launch(
            _ definition: KernelDefinition, on device: Device, groups: Int, groupSize: Int,
            _ arguments: [KernelArgument]
        ) async throws {
            let kernel = try device.compile(try definition.source(for: device.id.backend))
            try await device.launch(
                kernel, Launch(groups: Extent3(groups), groupSize: Extent3(groupSize)), arguments: arguments)
        }

        @Test("tree reduction on the CPU backend, exactly as the same tree on the host")
        func sumsCPU() async throws { try await Self.sums(try KernelDevices.cpu()) }

        @Test(
            "tree reduction on OpenCL, exactly", .enabled(if: KernelDevices.openCL != nil, KernelDevices.openCLReason))
        func sumsOpenCL() async throws { try await Self.sums(try KernelDevices.openCLDevice()) }

        static func sums(_ devices: [Device]) async throws {
            let n = 256 * 37 - 100  // the last group is partly empty
            let groups = (n + 255) / 256
            let input = (0..<n).map { Float(($0 * 7_919) % 1_000) * 0.001 - 0.3 }
            // The same tree, on the host: the additions in the kernel's order.
            let expected = (0..<groups).map { g -> Float in
                var tile = (0..<256).map { g * 256 + $0 < n ? input[g * 256 + $0] : 0 }
                var half = 128
                while half > 0 {
                    for l in 0..<half { tile[l] += tile[l + half] }
                    half /= 2
                }
                return tile[0]
            }
            for device in devices {
                let ins = try device.makeBuffer(copying: input)
                let outs = try device.makeBuffer(copying: [Float](repeating: .nan, count: groups))
                try await launch(
                    groupSumsKernel, on: device, groups: groups, groupSize: 256,
                    [.buffer(ins), .buffer(outs), .int32(Int32(n))])
                #expect(try outs.toArray() == expected, "\(device.id)")
            }
        }

        @Test("prefix sums on the CPU backend, exactly")
        func scanCPU() async throws { try await Self.scan(try KernelDevices.cpu()) }

        @Test("prefix sums on OpenCL, exactly", .enabled(if: KernelDevices.openCL != nil, KernelDevices.openCLReason))
        func scanOpenCL() async throws { try await Self.scan(try KernelDevices.openCLDevice()) }

        static func scan(_ devices: [Device]) async throws {
            let n = 128 * 20
            let input = (0..<n).map { Int32(($0 * 31) % 17) - 8 }
            var expected = input
            for g in 0..<20 {
                for l in 1..<128 { expected[g * 128 + l] += expected[g * 128 + l - 1] }
            }
            for device in devices {
                let values = try device.makeBuffer(copying: input)
                try await launch(
                    groupScanKernel, on: device, groups: 20, groupSize: 128, [.buffer(values), .int32(Int32(n))])
                #expect(try values.toArray() == expected, "\(device.id)")
            }
        }

        @Test("a for loop with barriers on the CPU backend")
        func rotateCPU() async throws { try await Self.rotate(try KernelDevices.cpu()) }

        @Test(
            "a for loop with barriers on OpenCL", .enabled(if: KernelDevices.openCL != nil, KernelDevices.openCLReason))
        func rotateOpenCL() async throws { try await Self.rotate(try KernelDevices.openCLDevice()) }

        static func rotate(_ devices: [Device]) async throws {
            let groups = 9
            let input = (0..<64 * groups).map { Float($0) }
            let expected = (0..<64 * groups).map { (index: Int) -> Float in
                Float(index / 64 * 64 + (index % 64 + 5) % 64)
            }
            for device in devices {
                let values = try device.makeBuffer(copying: input)
                try await launch(
                    groupRotateKernel, on: device, groups: groups, groupSize: 64, [.buffer(values), .int32(5)])
                #expect(try values.toArray() == expected, "\(device.id)")
            }
        }

        @Test("uniform if/else, return and break around barriers on the CPU backend", arguments: [(3, 2), (9, 4)])
        func branchesCPU(stop: Int32, rounds: Int32) async throws {
            try await Self.branches(try KernelDevices.cpu(), stop: stop, rounds: rounds)
        }

        @Test(
            "uniform if/else, return and break around barriers on OpenCL",
            .enabled(if: KernelDevices.openCL != nil, KernelDevices.openCLReason), arguments: [(3, 2), (9, 4)])
        func branchesOpenCL(stop: Int32, rounds: Int32) async throws {
            try await Self.branches(try KernelDevices.openCLDevice(), stop: stop, rounds: rounds)
        }

        static func branches(_ devices: [Device], stop: Int32, rounds: Int32) async throws {
            let groups = 7, active = 5
            let input = (0..<64 * groups).map { Float($0) }
            let added = Float(min(stop, rounds))
            let expected = (0..<64 * groups).map { (index: Int) -> Float in
                let group = index / 64, lid = index % 64
                if group >= active { return input[index] }
                let from = group % 2 == 0 ? 63 - lid : (lid + 1) % 64
                return input[group * 64 + from] + added
            }
            for device in devices {
                let values = try device.makeBuffer(copying: input)
                try await launch(
                    groupBranchesKernel, on: device, groups: groups, groupSize: 64,
                    [.buffer(values), .int32(Int32(active)), .int32(rounds), .int32(stop)])
                #expect(try values.toArray() == expected, "\(device.id) stop \(stop) rounds \(rounds)")
            }
        }
    }
#endif
