import GPUBridge

/// A kernel's arguments laid out for `cuLaunchKernel`: every value in one byte buffer at its natural alignment, and
/// the `void**` array of pointers to each value, in declared order.
///
/// A memory argument becomes its `CUdeviceptr` (`handle + offset`, 8 bytes, 8-aligned): views are passed as a
/// pointer into their parent, nothing is copied. A scalar is its own bytes (1, 2, 4 or 8, aligned to its size).
/// `cuLaunchKernel` reads the values during the call, so the buffer only has to live across it.
///
/// A value type; `Sendable`. Cost: O(arguments) to build; `withParameterPointers` uses stack memory for up to a few
/// hundred bytes, no heap allocation.
public struct CUDAArgumentPacking: Sendable, Hashable {
    /// Byte offset of each argument in `bytes`.
    public let offsets: [Int]
    /// Size in bytes of each argument.
    public let sizes: [Int]
    /// Alignment of each argument (its size: `CUdeviceptr` and scalars are naturally aligned).
    public let alignments: [Int]
    /// The packed values; `bytes.count` is the end of the last argument rounded up to `alignment`.
    public let bytes: [UInt8]
    /// The largest alignment of any argument (at least 1): the buffer's own alignment.
    public let alignment: Int

    /// Lays out `arguments` in order.
    public init(_ arguments: [ResolvedArgument]) {
        var offsets: [Int] = []
        var sizes: [Int] = []
        var alignments: [Int] = []
        offsets.reserveCapacity(arguments.count)
        sizes.reserveCapacity(arguments.count)
        alignments.reserveCapacity(arguments.count)
        var cursor = 0
        var maxAlignment = 1
        for argument in arguments {
            let size: Int
            switch argument {
            case .memory: size = MemoryLayout<UInt64>.size
            case let .scalar(value): size = value.type.byteSize
            }
            let alignment = size
            cursor = (cursor + alignment - 1) & ~(alignment - 1)
            offsets.append(cursor)
            sizes.append(size)
            alignments.append(alignment)
            cursor += size
            maxAlignment = max(maxAlignment, alignment)
        }
        let total = (cursor + maxAlignment - 1) & ~(maxAlignment - 1)
        var bytes = [UInt8](repeating: 0, count: total)
        bytes.withUnsafeMutableBytes { buffer in
            guard let base = buffer.baseAddress else { return }  // no arguments
            for (index, argument) in arguments.enumerated() {
                let destination = base + offsets[index]
                switch argument {
                case let .memory(region):
                    destination.storeBytes(of: Self.devicePointer(region), as: UInt64.self)
                case let .scalar(value):
                    value.withUnsafeBytes { source in
                        if let from = source.baseAddress { destination.copyMemory(from: from, byteCount: source.count) }
                    }
                }
            }
        }
        self.offsets = offsets
        self.sizes = sizes
        self.alignments = alignments
        self.bytes = bytes
        self.alignment = maxAlignment
    }

    /// The number of arguments.
    public var count: Int { offsets.count }

    /// Throws `argumentMismatch` unless there is one argument per parameter and each has the parameter's size:
    /// `cuLaunchKernel` reads each parameter's size from the slot it is given, so a 4-byte `int32` passed for a
    /// `size_t` would be read as 8 bytes, half of them not the argument's.
    public func check(against parameterSizes: [Int], kernel: String) throws(GPUBridgeError) {
        guard parameterSizes.count == sizes.count else {
            throw .argumentMismatch(
                kernel: kernel,
                detail: "the compiled kernel takes \(parameterSizes.count) parameters, got \(sizes.count) arguments")
        }
        for (index, (expected, given)) in zip(parameterSizes, sizes).enumerated() where expected != given {
            let what =
                given == MemoryLayout<UInt64>.size
                ? "\(given) bytes (a device pointer or an 8-byte scalar)" : "\(given) bytes"
            throw .argumentMismatch(
                kernel: kernel,
                detail:
                    "argument \(index) is \(what), but the compiled kernel's parameter \(index) takes \(expected) bytes"
            )
        }
    }

    /// The `CUdeviceptr` a region is passed as: the allocation's device pointer plus the region's offset.
    @inlinable
    public static func devicePointer(_ region: DeviceRegion) -> UInt64 {
        region.handle &+ UInt64(region.offset)
    }

    /// Calls `body` with a `void**` array of `count` pointers, the i-th pointing at argument i's value in a copy of
    /// `bytes` aligned to `alignment`. The pointers are valid only inside `body`.
    public func withParameterPointers<R, E: Error>(
        _ body: (UnsafeMutablePointer<UnsafeMutableRawPointer?>) throws(E) -> R
    ) throws(E) -> R {
        let pointerBytes = max(1, count) * MemoryLayout<UnsafeMutableRawPointer?>.stride
        let valueBytes = max(1, bytes.count)
        // One block: the pointer array first (8-aligned), then the values at a multiple of `alignment`.
        let valuesStart = (pointerBytes + alignment - 1) & ~(alignment - 1)
        return try withUnsafeTemporaryAllocation(
            byteCount: valuesStart + valueBytes,
            alignment: max(alignment, MemoryLayout<UnsafeMutableRawPointer?>.alignment)
        ) {
            (block: UnsafeMutableRawBufferPointer) throws(E) -> R in
            let base = block.baseAddress!  // a non-empty allocation (at least one pointer and one byte) has an address
            let values = base + valuesStart
            bytes.withUnsafeBytes { source in
                if let from = source.baseAddress, source.count > 0 {
                    values.copyMemory(from: from, byteCount: source.count)
                }
            }
            let pointers = base.bindMemory(to: UnsafeMutableRawPointer?.self, capacity: max(1, count))
            pointers[0] = nil
            for index in 0..<count { pointers[index] = values + offsets[index] }
            return try body(pointers)
        }
    }
}
