/// One element that differs beyond the tolerance: where it is and both devices' values.
///
/// A value type: any thread; no cost.
public struct ElementMismatch: Sendable, Hashable {
    /// The buffer's declared parameter name.
    public var buffer: String
    /// The element's index in the buffer.
    public var index: Int
    public var reference: ScalarValue
    public var candidate: ScalarValue

    public init(buffer: String, index: Int, reference: ScalarValue, candidate: ScalarValue) {
        self.buffer = buffer
        self.index = index
        self.reference = reference
        self.candidate = candidate
    }
}

/// The comparison of one output buffer between the reference and the candidate.
///
/// A value type: any thread; no cost.
public struct BufferComparison: Sendable, Hashable {
    /// The declared parameter name (the reference definition's).
    public var name: String
    /// The parameter's position in the argument list.
    public var argument: Int
    public var type: ScalarType
    /// Elements compared: the buffer's whole length.
    public var count: Int
    /// The tolerance applied to floating-point elements (integers compare exactly).
    public var tolerance: ValidationTolerance
    /// Elements beyond the tolerance.
    public var mismatches: Int
    /// The lowest-index element beyond the tolerance, nil when none.
    public var firstMismatch: ElementMismatch?
    /// The largest |reference - candidate| over every element (infinite when one side is NaN or infinite and the
    /// other is not).
    public var maxAbsoluteDifference: Double
    /// The largest |reference - candidate| / |reference| over every element (infinite where the reference is 0 and
    /// the candidate is not).
    public var maxRelativeDifference: Double

    /// Every element within the tolerance.
    public var passed: Bool { mismatches == 0 }
}

/// What `KernelValidator` found: per output buffer, how far the candidate's results are from the reference's.
///
/// A value type made by the validator and then owned by the caller: any thread; no cost. `description` is the
/// readable form `gpubridge validate` prints.
public struct ValidationReport: Sendable, Hashable, CustomStringConvertible {
    /// The reference kernel's id and device.
    public var referenceKernel: String
    public var referenceDevice: String
    /// The candidate kernel's id (the reference's when one kernel runs on both devices) and device.
    public var candidateKernel: String
    public var candidateDevice: String
    public var launch: Launch
    public var seed: UInt64
    /// One entry per compared buffer, in argument order.
    public var buffers: [BufferComparison]

    /// True when every element of every compared buffer is within its tolerance.
    public var passed: Bool { buffers.allSatisfy(\.passed) }

    /// The first mismatch in argument order, nil when the check passed.
    public var firstMismatch: ElementMismatch? { buffers.lazy.compactMap(\.firstMismatch).first }

    public var description: String {
        let kernels =
            referenceKernel == candidateKernel ? referenceKernel : "\(referenceKernel) against \(candidateKernel)"
        var lines = [
            "\(kernels): \(passed ? "PASSED" : "FAILED") — reference \(referenceDevice), candidate \(candidateDevice)",
            "  launch \(launch), seed \(seed)",
        ]
        if buffers.isEmpty { lines.append("  no output buffer compared") }
        for b in buffers {
            let floating = b.type == .float32 || b.type == .float64
            var line =
                "  \(b.name) (\(b.type.rawValue) x \(b.count)): "
                + (b.passed
                    ? (floating ? "all within tolerance" : "all equal") : "\(b.mismatches) of \(b.count) differ")
                + "; max |diff| \(Self.format(b.maxAbsoluteDifference))"
                + ", max relative \(Self.format(b.maxRelativeDifference))"
            if floating { line += " (tolerance \(b.tolerance))" }
            lines.append(line)
            if let m = b.firstMismatch {
                lines.append(
                    "    first difference at \(m.buffer)[\(m.index)]: reference \(Self.format(m.reference)), "
                        + "candidate \(Self.format(m.candidate))")
            }
        }
        return lines.joined(separator: "\n")
    }

    static func format(_ value: Double) -> String {
        value == 0 ? "0" : "\(value)"
    }

    static func format(_ value: ScalarValue) -> String {
        switch value {
        case let .int8(v): return "\(v)"
        case let .uint8(v): return "\(v)"
        case let .int16(v): return "\(v)"
        case let .uint16(v): return "\(v)"
        case let .int32(v): return "\(v)"
        case let .uint32(v): return "\(v)"
        case let .int64(v): return "\(v)"
        case let .uint64(v): return "\(v)"
        case let .float32(v): return "\(v)"
        case let .float64(v): return "\(v)"
        }
    }
}
