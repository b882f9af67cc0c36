import GPUBridge

/// Finds CUDA devices: loads `libcuda.so.1` (at run time; nothing links against CUDA), calls `cuInit`, opens every
/// device, and looks for NVRTC.
///
/// Discovery never throws: a missing library, a failed `cuInit` or no device becomes `unavailableReason`, with the
/// loader's or driver's own words. `details` names the driver library and version, how symbols were resolved, each
/// device, where NVRTC was found (path, origin, version) or why it was not, and the `blas` line: whether `matmul` runs
/// cuBLAS (`CUBLASLibrary.shared`) or the built-in kernel.
public struct CUDABackendProvider: BackendProvider {
    public var options: CUDABackend.Options

    public init(options: CUDABackend.Options = CUDABackend.Options()) {
        self.options = options
    }

    public var backend: BackendKind { .cuda }

    public func discover() -> BackendReport {
        var details: [(String, String)] = []
        let nvrtc = options.nvrtcPath.map { NVRTCCompiler.locate(explicitPath: $0) } ?? NVRTCCompiler.shared
        let nvrtcDetail: (String, String)
        switch nvrtc {
        case let .success(compiler):
            nvrtcDetail = ("nvrtc", "\(compiler.version) at \(compiler.path) (\(compiler.origin))")
        case let .failure(reason):
            nvrtcDetail = ("nvrtc", reason.description)
        }

        let driver: CUDADriver
        switch CUDADriver.load(path: options.libraryPath) {
        case let .success(loaded):
            driver = loaded
        case let .failure(reason):
            return BackendReport(
                backend: .cuda, devices: [], unavailableReason: reason.description,
                details: [
                    ("library", options.libraryPath), nvrtcDetail,
                    ("blas", CUBLASLibrary.summary(CUBLASLibrary.shared)),
                ])
        }
        details.append(("library", driver.library.path(containing: "cuInit") ?? options.libraryPath))
        details.append(("driver", "CUDA \(driver.versionString) (cuDriverGetVersion \(driver.driverVersion))"))
        details.append(("symbols", driver.resolution))
        details.append(nvrtcDetail)
        details.append(("blas", CUBLASLibrary.summary(CUBLASLibrary.shared)))

        var count: Int32 = 0
        let status = driver.cuDeviceGetCount(&count)
        guard status == CU.success else {
            return BackendReport(
                backend: .cuda, devices: [], unavailableReason: "\(driver.failure(status, "cuDeviceGetCount"))",
                details: details)
        }
        guard count > 0 else {
            return BackendReport(
                backend: .cuda, devices: [],
                unavailableReason: "the CUDA driver found no device (cuDeviceGetCount = 0)",
                details: details)
        }
        var devices: [any DeviceBackend] = []
        var failures: [String] = []
        for ordinal in 0..<Int(count) {
            do {
                let device = try CUDABackend(driver: driver, ordinal: ordinal, nvrtc: nvrtc, options: options)
                let gib = Double(device.info.totalMemory) / Double(1 << 30)
                let memory = (gib * 10).rounded() / 10
                details.append(
                    (
                        "cuda:\(ordinal)",
                        "\(device.info.name), \(device.info.architecture), \(memory) GiB, \(device.info.computeUnits) SMs, PCI \(device.properties.pciBusID ?? "unknown")"
                    ))
                devices.append(device)
            } catch {
                failures.append("cuda:\(ordinal): \(error)")
                details.append(("cuda:\(ordinal)", "unusable: \(error)"))
            }
        }
        guard !devices.isEmpty else {
            return BackendReport(
                backend: .cuda, devices: [],
                unavailableReason: "no CUDA device could be opened: " + failures.joined(separator: "; "),
                details: details)
        }
        return BackendReport(backend: .cuda, devices: devices, details: details)
    }
}
