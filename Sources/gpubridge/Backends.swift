import GPUBridge
import GPUBridgeCUDA
import GPUBridgeOpenCL

/// Every backend the CLI knows, in order of preference for `--backend auto` (best first).
enum Backends {
    static let providers: [any BackendProvider] = [
        CUDABackendProvider(), OpenCLBackendProvider(), CPUBackendProvider(),
    ]
    static let preference: [BackendKind] = [.cuda, .opencl, .cpu]

    /// Discovers every backend once; devices share one on-disk kernel cache.
    static func discover() -> (reports: [BackendReport], devices: [Device], errors: [String]) {
        let reports = providers.map { $0.discover() }
        let cache = KernelCache.makeDefault()
        var devices: [Device] = []
        var errors: [String] = []
        for report in reports {
            for backend in report.devices {
                do {
                    devices.append(try Device(backend: backend, cache: cache))
                } catch {
                    errors.append("\(backend.info.id): \(error)")
                }
            }
        }
        return (reports, devices, errors)
    }
}

/// `--backend` values.
enum BackendChoice: String, CaseIterable, Sendable {
    case auto, cpu, opencl, cuda

    var kind: BackendKind? { BackendKind(rawValue: rawValue) }

    /// The devices this choice selects among `devices`: all of one backend, or the best backend available for auto.
    func select(from devices: [Device], reports: [BackendReport]) throws -> [Device] {
        if let kind {
            let chosen = devices.filter { $0.id.backend == kind }
            if chosen.isEmpty {
                let reason = reports.first { $0.backend == kind }?.unavailableReason ?? "not built into this gpubridge"
                throw GPUBridgeError.backendUnavailable(backend: kind.rawValue, reason: reason)
            }
            return chosen
        }
        for kind in Backends.preference {
            let chosen = devices.filter { $0.id.backend == kind }
            if !chosen.isEmpty { return chosen }
        }
        throw GPUBridgeError.backendUnavailable(backend: "any", reason: "no device found")
    }
}
