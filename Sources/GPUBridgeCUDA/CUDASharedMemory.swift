import GPUBridge

/// What a launch needs done about shared memory before `cuLaunchKernel`.
///
/// A block may use 48 KiB of shared memory, static and dynamic together, unless its function is opted in with
/// `CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES`, up to the device's `MAX_SHARED_MEMORY_PER_BLOCK_OPTIN` (static
/// + dynamic). A value type; pure.
public enum CUDASharedMemory {
    /// The dynamic size to opt the function in to (nil: none needed), or `invalidLaunch` naming both numbers when
    /// static + dynamic exceeds the device's opt-in limit.
    public static func optIn(
        kernel: String, staticBytes: Int, dynamicBytes: Int, defaultLimit: Int = 48 * 1024, optInLimit: Int
    ) throws(GPUBridgeError) -> Int? {
        let (total, overflow) = staticBytes.addingReportingOverflow(dynamicBytes)
        guard dynamicBytes >= 0, !overflow, total <= max(defaultLimit, optInLimit) else {
            throw .invalidLaunch(
                name: "sharedMemoryBytes",
                value: "\(dynamicBytes) bytes dynamic + \(staticBytes) bytes static (kernel '\(kernel)')",
                limit: "static + dynamic <= \(max(defaultLimit, optInLimit)) bytes per block on this device")
        }
        return total > defaultLimit ? dynamicBytes : nil
    }
}
