import Foundation
import GPUBridge
import GPUBridgeActors

/// Chooses the node for a new activation from the active members' advertised capacity.
///
/// Nodes with accelerators (any device that is not the CPU backend) are preferred to nodes without. Among the
/// candidates, the choice is weighted rendezvous hashing: node `n` scores `w(n) / -ln(h(id, n))`, where `h` is a hash
/// of the actor id and the node mapped into (0, 1) and the weight `w(n)` is the node's free device memory (GiB, at
/// least 1/1024) divided by one plus its activations and calls in flight. The highest score wins. So placement follows
/// capacity (a node with twice the free memory and the same load gets about twice the activations), and it is
/// deterministic: every node that sees the same membership makes the same choice for the same id, and a node with no
/// advertised capacity falls back to plain rendezvous hashing (weight 1).
public struct CapacityPlacement: Sendable {
    /// Bytes an activation is expected to need; nodes advertising less free memory than this are skipped while any
    /// node has enough.
    public var footprint: Int

    public init(footprint: Int = 0) { self.footprint = footprint }

    /// The chosen node, or nil when `candidates` is empty.
    public func choose(for id: GPUActorID, among candidates: [MembershipEntry]) -> NodeID? {
        guard !candidates.isEmpty else { return nil }
        var pool = candidates
        let accelerated = pool.filter { $0.capacity.acceleratorCount > 0 }
        if !accelerated.isEmpty { pool = accelerated }
        if footprint > 0 {
            let roomy = pool.filter {
                $0.capacity.devices.isEmpty || $0.capacity.devices.contains { $0.freeMemory >= footprint }
            }
            if !roomy.isEmpty { pool = roomy }
        }
        var best: (node: NodeID, score: Double)?
        for entry in pool {
            let score = Self.weight(entry.capacity) / -log(Self.unitHash(id, entry.node))
            if let current = best, score < current.score || (score == current.score && entry.node > current.node) {
                continue
            }
            best = (entry.node, score)
        }
        return best?.node
    }

    /// The weight of a node: free memory in GiB per unit of load; 1 when it advertises no devices.
    public static func weight(_ capacity: NodeCapacity) -> Double {
        guard !capacity.devices.isEmpty else { return 1 }
        let devices = capacity.acceleratorCount > 0 ? capacity.devices.filter { $0.backend != "cpu" } : capacity.devices
        let free = max(Double(devices.reduce(0) { $0 + max(0, $1.freeMemory) }) / Double(1 << 30), 1.0 / 1024)
        return free / Double(1 + capacity.activations + capacity.callsInFlight)
    }

    /// A hash of (id, node) in the open interval (0, 1): FNV-1a 64 over the bytes, then SplitMix64's finalizer.
    static func unitHash(_ id: GPUActorID, _ node: NodeID) -> Double {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in "\(id.type)/\(id.key)|\(node.host):\(node.port)@\(node.generation)".utf8 {
            h = (h ^ UInt64(byte)) &* 0x0000_0100_0000_01b3
        }
        h = (h ^ (h >> 30)) &* 0xbf58_476d_1ce4_e5b9
        h = (h ^ (h >> 27)) &* 0x94d0_49bb_1331_11eb
        h ^= h >> 31
        return (Double(h >> 11) + 0.5) / Double(1 << 53)
    }

    /// The position of `node` on the probing ring.
    static func ringPosition(_ node: NodeID) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in node.description.utf8 { h = (h ^ UInt64(byte)) &* 0x0000_0100_0000_01b3 }
        return h
    }
}
