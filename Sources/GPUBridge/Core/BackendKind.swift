/// The families of backends GPUBridge can drive.
public enum BackendKind: String, Sendable, Hashable, Codable, CaseIterable, CustomStringConvertible {
    /// The pure-Swift backend that runs kernels on the host's cores. Always available.
    case cpu
    /// OpenCL, loaded at run time from `libOpenCL.so.1`.
    case opencl
    /// CUDA driver API and NVRTC, loaded at run time from `libcuda.so.1` and `libnvrtc`.
    case cuda

    public var description: String { rawValue }
}

/// A device's identity: the backend that drives it and its ordinal within that backend, printed as `cuda:0`.
public struct DeviceID: Sendable, Hashable, Codable, CustomStringConvertible {
    public let backend: BackendKind
    public let ordinal: Int

    public init(backend: BackendKind, ordinal: Int) {
        self.backend = backend
        self.ordinal = ordinal
    }

    public var description: String { "\(backend):\(ordinal)" }
}
