import GPUBridge
import Glibc

/// Finds OpenCL devices: opens the ICD loader (`libOpenCL.so.1`) at run time, lists every platform and every device
/// of each, and makes an `OpenCLBackend` (its own context and queues) for each usable device.
///
/// Never throws: a missing library, no platform or no device is a `BackendReport` with `unavailableReason` saying
/// which. Devices older than OpenCL 1.2 or marked unavailable are skipped and listed in the report's details.
/// Discovery loads a library and talks to every driver; call it once and keep the backends. The report's `blas` line
/// says whether `matmul` runs CLBlast (`CLBlastLibrary.shared`) or the built-in kernel.
public struct OpenCLBackendProvider: BackendProvider {
    /// The library opened when neither `libraryPath` nor `GPUBRIDGE_OPENCL_LIBRARY` says otherwise.
    public static let defaultLibrary = "libOpenCL.so.1"

    /// The soname or path given to `dlopen`.
    public let libraryPath: String

    /// A provider that opens `libraryPath`, else `$GPUBRIDGE_OPENCL_LIBRARY`, else `libOpenCL.so.1`.
    public init(libraryPath: String? = nil) {
        if let libraryPath {
            self.libraryPath = libraryPath
        } else if let fromEnvironment = getenv("GPUBRIDGE_OPENCL_LIBRARY").map({ String(cString: $0) }),
            !fromEnvironment.isEmpty
        {
            self.libraryPath = fromEnvironment
        } else {
            self.libraryPath = Self.defaultLibrary
        }
    }

    public var backend: BackendKind { .opencl }

    public func discover() -> BackendReport {
        let library: OpenCLLibrary
        switch OpenCLLibrary.load(libraryPath) {
        case let .success(loaded): library = loaded
        case let .failure(failure):
            return BackendReport(
                backend: .opencl, devices: [], unavailableReason: failure.description,
                details: [("library", libraryPath)])
        }
        var details: [(String, String)] = [("library", library.path)]

        var platformCount: UInt32 = 0
        let countStatus = library.getPlatformIDs(0, nil, &platformCount)
        guard countStatus == CL.success || countStatus == CL.platformNotFoundKHR else {
            return BackendReport(
                backend: .opencl, devices: [],
                unavailableReason: "clGetPlatformIDs failed with \(openCLStatusName(countStatus))", details: details)
        }
        guard countStatus == CL.success, platformCount > 0 else {
            return BackendReport(
                backend: .opencl, devices: [],
                unavailableReason:
                    "no OpenCL platform: \(library.path) found no installable client driver (see /etc/OpenCL/vendors)",
                details: details)
        }
        var platforms = [OpaquePointer?](repeating: nil, count: Int(platformCount))
        let listStatus = library.getPlatformIDs(platformCount, &platforms, nil)
        guard listStatus == CL.success else {
            return BackendReport(
                backend: .opencl, devices: [],
                unavailableReason: "clGetPlatformIDs failed with \(openCLStatusName(listStatus))", details: details)
        }
        details.append(("platforms", String(platformCount)))

        var backends: [any DeviceBackend] = []
        var platformSummaries: [String] = []
        for (platformIndex, platform) in platforms.enumerated() {
            guard let platform else { continue }
            let name = (try? library.platformString(platform, CL.platformName)) ?? "unknown platform"
            let version = (try? library.platformString(platform, CL.platformVersion)) ?? "unknown version"
            let vendor = (try? library.platformString(platform, CL.platformVendor)) ?? "unknown vendor"
            details.append(("platform \(platformIndex)", "\(name), \(version) (\(vendor))"))

            var deviceCount: UInt32 = 0
            let status = library.getDeviceIDs(platform, CL.deviceTypeAll, 0, nil, &deviceCount)
            guard status == CL.success || status == CL.deviceNotFound else {
                details.append(
                    ("platform \(platformIndex) devices", "clGetDeviceIDs failed with \(openCLStatusName(status))"))
                platformSummaries.append("\(name): clGetDeviceIDs failed with \(openCLStatusName(status))")
                continue
            }
            guard status == CL.success, deviceCount > 0 else {
                platformSummaries.append("\(name): no device")
                continue
            }
            var devices = [OpaquePointer?](repeating: nil, count: Int(deviceCount))
            guard library.getDeviceIDs(platform, CL.deviceTypeAll, deviceCount, &devices, nil) == CL.success else {
                platformSummaries.append("\(name): clGetDeviceIDs failed")
                continue
            }
            var usable = 0
            for (deviceIndex, device) in devices.enumerated() {
                guard let device else { continue }
                let label = "platform \(platformIndex) device \(deviceIndex)"
                let deviceName = (try? library.deviceString(device, CL.deviceName)) ?? "unknown device"
                if let skip = Self.reasonToSkip(device, library: library) {
                    details.append((label, "\(deviceName) skipped: \(skip)"))
                    continue
                }
                do {
                    let backend = try OpenCLBackend(
                        library: library, platform: CLObject(platform), device: CLObject(device),
                        ordinal: backends.count, platformName: name, platformVersion: version)
                    backends.append(backend)
                    usable += 1
                    details.append(
                        (
                            backend.info.id.description,
                            "\(backend.info.name), \(backend.deviceVersion), driver \(backend.info.driverVersion)"
                        ))
                } catch {
                    details.append((label, "\(deviceName) skipped: \(error)"))
                }
            }
            platformSummaries.append("\(name): \(usable) of \(deviceCount) devices usable")
        }
        guard !backends.isEmpty else {
            return BackendReport(
                backend: .opencl, devices: [],
                unavailableReason: "no usable OpenCL device (\(platformSummaries.joined(separator: "; ")))",
                details: details)
        }
        details.append(("blas", CLBlastLibrary.summary(CLBlastLibrary.shared)))
        return BackendReport(backend: .opencl, devices: backends, details: details)
    }

    /// Why `device` cannot be used: unavailable, or older than OpenCL 1.2 (sub-buffers, fills and markers with wait
    /// lists need 1.2); nil when it can.
    private static func reasonToSkip(_ device: OpaquePointer, library: OpenCLLibrary) -> String? {
        if let available = try? library.deviceValue(device, CL.deviceAvailable, UInt32(0)), available == 0 {
            return "CL_DEVICE_AVAILABLE is false"
        }
        guard let version = try? library.deviceString(device, CL.deviceVersion) else {
            return "CL_DEVICE_VERSION cannot be read"
        }
        // "OpenCL <major>.<minor> <vendor-specific>"
        let number = version.split(separator: " ").dropFirst().first ?? ""
        let parts = number.split(separator: ".").compactMap { Int($0) }
        guard parts.count >= 2, (parts[0], parts[1]) >= (1, 2) else {
            return "\(version) is older than OpenCL 1.2"
        }
        return nil
    }
}
