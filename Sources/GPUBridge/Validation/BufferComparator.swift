/// Compares the bytes two devices left in one buffer, element by element, under the tolerance rule of
/// `ValidationTolerance`. Internal to `KernelValidator`; a pure function of its inputs (any thread), one pass over
/// the elements.
enum BufferComparator {
    static func compare(
        name: String, argument: Int, type: ScalarType, count: Int, tolerance: ValidationTolerance,
        reference: [UInt8], candidate: [UInt8]
    ) -> BufferComparison {
        var result = BufferComparison(
            name: name, argument: argument, type: type, count: count, tolerance: tolerance, mismatches: 0,
            firstMismatch: nil, maxAbsoluteDifference: 0, maxRelativeDifference: 0)
        reference.withUnsafeBytes { r in
            candidate.withUnsafeBytes { c in
                switch type {
                case .float32: floating(Float.self, r, c, count, tolerance, &result) { .float32($0) }
                case .float64: floating(Double.self, r, c, count, tolerance, &result) { .float64($0) }
                case .int8: integer(Int8.self, r, c, count, &result) { .int8($0) }
                case .uint8: integer(UInt8.self, r, c, count, &result) { .uint8($0) }
                case .int16: integer(Int16.self, r, c, count, &result) { .int16($0) }
                case .uint16: integer(UInt16.self, r, c, count, &result) { .uint16($0) }
                case .int32: integer(Int32.self, r, c, count, &result) { .int32($0) }
                case .uint32: integer(UInt32.self, r, c, count, &result) { .uint32($0) }
                case .int64: integer(Int64.self, r, c, count, &result) { .int64($0) }
                case .uint64: integer(UInt64.self, r, c, count, &result) { .uint64($0) }
                }
            }
        }
        return result
    }

    private static func floating<T: BinaryFloatingPoint>(
        _: T.Type, _ r: UnsafeRawBufferPointer, _ c: UnsafeRawBufferPointer, _ count: Int,
        _ tolerance: ValidationTolerance, _ result: inout BufferComparison, _ value: (T) -> ScalarValue
    ) {
        let size = MemoryLayout<T>.stride
        for i in 0..<count {
            let a = Double(r.loadUnaligned(fromByteOffset: i * size, as: T.self))
            let b = Double(c.loadUnaligned(fromByteOffset: i * size, as: T.self))
            let same = a == b || (a.isNaN && b.isNaN)
            let absolute = same ? 0 : (a.isNaN || b.isNaN ? Double.infinity : abs(a - b))
            let relative = same ? 0 : (a == 0 ? Double.infinity : absolute / abs(a))
            record(i, absolute, relative, passed: tolerance.accepts(reference: a, candidate: b), &result) {
                (value(T(a)), value(T(b)))
            }
        }
    }

    private static func integer<T: FixedWidthInteger>(
        _: T.Type, _ r: UnsafeRawBufferPointer, _ c: UnsafeRawBufferPointer, _ count: Int,
        _ result: inout BufferComparison, _ value: (T) -> ScalarValue
    ) {
        let size = MemoryLayout<T>.stride
        for i in 0..<count {
            let a = r.loadUnaligned(fromByteOffset: i * size, as: T.self)
            let b = c.loadUnaligned(fromByteOffset: i * size, as: T.self)
            guard a != b else { continue }
            // In Double, so the difference of two extreme values cannot overflow.
            let absolute = abs(Double(a) - Double(b))
            let relative = a == 0 ? Double.infinity : absolute / Double(a.magnitude)
            record(i, absolute, relative, passed: false, &result) { (value(a), value(b)) }
        }
    }

    private static func record(
        _ index: Int, _ absolute: Double, _ relative: Double, passed: Bool, _ result: inout BufferComparison,
        _ values: () -> (ScalarValue, ScalarValue)
    ) {
        result.maxAbsoluteDifference = max(result.maxAbsoluteDifference, absolute)
        result.maxRelativeDifference = max(result.maxRelativeDifference, relative)
        guard !passed else { return }
        result.mismatches += 1
        if result.firstMismatch == nil {
            let (a, b) = values()
            result.firstMismatch = ElementMismatch(buffer: result.name, index: index, reference: a, candidate: b)
        }
    }
}
