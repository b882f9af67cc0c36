import Foundation
import GPUBridge
import GPUBridgeActors
import GPUBridgeCluster
import Testing

@Suite("Placement by GPU capacity (weighted rendezvous hashing)")
struct PlacementTests {
    static let gib = 1 << 30

    static func member(_ port: Int, devices: [(backend: String, free: Int)], activations: Int = 0) -> MembershipEntry {
        let summaries = devices.enumerated().map { i, d in
            NodeCapacity.DeviceSummary(
                id: "\(d.backend):\(i)", backend: d.backend, name: d.backend, totalMemory: 80 * gib,
                freeMemory: d.free)
        }
        return MembershipEntry(
            node: NodeID(host: "10.0.0.\(port % 250)", port: port, generation: 1_800_000_000_000_000 + Int64(port)),
            status: .active, iAmAlive: Date(), startTime: Date(),
            capacity: NodeCapacity(devices: summaries, activations: activations))
    }

    static let ids = (0..<12_000).map { GPUActorID(type: "vector-index", key: "k\($0)") }

    static func shares(_ members: [MembershipEntry], placement: CapacityPlacement = CapacityPlacement()) -> [NodeID:
        Int]
    {
        var counts: [NodeID: Int] = [:]
        for id in ids { counts[placement.choose(for: id, among: members)!, default: 0] += 1 }
        return counts
    }

    @Test("the same id and membership give the same node, whatever the order of the rows")
    func deterministic() {
        let members = (0..<5).map { Self.member(7000 + $0, devices: [("cuda", (10 + $0) * Self.gib)]) }
        for id in Self.ids.prefix(500) {
            let a = CapacityPlacement().choose(for: id, among: members)
            #expect(a == CapacityPlacement().choose(for: id, among: members.reversed()))
            #expect(a == CapacityPlacement().choose(for: id, among: members.shuffled()))
        }
        #expect(CapacityPlacement().choose(for: Self.ids[0], among: []) == nil)
    }

    @Test("nodes with accelerators are preferred to CPU-only nodes")
    func acceleratorsFirst() {
        let gpu = Self.member(7001, devices: [("cpu", 8 * Self.gib), ("cuda", 1 * Self.gib)])
        let cpus = (2..<6).map { Self.member(7000 + $0, devices: [("cpu", 200 * Self.gib)]) }
        let shares = Self.shares(cpus + [gpu])
        #expect(shares == [gpu.node: Self.ids.count])
    }

    @Test("shares follow free device memory: twice the memory, about twice the activations")
    func proportionalToMemory() {
        let big = Self.member(7001, devices: [("cuda", 80 * Self.gib)])
        let small = Self.member(7002, devices: [("cuda", 40 * Self.gib)])
        let pair = Self.member(7003, devices: [("cuda", 20 * Self.gib), ("cuda", 20 * Self.gib)])
        let shares = Self.shares([big, small, pair])
        let n = Double(Self.ids.count)
        // 80 : 40 : (20 + 20) GiB, so 1/2, 1/4 and 1/4: the pair counts its two devices together.
        #expect(abs(Double(shares[big.node, default: 0]) / n - 0.5) < 0.03, "\(shares)")
        #expect(abs(Double(shares[small.node, default: 0]) / n - 0.25) < 0.03, "\(shares)")
        #expect(abs(Double(shares[pair.node, default: 0]) / n - 0.25) < 0.03, "\(shares)")
    }

    @Test("load lowers the weight: a node with 3 activations gets a quarter of an idle twin's share")
    func load() {
        let idle = Self.member(7001, devices: [("cuda", 40 * Self.gib)])
        let busy = Self.member(7002, devices: [("cuda", 40 * Self.gib)], activations: 3)
        let shares = Self.shares([idle, busy])
        #expect(abs(Double(shares[busy.node, default: 0]) / Double(Self.ids.count) - 0.2) < 0.03, "\(shares)")
        #expect(CapacityPlacement.weight(busy.capacity) == CapacityPlacement.weight(idle.capacity) / 4)
    }

    @Test("nodes without room for the footprint are skipped while any has room")
    func footprint() {
        let roomy = Self.member(7001, devices: [("cuda", 10 * Self.gib)])
        let full = (2..<6).map { Self.member(7000 + $0, devices: [("cuda", 1 * Self.gib)]) }
        #expect(
            Self.shares(full + [roomy], placement: CapacityPlacement(footprint: 4 * Self.gib)) == [
                roomy.node: Self.ids.count
            ])
        // When none has room, placement still chooses (the activation reports outOfMemory itself if it must).
        #expect(Self.shares(full, placement: CapacityPlacement(footprint: 64 * Self.gib)).count == full.count)
    }

    @Test("a node leaving moves only its own activations (rendezvous stability)")
    func stability() {
        let members = (0..<4).map { Self.member(7000 + $0, devices: [("cuda", 40 * Self.gib)]) }
        let before = Dictionary(
            uniqueKeysWithValues: Self.ids.map { ($0, CapacityPlacement().choose(for: $0, among: members)!) })
        let gone = members[2].node
        let rest = members.filter { $0.node != gone }
        for id in Self.ids where before[id] != gone {
            #expect(CapacityPlacement().choose(for: id, among: rest) == before[id])
        }
    }
}
