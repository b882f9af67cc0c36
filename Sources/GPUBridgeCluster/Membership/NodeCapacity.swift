import Foundation

/// What a node tells the cluster about its devices, for placement: written with each lease renewal. A value; any
/// thread.
public struct NodeCapacity: Sendable, Hashable, Codable {
    /// One device of the node. A value; any thread.
    public struct DeviceSummary: Sendable, Hashable, Codable {
        public var id: String
        public var backend: String
        public var name: String
        public var totalMemory: Int
        /// Device memory not reserved by this node's pools.
        public var freeMemory: Int

        public init(id: String, backend: String, name: String, totalMemory: Int, freeMemory: Int) {
            self.id = id
            self.backend = backend
            self.name = name
            self.totalMemory = totalMemory
            self.freeMemory = freeMemory
        }
    }

    public var devices: [DeviceSummary]
    /// Virtual actors active on the node now (deactivated, idle ones are not counted: they hold no device memory).
    public var activations: Int
    /// Calls the node is running now.
    public var callsInFlight: Int

    public init(devices: [DeviceSummary] = [], activations: Int = 0, callsInFlight: Int = 0) {
        self.devices = devices
        self.activations = activations
        self.callsInFlight = callsInFlight
    }

    /// Devices other than the CPU backend.
    public var acceleratorCount: Int { devices.filter { $0.backend != "cpu" }.count }
    public var freeMemory: Int { devices.reduce(0) { $0 + $1.freeMemory } }
}
