import Foundation
import GPUBridge
import GPUBridgeActors
import GPUBridgeCluster

/// One device as `/api/v1/devices` shows it: what it is, its pool, its counters and the broker's state of it.
/// A value read at one moment; any thread.
public struct DeviceReport: Sendable, Hashable, Codable {
    public var id: String
    public var name: String
    public var backend: String
    public var totalMemory: Int
    /// Why the device is out of service for good, when its backend reported it lost.
    public var lost: String?
    public var pool: BufferPool.Statistics
    public var counters: DeviceCounters.Snapshot
    public var broker: DeviceBroker.DeviceState
    /// Entry points of the kernel text loaded on the device (`Device.loadedKernels`).
    public var kernels: [String]
}

/// The actors `/api/v1/actors` lists. A value read at one moment; any thread.
public struct ActorsReport: Sendable, Hashable, Codable {
    public struct Activation: Sendable, Hashable, Codable {
        public var type: String
        public var key: String
        /// `inactive`, `activating`, `active` or `deactivating`.
        public var phase: String
        /// The device the activation lives on, when it is active and holds device memory.
        public var device: String?
        public var activations: Int
        public var calls: Int
        public var inFlight: Int
        /// When the latest call started.
        public var lastCall: Date?
        /// Calls that threw.
        public var failedCalls: Int
        /// Total time of the calls that ended, in seconds.
        public var callSeconds: Double
        /// A durable actor's journal and snapshot figures (appends, entries since the snapshot, snapshots, retries
        /// recognised, ...); nil for other actors.
        public var journal: JournalStatistics?

        public init(_ status: ActivationStatus) {
            type = status.id.type
            key = status.id.key
            phase = status.phase.rawValue
            device = status.device?.description
            activations = status.activations
            calls = status.calls
            inFlight = status.inFlight
            lastCall = status.lastCall
            failedCalls = status.failedCalls
            callSeconds = Double(status.callNanoseconds) / 1e9
            journal = status.journal
        }
    }

    /// The cluster node these actors live on (`host:port@generation`); nil outside cluster mode.
    public var node: String?
    /// Instances active in this process's actor system.
    public var active: Int
    /// Every actor of this process that has activated at least once (active or idle since), by type then key.
    public var actors: [Activation]
}

/// The membership table as this node last read it, for `/api/v1/cluster`. A value; any thread.
public struct ClusterReport: Sendable, Hashable, Codable {
    public var node: NodeID
    public var phase: String
    public var serving: Bool
    /// The table version of the snapshot below.
    public var version: Int64
    public var members: [MembershipEntry]
}

extension OpsSources {
    /// Every device of the bridge, in the broker's order.
    public func deviceReports() -> [DeviceReport] {
        let states = bridge.broker.states
        return bridge.devices.enumerated().map { i, device in
            DeviceReport(
                id: device.id.description, name: device.info.name, backend: device.id.backend.rawValue,
                totalMemory: device.info.totalMemory, lost: device.lostReason, pool: device.pool.statistics,
                counters: device.counters.snapshot, broker: states[i], kernels: device.loadedKernels)
        }
    }

    /// The actor system's activations; nil when the process hosts no actors.
    public func actorsReport() -> ActorsReport? {
        guard let actors else { return nil }
        return ActorsReport(
            node: node?.id.description, active: actors.activeCount,
            actors: actors.activationStatus.map(ActorsReport.Activation.init))
    }

    /// The node's view of the cluster; nil outside cluster mode.
    public func clusterReport() -> ClusterReport? {
        guard let node else { return nil }
        let view = node.view
        return ClusterReport(
            node: node.id, phase: node.phase.rawValue, serving: node.isServing, version: view.version,
            members: view.entries.map(\.entry))
    }
}
