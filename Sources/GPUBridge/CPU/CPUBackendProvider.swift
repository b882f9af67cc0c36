/// Finds the CPU device. Always available.
public struct CPUBackendProvider: BackendProvider {
    public init() {}
    public var backend: BackendKind { .cpu }
    public func discover() -> BackendReport {
        let device = CPUBackend()
        return BackendReport(
            backend: .cpu, devices: [device],
            details: [("cores", String(device.cores)), ("alignment", "\(CPUBackend.alignment) bytes")])
    }
}
