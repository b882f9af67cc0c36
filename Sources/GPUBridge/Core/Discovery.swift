/// What one backend found on this machine: its devices, or why it cannot be used.
public struct BackendReport: Sendable {
    public var backend: BackendKind
    /// The devices found; empty when the backend is unavailable.
    public var devices: [any DeviceBackend]
    /// Why the backend cannot be used (library missing, no platform, no device), or nil when it can.
    public var unavailableReason: String?
    /// Facts worth showing: library paths, versions, platforms.
    public var details: [(String, String)]

    public init(
        backend: BackendKind, devices: [any DeviceBackend], unavailableReason: String? = nil,
        details: [(String, String)] = []
    ) {
        self.backend = backend
        self.devices = devices
        self.unavailableReason = unavailableReason
        self.details = details
    }

    public var isAvailable: Bool { unavailableReason == nil && !devices.isEmpty }
}

/// A backend that can look for devices. Discovery never throws: a missing library or driver is a report, not an error.
public protocol BackendProvider: Sendable {
    var backend: BackendKind { get }
    /// Finds this backend's devices. May be slow (loads libraries, queries drivers); call once.
    func discover() -> BackendReport
}
