import GPUBridge
import GPUBridgeActors
import GPUBridgeCluster
import Prometheus

/// What a process's operations endpoint reports on: its bridge (devices, pools, broker), and where it has them, its
/// actor system and its cluster node.
///
/// A value made once by the process that serves the endpoint (`gpubridge serve`, `gpubridge node --http`) and shared
/// with every request handler; any thread may use it. Nothing is cached: each report reads the live objects, which
/// costs a few lock acquisitions per device and per actor system, no driver call and no allocation on a device.
public struct OpsSources: Sendable {
    /// The devices, their pools and the broker's view of them.
    public var bridge: Bridge
    /// The actor system whose activations `/api/v1/actors` lists, if the process hosts actors.
    public var actors: EmbeddedActorSystem?
    /// The cluster node, in cluster mode: membership in `/api/v1/cluster`, a `node` label on every metric, and
    /// readiness waits for it to serve.
    public var node: ClusterNode?
    /// The registry swift-metrics reports into, when the process bootstrapped Prometheus: its families (launch
    /// latency, requests, cluster calls) follow the live figures in `/metrics`.
    public var registry: PrometheusCollectorRegistry?
    /// The warnings and errors the process logged (`RecentErrors.process` when it bootstrapped
    /// `RecentErrors.LogHandler`): `/api/v1/errors`, the dashboard, and `gpubridge_log_messages_total`.
    public var errors: RecentErrors?

    public init(
        bridge: Bridge, actors: EmbeddedActorSystem? = nil, node: ClusterNode? = nil,
        registry: PrometheusCollectorRegistry? = nil, errors: RecentErrors? = nil
    ) {
        self.bridge = bridge
        self.actors = actors
        self.node = node
        self.registry = registry
        self.errors = errors
    }
}
