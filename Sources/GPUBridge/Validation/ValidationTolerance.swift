/// How far a candidate's floating-point element may lie from the reference's and still count as equal.
///
/// An element passes when `|reference - candidate| <= absolute + relative * |reference|`, computed in `Double`. Both
/// NaN passes; one NaN fails; equal infinities pass. Integers ignore the tolerance: they compare exactly.
///
/// Defaults (`defaultFor(_:)`): float32 `absolute 1e-5, relative 1e-5` (about 84 ulp at 1.0: room for a different
/// summation order or a fused multiply-add, not for a wrong value); float64 `absolute 1e-12, relative 1e-12`.
///
/// A value type: any thread, no cost beyond its two `Double`s.
public struct ValidationTolerance: Sendable, Hashable, Codable, CustomStringConvertible {
    /// The absolute part, in the element's units; 0 or more.
    public var absolute: Double
    /// The part proportional to the reference value's magnitude; 0 or more.
    public var relative: Double

    public init(absolute: Double, relative: Double) {
        self.absolute = absolute
        self.relative = relative
    }

    /// No difference allowed (floating-point elements must be equal; both NaN still passes).
    public static let exact = ValidationTolerance(absolute: 0, relative: 0)
    /// The float32 default: absolute 1e-5, relative 1e-5.
    public static let float32Default = ValidationTolerance(absolute: 1e-5, relative: 1e-5)
    /// The float64 default: absolute 1e-12, relative 1e-12.
    public static let float64Default = ValidationTolerance(absolute: 1e-12, relative: 1e-12)

    /// The default for elements of `type`: `float32Default`, `float64Default`, or `exact` for integers.
    public static func defaultFor(_ type: ScalarType) -> ValidationTolerance {
        switch type {
        case .float32: return .float32Default
        case .float64: return .float64Default
        default: return .exact
        }
    }

    /// Whether `candidate` passes against `reference` under this tolerance (the rule above).
    public func accepts(reference: Double, candidate: Double) -> Bool {
        if reference.isNaN || candidate.isNaN { return reference.isNaN && candidate.isNaN }
        if reference == candidate { return true }
        if reference.isInfinite || candidate.isInfinite { return false }
        return abs(reference - candidate) <= absolute + relative * abs(reference)
    }

    /// Throws `invalidArgument` naming `name` unless both parts are finite and 0 or more.
    func check(_ name: String) throws(GPUBridgeError) {
        for (part, value) in [("absolute", absolute), ("relative", relative)] where !(value >= 0 && value.isFinite) {
            throw .invalidArgument(name: "\(name).\(part)", value: "\(value)", limit: "a finite value >= 0")
        }
    }

    public var description: String { "\(absolute) + \(relative) * |reference|" }
}
