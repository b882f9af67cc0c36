/// What a validated buffer holds before the launch: seeded pseudo-random values, made on the host, so the same seed
/// gives the same bytes whatever the backend.
///
/// A value type: any thread. Cost: one `SplitMix64` step per element (plus the generator's own work) when the bytes
/// are made, once per validation.
public enum ValidationContents: Sendable {
    /// The element type's default range: floating point uniformly in -1...1, signed integers in -1000...1000,
    /// unsigned integers in 0...1000 (small enough that sums and products of a few elements do not overflow).
    case random
    /// Uniformly in `lower...upper`. For integer elements both bounds must be integers within the type's range and
    /// within `Int64`; for floating-point elements both must be finite. `lower <= upper`.
    case uniform(lower: Double, upper: Double)
    /// `generate(index, &random)` for each element in index order, from the buffer's seeded random source. For
    /// integer elements every value must be an integer within the type's range (and within `Int64`); for
    /// floating-point elements any value (NaN and infinities included) is stored as the nearest element value.
    case generated(@Sendable (_ index: Int, _ random: inout SplitMix64) -> Double)

    /// The bytes of `count` elements of `type` for the buffer at argument `argument` (named `name` in errors), from
    /// `seed`: each argument has its own random stream, so one buffer's size does not change another's contents.
    func bytes(type: ScalarType, count: Int, seed: UInt64, argument: Int, name: String) throws(GPUBridgeError)
        -> [UInt8]
    {
        var random = SplitMix64(seed: seed ^ (UInt64(argument) &+ 1) &* 0xD1B5_4A32_D192_ED03)
        _ = random.next()
        var bytes = [UInt8](repeating: 0, count: count * type.byteSize)
        if type == .float32 || type == .float64 {
            let (lower, upper) = try floatingBounds(name: name)
            bytes.withUnsafeMutableBytes { out in
                for i in 0..<count {
                    let value: Double
                    switch self {
                    case let .generated(generate): value = generate(i, &random)
                    default:
                        let unit = Double(random.next() >> 11) / Double(UInt64(1) << 53)
                        value = min(upper, lower + (upper - lower) * unit)
                    }
                    if type == .float32 {
                        out.storeBytes(of: Float(value), toByteOffset: i * 4, as: Float.self)
                    } else {
                        out.storeBytes(of: value, toByteOffset: i * 8, as: Double.self)
                    }
                }
            }
            return bytes
        }
        let typeRange = Self.integerRange(type)
        let (lower, upper) = try integerBounds(type: type, typeRange: typeRange, name: name)
        let span = UInt64(bitPattern: upper &- lower) &+ 1
        var failure: GPUBridgeError?
        bytes.withUnsafeMutableBytes { out in
            for i in 0..<count {
                let value: Int64
                switch self {
                case let .generated(generate):
                    let produced = generate(i, &random)
                    guard let exact = Int64(exactly: produced), typeRange.contains(exact) else {
                        failure = .invalidArgument(
                            name: "\(name) contents at index \(i)", value: "\(produced)",
                            limit: "an integer in \(type.rawValue)'s range \(typeRange)")
                        return
                    }
                    value = exact
                default:
                    let draw = random.next()
                    value = lower &+ Int64(bitPattern: span == 0 ? draw : draw.multipliedFullWidth(by: span).high)
                }
                Self.store(value, as: type, at: i, in: out)
            }
        }
        if let failure { throw failure }
        return bytes
    }

    private func floatingBounds(name: String) throws(GPUBridgeError) -> (Double, Double) {
        switch self {
        case .random, .generated: return (-1, 1)
        case let .uniform(lower, upper):
            guard lower.isFinite, upper.isFinite, lower <= upper else {
                throw .invalidArgument(
                    name: "\(name) contents", value: "uniform(\(lower)...\(upper))",
                    limit: "finite bounds with lower <= upper")
            }
            return (lower, upper)
        }
    }

    private func integerBounds(type: ScalarType, typeRange: ClosedRange<Int64>, name: String) throws(GPUBridgeError)
        -> (Int64, Int64)
    {
        switch self {
        case .generated: return (0, 0)
        case .random: return typeRange.lowerBound < 0 ? (-1000, 1000) : (0, 1000)
        case let .uniform(lower, upper):
            guard let lo = Int64(exactly: lower), let hi = Int64(exactly: upper), lo <= hi, typeRange.contains(lo),
                typeRange.contains(hi)
            else {
                throw .invalidArgument(
                    name: "\(name) contents", value: "uniform(\(lower)...\(upper))",
                    limit: "integer bounds with lower <= upper in \(type.rawValue)'s range \(typeRange)")
            }
            return (lo, hi)
        }
    }

    /// The values an integer element type holds, clipped to `Int64`.
    static func integerRange(_ type: ScalarType) -> ClosedRange<Int64> {
        switch type {
        case .int8: return Int64(Int8.min)...Int64(Int8.max)
        case .uint8: return 0...Int64(UInt8.max)
        case .int16: return Int64(Int16.min)...Int64(Int16.max)
        case .uint16: return 0...Int64(UInt16.max)
        case .int32: return Int64(Int32.min)...Int64(Int32.max)
        case .uint32: return 0...Int64(UInt32.max)
        case .int64, .float32, .float64: return Int64.min...Int64.max
        case .uint64: return 0...Int64.max
        }
    }

    private static func store(_ value: Int64, as type: ScalarType, at index: Int, in out: UnsafeMutableRawBufferPointer)
    {
        let offset = index * type.byteSize
        switch type {
        case .int8: out.storeBytes(of: Int8(truncatingIfNeeded: value), toByteOffset: offset, as: Int8.self)
        case .uint8: out.storeBytes(of: UInt8(truncatingIfNeeded: value), toByteOffset: offset, as: UInt8.self)
        case .int16: out.storeBytes(of: Int16(truncatingIfNeeded: value), toByteOffset: offset, as: Int16.self)
        case .uint16: out.storeBytes(of: UInt16(truncatingIfNeeded: value), toByteOffset: offset, as: UInt16.self)
        case .int32: out.storeBytes(of: Int32(truncatingIfNeeded: value), toByteOffset: offset, as: Int32.self)
        case .uint32: out.storeBytes(of: UInt32(truncatingIfNeeded: value), toByteOffset: offset, as: UInt32.self)
        case .int64, .float32, .float64: out.storeBytes(of: value, toByteOffset: offset, as: Int64.self)
        case .uint64: out.storeBytes(of: UInt64(truncatingIfNeeded: value), toByteOffset: offset, as: UInt64.self)
        }
    }
}
