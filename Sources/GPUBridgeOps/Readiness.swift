import GPUBridge
import GPUBridgeCluster

/// Whether a process can take work, check by check: what `/health/ready` answers (200 when `ready`, 503 otherwise).
/// A value; any thread.
public struct Readiness: Sendable, Hashable, Codable {
    /// One condition and what was found.
    public struct Check: Sendable, Hashable, Codable {
        public var name: String
        public var ready: Bool
        public var detail: String
    }

    /// True when every check is.
    public var ready: Bool { checks.allSatisfy(\.ready) }
    public var checks: [Check]

    private enum CodingKeys: String, CodingKey { case ready, checks }

    public init(checks: [Check]) { self.checks = checks }

    public init(from decoder: any Decoder) throws {
        checks = try decoder.container(keyedBy: CodingKeys.self).decode([Check].self, forKey: .checks)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(ready, forKey: .ready)
        try container.encode(checks, forKey: .checks)
    }
}

extension OpsSources {
    /// The checks: `devices` (at least one device, not every one lost), and in cluster mode `membership` (the node is
    /// Active and serving, which also means its lease renewals reach the membership table's database).
    public func readiness() -> Readiness {
        var checks: [Readiness.Check] = []
        let devices = bridge.devices
        let lost = devices.filter { $0.lostReason != nil }
        let usable = devices.count - lost.count
        var detail = "\(usable) of \(devices.count) device(s) usable"
        if !lost.isEmpty {
            detail += "; lost: " + lost.map { "\($0.id) (\($0.lostReason ?? ""))" }.joined(separator: ", ")
        }
        checks.append(.init(name: "devices", ready: usable > 0, detail: detail))
        if let node {
            let serving = node.isServing
            checks.append(
                .init(
                    name: "membership", ready: serving,
                    detail: "node \(node.id) is \(node.phase.rawValue)\(serving ? " and serving" : ", not serving")"))
        }
        return Readiness(checks: checks)
    }
}
