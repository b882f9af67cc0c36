import GPUBridge
import GPUBridgeCUDA
import Testing

/// The CUDA backend's rules that need no driver: fills, shared memory, parameter sizes, error kinds, the device
/// description.
@Suite("CUDA launch and fill rules (no GPU needed)")
struct LaunchRulesTests {
    // MARK: Fills

    /// Applies `steps` to `bytes` as the driver would, checking each step's own rules (alignment of the wide
    /// memsets, copies within the region and not overlapping), and returns the result.
    private func apply(_ steps: [CUDAFillStep], address: UInt64, to bytes: [UInt8]) -> [UInt8]? {
        var memory = bytes
        for step in steps {
            switch step {
            case let .set8(offset, value, count):
                guard offset >= 0, offset + count <= memory.count else { return nil }
                for i in offset..<(offset + count) { memory[i] = value }
            case let .set16(offset, value, count):
                guard (address + UInt64(offset)) % 2 == 0, offset + 2 * count <= memory.count else { return nil }
                for k in 0..<count {
                    memory[offset + 2 * k] = UInt8(value & 0xFF)
                    memory[offset + 2 * k + 1] = UInt8(value >> 8)
                }
            case let .set32(offset, value, count):
                guard (address + UInt64(offset)) % 4 == 0, offset + 4 * count <= memory.count else { return nil }
                for k in 0..<count {
                    for j in 0..<4 { memory[offset + 4 * k + j] = UInt8((value >> (8 * UInt32(j))) & 0xFF) }
                }
            case let .copy(from, to, count):
                guard from + count <= to || to + count <= from, max(from, to) + count <= memory.count else {
                    return nil
                }
                for i in 0..<count { memory[to + i] = memory[from + i] }
            }
        }
        return memory
    }

    @Test("every pattern width at every address alignment fills exactly the region, with no strided passes")
    func fillPlanFillsExactly() throws {
        for width in [1, 2, 4, 8] {
            for misalignment in 0..<8 {
                for count in [0, 1, 2, 3, 5, 8, 13, 64, 100, 1001, 4096] {
                    let byteCount = width * count
                    // Distinct bytes (no shorter period), different for every case.
                    let pattern = (0..<width).map {
                        UInt8(truncatingIfNeeded: 0x11 &* ($0 + 1) &+ misalignment &+ count)
                    }
                    let address = UInt64(0x7f00_0000_0000 + misalignment)
                    let steps = CUDAFillPlan.steps(address: address, byteCount: byteCount, pattern: pattern)
                    let filled = apply(steps, address: address, to: [UInt8](repeating: 0xEE, count: byteCount))
                    let expected = (0..<byteCount).map { pattern[$0 % width] }
                    #expect(filled == expected, "width \(width), address % 8 = \(misalignment), \(count) elements")
                    // At most 3 single bytes at each end and one wide memset, or the 8-byte seed and its doublings.
                    let doublings = count <= 1 ? 0 : Int.bitWidth - (count - 1).leadingZeroBitCount  // ceil(log2)
                    let bound = width == 8 ? 8 + doublings : 7
                    #expect(steps.count <= max(1, bound), "\(steps.count) steps for width \(width), \(count) elements")
                }
            }
        }
    }

    @Test("patterns with a shorter period use the wider memset")
    func fillPlanShortensPeriods() {
        #expect(
            CUDAFillPlan.steps(address: 0x1000, byteCount: 64, pattern: [7, 7, 7, 7, 7, 7, 7, 7])
                == [.set8(offset: 0, value: 7, count: 64)])
        #expect(
            CUDAFillPlan.steps(address: 0x1000, byteCount: 64, pattern: [1, 2, 3, 4, 1, 2, 3, 4])
                == [.set32(offset: 0, value: 0x0403_0201, count: 16)])
        #expect(
            CUDAFillPlan.steps(address: 0x1001, byteCount: 8, pattern: [0xAA, 0xBB])
                == [
                    .set8(offset: 0, value: 0xAA, count: 1), .set16(offset: 1, value: 0xAABB, count: 3),
                    .set8(offset: 7, value: 0xBB, count: 1),
                ])
    }

    // MARK: Shared memory

    @Test("opt-in is needed when static + dynamic shared memory pass 48 KiB, and refused past the device's limit")
    func sharedMemoryOptIn() throws {
        let limit = 227 * 1024  // an H100's opt-in limit
        #expect(
            try CUDASharedMemory.optIn(kernel: "k", staticBytes: 0, dynamicBytes: 48 * 1024, optInLimit: limit) == nil)
        #expect(
            try CUDASharedMemory.optIn(kernel: "k", staticBytes: 16 * 1024, dynamicBytes: 40 * 1024, optInLimit: limit)
                == 40 * 1024)
        #expect(
            try CUDASharedMemory.optIn(kernel: "k", staticBytes: 0, dynamicBytes: 100 * 1024, optInLimit: limit)
                == 100 * 1024)
        #expect {
            try CUDASharedMemory.optIn(kernel: "k", staticBytes: 16 * 1024, dynamicBytes: 220 * 1024, optInLimit: limit)
        } throws: { error in
            guard case let .invalidLaunch(name, value, detail) = error as? GPUBridgeError else { return false }
            return name == "sharedMemoryBytes" && value.contains("\(220 * 1024) bytes dynamic")
                && value.contains("\(16 * 1024) bytes static") && detail.contains("\(limit)")
        }
    }

    // MARK: Parameter sizes

    @Test("an argument whose size differs from the compiled parameter's is refused, naming both sizes")
    func parameterSizes() throws {
        let region = DeviceRegion(handle: 0x7f00_0000_1000, offset: 0, byteCount: 64)
        let packing = CUDAArgumentPacking([.memory(region), .scalar(.int32(5))])
        try packing.check(against: [8, 4], kernel: "k")
        #expect {
            try packing.check(against: [8, 8], kernel: "k")  // a size_t parameter given an int32
        } throws: { error in
            guard case let .argumentMismatch(kernel, detail) = error as? GPUBridgeError else { return false }
            return kernel == "k" && detail.contains("argument 1 is 4 bytes") && detail.contains("takes 8 bytes")
        }
        #expect(throws: GPUBridgeError.self) { try packing.check(against: [8], kernel: "k") }
    }

    // MARK: Errors

    @Test("out of memory and context-ending faults are told apart from other driver errors")
    func failureKinds() {
        #expect(CUDAFailureKind.of(2) == .outOfMemory)
        for sticky: Int32 in [214, 700, 702, 710, 714, 715, 716, 717, 718, 719] {
            #expect(CUDAFailureKind.of(sticky) == .contextLost, "CUresult \(sticky)")
        }
        for other: Int32 in [1, 3, 100, 200, 209, 218, 500, 600, 701, 712, 999] {
            #expect(CUDAFailureKind.of(other) == .other, "CUresult \(other)")
        }
    }

    // MARK: Device description

    private func describe(failing: Set<Int32>) throws(GPUBridgeError) -> CUDADeviceDescription {
        try CUDADeviceDescription.read(
            ordinal: 0, name: "Test GPU", totalMemory: 1 << 34, busID: nil, driverVersion: "13.0"
        ) { (id: Int32, label: String) throws(GPUBridgeError) -> Int in
            if failing.contains(id) {
                throw .backendFailure(
                    backend: "cuda", call: "cuDeviceGetAttribute(\(label))", code: 1, message: "refused")
            }
            switch id {
            case 75: return 9  // compute capability major
            case 76: return 0
            case 8: return 48 * 1024
            case 97: return 227 * 1024
            case 1: return 1024
            case 2, 3: return 1024
            case 4: return 64
            case 5: return 2_147_483_647
            case 6, 7: return 65535
            case 10: return 32
            case 16: return 132
            default: return 1
            }
        }
    }

    @Test("a device is described without a context; an optional attribute the driver refuses is nil, not guessed")
    func descriptionOptionalAttributes() throws {
        let full = try describe(failing: [])
        #expect(full.info.architecture == "sm_90" && full.info.computeUnits == 132)
        #expect(full.info.capabilities.sharedMemoryPerGroup == 227 * 1024)
        #expect(full.properties.l2CacheBytes == 1 && full.properties.pciBusID == nil)
        let partial = try describe(failing: [38, 40, 97, 115])  // L2, copy engines, opt-in, memory pools
        #expect(partial.properties.l2CacheBytes == nil && partial.properties.asyncEngines == nil)
        #expect(partial.properties.sharedMemoryPerBlockOptin == nil && partial.properties.memoryPools == nil)
        #expect(partial.info.capabilities.sharedMemoryPerGroup == 48 * 1024)
        #expect(partial.info.capabilities.asyncCopies == false)
    }

    @Test("a required attribute the driver refuses makes the device unusable, naming the attribute")
    func descriptionRequiredAttribute() {
        #expect {
            try describe(failing: [16])
        } throws: { error in
            guard case let .backendFailure(_, call, _, _) = error as? GPUBridgeError else { return false }
            return call.contains("MULTIPROCESSOR_COUNT")
        }
    }
}
