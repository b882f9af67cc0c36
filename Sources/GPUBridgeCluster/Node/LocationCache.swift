import GPUBridgeActors

/// Where a node's calls last found each actor, bounded: past `capacity` entries the least recently stored tenth is
/// forgotten (an O(n log n) sweep once per `capacity / 10` insertions). Owned by `ClusterNode`, touched under its lock.
struct LocationCache {
    private var entries: [GPUActorID: (address: ActorAddress, stamp: UInt64)] = [:]
    private var clock: UInt64 = 0
    let capacity: Int

    init(capacity: Int) { self.capacity = max(1, capacity) }

    var count: Int { entries.count }

    subscript(id: GPUActorID) -> ActorAddress? {
        get { entries[id]?.address }
        set {
            guard let newValue else {
                entries[id] = nil
                return
            }
            clock += 1
            entries[id] = (newValue, clock)
            if entries.count > capacity {
                let drop = max(1, capacity / 10)
                let oldest = entries.sorted { $0.value.stamp < $1.value.stamp }.prefix(drop).map(\.key)
                for key in oldest { entries[key] = nil }
            }
        }
    }

    /// Forgets every location on `node`.
    mutating func forget(node: NodeID) { entries = entries.filter { $0.value.address.node != node } }
}
