import GPUBridge
import GPUBridgeCUDA
import Testing

/// `cuLaunchKernel`'s argument layout, checked without a GPU.
@Suite("CUDA argument packing")
struct ArgumentPackingTests {
    let a = DeviceRegion(handle: 0x7f00_0000_1000, offset: 0, byteCount: 4096)
    let view = DeviceRegion(handle: 0x7f00_0020_0000, offset: 13, byteCount: 100)

    @Test("mixed arguments sit at their natural alignment, in declared order")
    func mixedLayout() {
        let packing = CUDAArgumentPacking([
            .memory(a), .scalar(.int8(-3)), .scalar(.float64(2.5)), .scalar(.int32(-7)), .memory(view),
            .scalar(.float32(1.25)), .scalar(.uint16(0xBEEF)), .scalar(.int64(-1)), .scalar(.uint8(0xAB)),
        ])
        #expect(packing.count == 9)
        #expect(packing.sizes == [8, 1, 8, 4, 8, 4, 2, 8, 1])
        #expect(packing.alignments == [8, 1, 8, 4, 8, 4, 2, 8, 1])
        #expect(packing.offsets == [0, 8, 16, 24, 32, 40, 44, 48, 56])
        #expect(packing.alignment == 8)
        #expect(packing.bytes.count == 64)  // 57 rounded up to 8
        for (offset, alignment) in zip(packing.offsets, packing.alignments) { #expect(offset % alignment == 0) }
    }

    @Test("values are stored little-endian; a view is its parent's pointer plus its offset")
    func values() {
        let packing = CUDAArgumentPacking([
            .memory(view), .scalar(.int8(-3)), .scalar(.float64(2.5)), .scalar(.uint16(0xBEEF)),
        ])
        func load<T: FixedWidthInteger>(_ type: T.Type, at offset: Int) -> T {
            (0..<MemoryLayout<T>.size).reduce(T.zero) { $0 | T(packing.bytes[offset + $1]) << (8 * $1) }
        }
        #expect(load(UInt64.self, at: 0) == 0x7f00_0020_0000 + 13)
        #expect(CUDAArgumentPacking.devicePointer(view) == 0x7f00_0020_000d)
        #expect(Int8(bitPattern: packing.bytes[8]) == -3)
        #expect(Double(bitPattern: load(UInt64.self, at: 16)) == 2.5)
        #expect(load(UInt16.self, at: 24) == 0xBEEF)
    }

    @Test("the void** array points at each value, aligned")
    func parameterPointers() {
        let arguments: [ResolvedArgument] = [
            .scalar(.uint8(9)), .memory(a), .scalar(.int16(-2)), .scalar(.float32(3.5)), .scalar(.uint64(1 << 40)),
            .memory(view), .scalar(.int32(42)),
        ]
        let packing = CUDAArgumentPacking(arguments)
        #expect(packing.offsets == [0, 8, 16, 20, 24, 32, 40])
        packing.withParameterPointers { pointers in
            for index in 0..<packing.count {
                let pointer = pointers[index]!
                #expect(UInt(bitPattern: pointer) % UInt(packing.alignments[index]) == 0)
                let bytes = Array(UnsafeRawBufferPointer(start: pointer, count: packing.sizes[index]))
                let start = packing.offsets[index]
                #expect(bytes == Array(packing.bytes[start..<start + packing.sizes[index]]))
            }
            #expect(pointers[0]!.load(as: UInt8.self) == 9)
            #expect(pointers[1]!.load(as: UInt64.self) == a.handle)
            #expect(pointers[2]!.load(as: Int16.self) == -2)
            #expect(pointers[3]!.load(as: Float.self) == 3.5)
            #expect(pointers[4]!.load(as: UInt64.self) == 1 << 40)
            #expect(pointers[5]!.load(as: UInt64.self) == view.handle + 13)
            #expect(pointers[6]!.load(as: Int32.self) == 42)
        }
    }

    @Test("small scalars pack tightly; no arguments is fine")
    func edges() {
        let small = CUDAArgumentPacking([.scalar(.int8(1)), .scalar(.int16(2)), .scalar(.uint8(3))])
        #expect(small.offsets == [0, 2, 4])
        #expect(small.bytes.count == 6)
        #expect(small.alignment == 2)
        let none = CUDAArgumentPacking([])
        #expect(none.count == 0)
        #expect(none.bytes.isEmpty)
        #expect(none.withParameterPointers { _ in 7 } == 7)
    }

    @Test("every scalar type has its own size")
    func scalarSizes() {
        let values: [ScalarValue] = [
            .int8(0), .uint8(0), .int16(0), .uint16(0), .int32(0), .uint32(0), .int64(0), .uint64(0), .float32(0),
            .float64(0),
        ]
        let packing = CUDAArgumentPacking(values.map(ResolvedArgument.scalar))
        #expect(packing.sizes == [1, 1, 2, 2, 4, 4, 8, 8, 4, 8])
        #expect(packing.offsets == [0, 1, 2, 4, 8, 12, 16, 24, 32, 40])
    }
}
