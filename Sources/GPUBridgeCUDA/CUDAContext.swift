import GPUBridge

/// A device's primary context, retained for as long as anything of this backend uses the device.
///
/// CUDA contexts are current per OS thread, and Swift tasks move between threads at every suspension, so every
/// backend entry point calls `makeCurrent()` first (a `cuCtxSetCurrent`: a thread-local store in the driver, tens of
/// nanoseconds), and the backend's own worker threads make it current once when they start.
///
/// Ownership: streams, modules, worker jobs and the backend hold it; the last one to go releases the primary context
/// (`cuDevicePrimaryCtxRelease_v2`). By then every stream has been drained and destroyed on its worker thread, so the
/// release waits for no device work. Thread safety: immutable.
final class CUDAContext: Sendable {
    let driver: CUDADriver
    let device: CU.Device
    let handle: CUHandle

    init(driver: CUDADriver, device: CU.Device, health: CUDAHealth) throws(GPUBridgeError) {
        self.driver = driver
        self.device = device
        var context: OpaquePointer?
        try health.check(driver.cuDevicePrimaryCtxRetain(&context, device), "cuDevicePrimaryCtxRetain")
        handle = CUHandle(context)
    }

    /// Makes the context current on the calling thread.
    @inline(__always)
    func makeCurrent() throws(GPUBridgeError) {
        try driver.check(driver.cuCtxSetCurrent(handle.pointer), "cuCtxSetCurrent")
    }

    deinit {
        _ = driver.cuDevicePrimaryCtxRelease(device)
    }
}
