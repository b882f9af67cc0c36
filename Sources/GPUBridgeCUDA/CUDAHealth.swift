import GPUBridge
import Synchronization

/// How a failed driver call is reported, by its status. A value type; `of(_:)` is a pure switch, callable from any
/// thread.
public enum CUDAFailureKind: Sendable, Hashable {
    /// `CUDA_ERROR_OUT_OF_MEMORY`: reported as `GPUBridgeError.outOfMemory`, so the pool trims its cache and the
    /// call is retried once (module loads, launches, streams and events need driver memory too, with lazy loading
    /// the default since CUDA 12.2).
    case outOfMemory
    /// A fault that ends the context for the rest of the process (an illegal or misaligned address, an illegal
    /// instruction, a failed launch, an assertion, an uncorrectable ECC error): reported as
    /// `GPUBridgeError.deviceLost`, and the device takes no more work.
    case contextLost
    /// Anything else: `GPUBridgeError.backendFailure` naming the call.
    case other

    /// The kind of `status` (a `CUresult`).
    public static func of(_ status: Int32) -> CUDAFailureKind {
        switch status {
        case CU.errorOutOfMemory:
            return .outOfMemory
        case CU.errorECCUncorrectable, CU.errorIllegalAddress, CU.errorLaunchTimeout, CU.errorAssert,
            CU.errorHardwareStackError, CU.errorIllegalInstruction, CU.errorMisalignedAddress,
            CU.errorInvalidAddressSpace, CU.errorInvalidPC, CU.errorLaunchFailed:
            return .contextLost
        default:
            return .other
        }
    }
}

/// Whether one CUDA device can still run work, and the one place driver failures become `GPUBridgeError`s.
///
/// A fault that ends the context (`CUDAFailureKind.contextLost`) is recorded once, with the first error seen and the
/// command that was pending when it was reported; from then on every call of the backend fails with
/// `GPUBridgeError.deviceLost` carrying that same reason (so the commands that were queued behind the fault are not
/// each blamed for it), `Device.lostReason` reports it and `DeviceBroker` sends the device nothing more.
///
/// Ownership: the backend, its lanes and programs share one. Thread safety: any thread; the state is one lock.
/// Cost: a lock per `ensureUsable`.
final class CUDAHealth: Sendable {
    let driver: CUDADriver
    let device: String
    private let lost = Mutex<String?>(nil)

    init(driver: CUDADriver, device: String) {
        self.driver = driver
        self.device = device
    }

    /// The first context-ending fault, or nil.
    var lostReason: String? { lost.withLock { $0 } }

    /// Throws `deviceLost` once a fault ended the context.
    @inline(__always)
    func ensureUsable() throws(GPUBridgeError) {
        if let reason = lost.withLock({ $0 }) { throw .deviceLost(device: device, reason: reason) }
    }

    /// The error for a failed call: `outOfMemory`, `deviceLost` (recording the loss) or `backendFailure`.
    func failure(_ status: CU.Result, _ call: String, _ context: String? = nil) -> GPUBridgeError {
        switch CUDAFailureKind.of(status) {
        case .outOfMemory:
            let (name, message) = driver.describe(status)
            return .outOfMemory(
                device: device, requested: 0, inUse: 0, cached: 0, limit: 0,
                detail: "\(call): \(name): \(message)" + (context.map { "; \($0)" } ?? ""))
        case .contextLost:
            let (name, message) = driver.describe(status)
            let first = "\(name) (\(message)) reported by \(call)" + (context.map { " while \($0) was pending" } ?? "")
            let reason = lost.withLock { reason -> String in
                if reason == nil { reason = first }
                return reason!
            }
            return .deviceLost(device: device, reason: reason)
        case .other:
            return driver.failure(status, call, context)
        }
    }

    /// Throws `failure(status, call)` unless `status` is `CUDA_SUCCESS`.
    @inline(__always)
    func check(_ status: CU.Result, _ call: @autoclosure () -> String) throws(GPUBridgeError) {
        guard status == CU.success else { throw failure(status, call()) }
    }
}
