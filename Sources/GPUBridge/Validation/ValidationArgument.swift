/// One buffer of a validated launch: its element type, its length and its seeded contents, and whether its contents
/// after the launch are compared.
///
/// A value type: any thread. Cost: the device memory for `count` elements on each of the two devices, and three host
/// copies (the contents, then each device's result) while the validation runs.
public struct ValidationBuffer: Sendable {
    /// Which buffers are compared after the launch.
    public enum Comparison: Sendable, Hashable {
        /// Compared when the kernel may write it: a buffer whose portable text declares it `const` (in either
        /// definition) is an input and is not compared; every other buffer is.
        case ifWritable
        /// Always compared.
        case always
        /// Never compared: an input, or scratch space whose final contents are unspecified (`topk_select` consumes
        /// its `scores`).
        case never
    }

    /// The element type; its size must equal the declared parameter's element size.
    public var type: ScalarType
    /// Elements, 1 or more; the bytes must fit both devices' pools.
    public var count: Int
    /// The contents before the launch, on both devices (outputs too, so an element a kernel fails to write shows).
    public var contents: ValidationContents
    public var comparison: Comparison
    /// The tolerance for this buffer's floating-point elements; nil: the validator's, else the type's default.
    public var tolerance: ValidationTolerance?

    public init(
        _ type: ScalarType, count: Int, contents: ValidationContents = .random, comparison: Comparison = .ifWritable,
        tolerance: ValidationTolerance? = nil
    ) {
        self.type = type
        self.count = count
        self.contents = contents
        self.comparison = comparison
        self.tolerance = tolerance
    }
}

/// One argument of a validated launch, in the kernel's declared order: a buffer the validator makes, or a scalar.
///
/// A value type: any thread; no cost.
public enum ValidationArgument: Sendable {
    case buffer(ValidationBuffer)
    case scalar(ScalarValue)

    /// A buffer of `count` elements of `type` (see `ValidationBuffer`).
    public static func buffer(
        _ type: ScalarType, count: Int, contents: ValidationContents = .random,
        comparison: ValidationBuffer.Comparison = .ifWritable, tolerance: ValidationTolerance? = nil
    ) -> ValidationArgument {
        .buffer(
            ValidationBuffer(type, count: count, contents: contents, comparison: comparison, tolerance: tolerance))
    }

    public static func int32(_ v: Int32) -> ValidationArgument { .scalar(.int32(v)) }
    public static func uint32(_ v: UInt32) -> ValidationArgument { .scalar(.uint32(v)) }
    public static func int64(_ v: Int64) -> ValidationArgument { .scalar(.int64(v)) }
    public static func uint64(_ v: UInt64) -> ValidationArgument { .scalar(.uint64(v)) }
    public static func float(_ v: Float) -> ValidationArgument { .scalar(.float32(v)) }
    public static func double(_ v: Double) -> ValidationArgument { .scalar(.float64(v)) }
}

/// A launch to validate: its shape and one `ValidationArgument` per declared parameter.
///
/// A value type: any thread. Cost: none until `initialContents(seed:)` or a validation makes the bytes.
public struct ValidationLaunch: Sendable {
    public var launch: Launch
    public var arguments: [ValidationArgument]

    public init(_ launch: Launch, arguments: [ValidationArgument]) {
        self.launch = launch
        self.arguments = arguments
    }

    /// The bytes each buffer argument holds before the launch under `seed` (nil for a scalar), exactly as both
    /// devices receive them. Same seed, same bytes; `invalidArgument` for a count below 1 or past `Int.max` bytes,
    /// or contents that do not fit the element type.
    public func initialContents(seed: UInt64) throws(GPUBridgeError) -> [[UInt8]?] {
        var result: [[UInt8]?] = []
        for (index, argument) in arguments.enumerated() {
            switch argument {
            case .scalar: result.append(nil)
            case let .buffer(buffer):
                let name = "arguments[\(index)]"
                _ = try Self.byteCount(of: buffer, name: name, limit: Int.max)
                result.append(
                    try buffer.contents.bytes(
                        type: buffer.type, count: buffer.count, seed: seed, argument: index, name: name))
            }
        }
        return result
    }

    /// The bytes of `buffer`, or `invalidArgument` naming it when its count is below 1 or its bytes pass `limit`.
    static func byteCount(of buffer: ValidationBuffer, name: String, limit: Int) throws(GPUBridgeError) -> Int {
        let (bytes, overflow) = buffer.count.multipliedReportingOverflow(by: buffer.type.byteSize)
        guard buffer.count >= 1, !overflow, bytes <= limit else {
            throw .invalidArgument(
                name: "\(name) count", value: String(buffer.count),
                limit: "1...\(limit / buffer.type.byteSize) elements of \(buffer.type.rawValue)")
        }
        return bytes
    }
}
