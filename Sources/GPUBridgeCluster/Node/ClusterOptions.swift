import Foundation
import GPUBridge

/// Settings of a cluster node or client; `validate()` rejects nonsense. A value; any thread.
public struct ClusterOptions: Sendable {
    public enum Role: String, Sendable {
        /// Hosts activations, holds a lease on a membership row, judges other rows' leases.
        case node
        /// Only calls actors hosted by nodes; no row, no server.
        case client
    }

    public var role: Role = .node
    /// The address to listen on (a node) and to advertise in the membership table. Port 0 picks a free port.
    public var host = "127.0.0.1"
    public var port = 0
    /// The address other processes reach this node at, when it is not the one it listens on (behind a proxy or a
    /// NAT): written to the membership table instead of `host`. nil: `host`.
    public var advertisedHost: String?
    /// The port to advertise with `advertisedHost`; nil: the bound port.
    public var advertisedPort: Int?
    /// How often a node renews its lease, expires the leases that ended and reads the table (a client only reads).
    public var roundInterval: Duration = .seconds(1)
    /// How long a renewal keeps a node a member: by the table's clock, a node whose lease is not renewed within this
    /// time is dead (written Dead by the next member's round). A node stops serving on its own once this much time,
    /// less a tenth for clock-rate error, has passed since the start of its last successful renewal. So a dead node
    /// is noticed within `leaseDuration + roundInterval` (plus one database call), and never serves after another
    /// node may have taken over its actors. At least three rounds.
    public var leaseDuration: Duration = .seconds(10)
    /// The longest a membership or directory call may take before the node gives up on it (it retries next round).
    /// More than zero, at most `leaseDuration`; nil (the default): 5 s or a third of the lease, whichever is less.
    public var databaseTimeout: Duration?
    /// How long a Dead row stays in the table (for tools and late callers) before a member deletes it.
    public var deadRowRetention: Duration = .seconds(3_600)
    /// The longest a graceful stop waits for the calls it is running to finish before it saves its actors.
    public var drainTimeout: Duration = .seconds(30)
    /// The deadline of a call when `ClusterCall.timeout` is not set.
    public var callTimeout: Duration = .seconds(30)
    /// When a call cannot reach its node: 0 fails it at once with `ClusterError.nodeUnreachable`; more retries it
    /// (every round, after a fresh look at membership) until this much time has passed or the call's deadline comes,
    /// so a call placed on a node that died runs again on the activation's new node. Only for idempotent calls: the
    /// first attempt may have run.
    public var retryUnreachableFor: Duration = .zero
    /// Labels written to the membership row.
    public var labels: [String: String] = [:]
    /// Bytes a new activation is expected to need (placement skips nodes with less free device memory).
    public var activationFootprint = 0
    /// How many actor locations a node or client caches (the least recently found are forgotten first).
    public var locationCacheSize = 100_000

    public init() {}

    /// How long after the start of a successful renewal the node may serve: nine tenths of the lease, so a node
    /// whose clock runs up to 10 % slow against the table's still stops before the table expires it.
    public var servingWindow: Duration { leaseDuration * 0.9 }

    /// `databaseTimeout`, or its default.
    public var effectiveDatabaseTimeout: Duration { databaseTimeout ?? min(.seconds(5), leaseDuration / 3) }

    public func validate() throws(GPUBridgeError) {
        guard (0...65_535).contains(port) else {
            throw .invalidArgument(name: "port", value: "\(port)", limit: "0...65535")
        }
        guard !host.isEmpty else { throw .invalidArgument(name: "host", value: "\"\"", limit: "an IPv4 address") }
        if let advertisedHost, advertisedHost.isEmpty {
            throw .invalidArgument(name: "advertisedHost", value: "\"\"", limit: "an address, or nil for host")
        }
        if let advertisedPort, !(1...65_535).contains(advertisedPort) {
            throw .invalidArgument(name: "advertisedPort", value: "\(advertisedPort)", limit: "1...65535")
        }
        guard roundInterval >= .milliseconds(10), roundInterval <= .seconds(600) else {
            throw .invalidArgument(name: "roundInterval", value: "\(roundInterval)", limit: "10 ms...600 s")
        }
        guard leaseDuration >= roundInterval * 3, leaseDuration <= .seconds(3_600) else {
            throw .invalidArgument(
                name: "leaseDuration", value: "\(leaseDuration)",
                limit: "at least 3 rounds (3 × roundInterval = \(roundInterval * 3)), at most 1 hour")
        }
        if let databaseTimeout, databaseTimeout <= .zero || databaseTimeout > leaseDuration {
            throw .invalidArgument(
                name: "databaseTimeout", value: "\(databaseTimeout)",
                limit: "more than zero, at most leaseDuration (\(leaseDuration))")
        }
        guard deadRowRetention >= .zero, deadRowRetention <= .seconds(30 * 86_400) else {
            throw .invalidArgument(name: "deadRowRetention", value: "\(deadRowRetention)", limit: "0 s...30 days")
        }
        guard drainTimeout >= .zero, drainTimeout <= .seconds(86_400) else {
            throw .invalidArgument(name: "drainTimeout", value: "\(drainTimeout)", limit: "0 s...1 day")
        }
        guard callTimeout > .zero, callTimeout <= .seconds(86_400) else {
            throw .invalidArgument(name: "callTimeout", value: "\(callTimeout)", limit: "more than zero, at most a day")
        }
        guard retryUnreachableFor >= .zero else {
            throw .invalidArgument(name: "retryUnreachableFor", value: "\(retryUnreachableFor)", limit: "zero or more")
        }
        guard activationFootprint >= 0 else {
            throw .invalidArgument(
                name: "activationFootprint", value: "\(activationFootprint)", limit: "zero or more bytes")
        }
        guard (1...100_000_000).contains(locationCacheSize) else {
            throw .invalidArgument(name: "locationCacheSize", value: "\(locationCacheSize)", limit: "1...100000000")
        }
    }
}
