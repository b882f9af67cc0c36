/// The fixed-width scalar types a kernel parameter can have.
public enum ScalarType: String, Sendable, Hashable, Codable, CaseIterable {
    case int8, uint8, int16, uint16, int32, uint32, int64, uint64, float32, float64

    /// Size in bytes (and natural alignment).
    public var byteSize: Int {
        switch self {
        case .int8, .uint8: return 1
        case .int16, .uint16: return 2
        case .int32, .uint32, .float32: return 4
        case .int64, .uint64, .float64: return 8
        }
    }
}

/// One scalar kernel argument, by value.
public enum ScalarValue: Sendable, Hashable, CustomStringConvertible {
    case int8(Int8), uint8(UInt8), int16(Int16), uint16(UInt16)
    case int32(Int32), uint32(UInt32), int64(Int64), uint64(UInt64)
    case float32(Float), float64(Double)

    public var type: ScalarType {
        switch self {
        case .int8: return .int8
        case .uint8: return .uint8
        case .int16: return .int16
        case .uint16: return .uint16
        case .int32: return .int32
        case .uint32: return .uint32
        case .int64: return .int64
        case .uint64: return .uint64
        case .float32: return .float32
        case .float64: return .float64
        }
    }

    /// The value as an integer, for integer types (used to check buffer extents against a count argument).
    public var integerValue: Int? {
        switch self {
        case let .int8(v): return Int(v)
        case let .uint8(v): return Int(v)
        case let .int16(v): return Int(v)
        case let .uint16(v): return Int(v)
        case let .int32(v): return Int(v)
        case let .uint32(v): return Int(v)
        case let .int64(v): return Int(v)
        case let .uint64(v): return Int(exactly: v)
        case .float32, .float64: return nil
        }
    }

    /// Calls `body` with the value's bytes in host (little-endian) order; the pointer is valid only inside `body`.
    @inlinable
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        switch self {
        case var .int8(v): return try Swift.withUnsafeBytes(of: &v, body)
        case var .uint8(v): return try Swift.withUnsafeBytes(of: &v, body)
        case var .int16(v): return try Swift.withUnsafeBytes(of: &v, body)
        case var .uint16(v): return try Swift.withUnsafeBytes(of: &v, body)
        case var .int32(v): return try Swift.withUnsafeBytes(of: &v, body)
        case var .uint32(v): return try Swift.withUnsafeBytes(of: &v, body)
        case var .int64(v): return try Swift.withUnsafeBytes(of: &v, body)
        case var .uint64(v): return try Swift.withUnsafeBytes(of: &v, body)
        case var .float32(v): return try Swift.withUnsafeBytes(of: &v, body)
        case var .float64(v): return try Swift.withUnsafeBytes(of: &v, body)
        }
    }

    public var description: String {
        switch self {
        case let .int8(v): return "int8(\(v))"
        case let .uint8(v): return "uint8(\(v))"
        case let .int16(v): return "int16(\(v))"
        case let .uint16(v): return "uint16(\(v))"
        case let .int32(v): return "int32(\(v))"
        case let .uint32(v): return "uint32(\(v))"
        case let .int64(v): return "int64(\(v))"
        case let .uint64(v): return "uint64(\(v))"
        case let .float32(v): return "float32(\(v))"
        case let .float64(v): return "float64(\(v))"
        }
    }
}

/// One kernel argument, in the position the kernel declares it: a buffer (or view) or a fixed-width scalar.
///
/// Arguments form one ordered list; the backend hands buffers to the kernel by their native handle (no copy, no
/// temporary) and scalars by value.
public enum KernelArgument: Sendable {
    case buffer(RawBuffer)
    case scalar(ScalarValue)

    /// A typed buffer or view.
    public static func buffer<Element>(_ buffer: Buffer<Element>) -> KernelArgument { .buffer(buffer.raw) }
    public static func int8(_ v: Int8) -> KernelArgument { .scalar(.int8(v)) }
    public static func uint8(_ v: UInt8) -> KernelArgument { .scalar(.uint8(v)) }
    public static func int16(_ v: Int16) -> KernelArgument { .scalar(.int16(v)) }
    public static func uint16(_ v: UInt16) -> KernelArgument { .scalar(.uint16(v)) }
    public static func int32(_ v: Int32) -> KernelArgument { .scalar(.int32(v)) }
    public static func uint32(_ v: UInt32) -> KernelArgument { .scalar(.uint32(v)) }
    public static func int64(_ v: Int64) -> KernelArgument { .scalar(.int64(v)) }
    public static func uint64(_ v: UInt64) -> KernelArgument { .scalar(.uint64(v)) }
    public static func float(_ v: Float) -> KernelArgument { .scalar(.float32(v)) }
    public static func double(_ v: Double) -> KernelArgument { .scalar(.float64(v)) }
}

/// A kernel argument after validation, as a backend receives it: a device region or a scalar.
public enum ResolvedArgument: Sendable, Hashable {
    case memory(DeviceRegion)
    case scalar(ScalarValue)
}
