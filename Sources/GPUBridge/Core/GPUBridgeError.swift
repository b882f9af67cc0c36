/// The one error type GPUBridge throws.
///
/// Every case carries the numbers a caller needs to understand what went wrong: the argument, the value it had and the
/// limit it broke. `description` renders them in one sentence.
public enum GPUBridgeError: Error, Sendable, Equatable, Codable, CustomStringConvertible {
    /// An argument had a value outside what the call accepts.
    case invalidArgument(name: String, value: String, limit: String)
    /// An offset or length reaches outside the buffer or host memory it refers to.
    case outOfBounds(name: String, offset: Int, length: Int, limit: Int)
    /// Two lengths that must agree do not.
    case sizeMismatch(name: String, expected: Int, actual: Int)
    /// A buffer (or other device object) belongs to another device than the one it was used on.
    case wrongDevice(name: String, expected: String, actual: String)
    /// The pool (or the device) could not provide the memory asked for, even after trimming its cache. `requested`
    /// is 0 when no buffer was asked for: the driver needed memory of its own (to load a module, launch a kernel,
    /// create a stream) and does not say how much; `detail` names the call.
    case outOfMemory(device: String, requested: Int, inUse: Int, cached: Int, limit: Int, detail: String)
    /// The kernel compiler rejected the source; `log` is the compiler's own output.
    case compilationFailed(kernel: String, backend: String, log: String)
    /// The kernel's argument list does not match its declared parameters.
    case argumentMismatch(kernel: String, detail: String)
    /// A launch's dimensions are zero, too large for the device, or overflow.
    case invalidLaunch(name: String, value: String, limit: String)
    /// A backend call failed; `call` is the native function, `code` its status and `message` its meaning.
    case backendFailure(backend: String, call: String, code: Int, message: String)
    /// A backend cannot be used on this machine (library missing, no platform, no device).
    case backendUnavailable(backend: String, reason: String)
    /// The feature exists in the API but is not built for this backend or device.
    case unsupported(feature: String, backend: String)
    /// A kernel or device was asked for by a name nobody registered.
    case notFound(kind: String, name: String)
    /// A cache or file operation failed.
    case io(path: String, operation: String, errno: Int32, message: String)
    /// Every device the runtime tried failed; `attempts` names each device and its error, in order.
    case allAttemptsFailed(operation: String, attempts: [String])
    /// The device can no longer run work in this process: a fault (an illegal or misaligned address in a kernel, an
    /// uncorrectable memory error) ended its context, and every later command on it fails the same way. `reason`
    /// names the first error seen and the command that was pending when it was reported (which is not always the one
    /// that faulted: the driver reports a fault to everything queued after it). The broker sends it no more work.
    case deviceLost(device: String, reason: String)

    public var description: String {
        switch self {
        case let .invalidArgument(name, value, limit):
            return "invalid argument '\(name)': value \(value) is outside \(limit)"
        case let .outOfBounds(name, offset, length, limit):
            return "'\(name)' out of bounds: offset \(offset) + length \(length) = \(offset &+ length) exceeds \(limit)"
        case let .sizeMismatch(name, expected, actual):
            return "size mismatch for '\(name)': expected \(expected), got \(actual)"
        case let .wrongDevice(name, expected, actual):
            return "'\(name)' belongs to device \(actual), but was used on device \(expected)"
        case let .outOfMemory(device, requested, inUse, cached, limit, detail):
            return
                "out of memory on \(device): requested \(requested) bytes with \(inUse) bytes in use and \(cached) cached, limit \(limit) bytes (\(detail))"
        case let .compilationFailed(kernel, backend, log):
            return "compilation of kernel '\(kernel)' failed on \(backend):\n\(log)"
        case let .argumentMismatch(kernel, detail):
            return "arguments do not match kernel '\(kernel)': \(detail)"
        case let .invalidLaunch(name, value, limit):
            return "invalid launch '\(name)': value \(value) is outside \(limit)"
        case let .backendFailure(backend, call, code, message):
            return "\(backend) call \(call) failed with \(code) (\(message))"
        case let .backendUnavailable(backend, reason):
            return "\(backend) backend unavailable: \(reason)"
        case let .unsupported(feature, backend):
            return "unsupported: \(feature) is not available on the \(backend) backend"
        case let .notFound(kind, name):
            return "unknown \(kind) '\(name)'"
        case let .io(path, operation, errno, message):
            return "\(operation) '\(path)' failed: \(message) (errno \(errno))"
        case let .allAttemptsFailed(operation, attempts):
            return "\(operation) failed on every device tried (\(attempts.count) attempts): "
                + attempts.joined(separator: "; ")
        case let .deviceLost(device, reason):
            return "device \(device) lost: \(reason)"
        }
    }
}

extension GPUBridgeError {
    /// Throws `invalidArgument` unless `value` lies in `range`.
    @inlinable
    static func require(_ name: @autoclosure () -> String, _ value: Int, in range: ClosedRange<Int>)
        throws(GPUBridgeError)
    {
        guard range.contains(value) else {
            throw .invalidArgument(
                name: name(), value: String(value), limit: "\(range.lowerBound)...\(range.upperBound)")
        }
    }
}
