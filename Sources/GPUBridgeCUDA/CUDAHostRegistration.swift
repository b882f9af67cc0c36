import GPUBridge
import Synchronization

/// Existing host memory page-locked with `cuMemHostRegister_v2`.
///
/// Pass `allocation` with `self` as the owner to `CUDABackend.enqueueCopy(from:offset:owner:to:)` (and the
/// device-to-host counterpart): the copy then keeps the registration alive until it has completed. The registration
/// ends with `unregister()`, or when the object goes: either way `cuMemHostUnregister` has returned before the call
/// (or the release of the last reference) returns, so the memory may be freed right after. The last reference may be
/// an in-flight copy's: it then goes on the lane's completion thread once the copy has finished. Unregistering may
/// wait for the device. Thread safety: any thread.
public final class CUDAHostRegistration: Sendable {
    /// The registered range (`pinned == true`).
    public let allocation: HostAllocation
    private let backend: CUDABackend
    private let registered = Mutex<Bool>(true)

    init(backend: CUDABackend, allocation: HostAllocation) {
        self.backend = backend
        self.allocation = allocation
    }

    /// Whether the range is still registered.
    public var isRegistered: Bool { registered.withLock { $0 } }

    /// Unregisters the range now (`cuMemHostUnregister`), on the calling thread; it may wait for the device.
    /// Later calls do nothing.
    public func unregister() throws(GPUBridgeError) {
        let backend = backend
        let address = UInt(allocation.address)
        try registered.withLock { (registered: inout Bool) throws(GPUBridgeError) in
            guard registered else { return }
            try backend.makeCurrent()
            try backend.health.check(
                backend.driver.cuMemHostUnregister(UnsafeMutableRawPointer(bitPattern: address)), "cuMemHostUnregister")
            registered = false
        }
    }

    deinit {
        // Synchronous, so whoever lets go of the registration may free the memory as soon as that returns.
        guard registered.withLock({ $0 }) else { return }
        _ = try? backend.makeCurrent()
        _ = backend.driver.cuMemHostUnregister(UnsafeMutableRawPointer(bitPattern: UInt(allocation.address)))
    }
}
