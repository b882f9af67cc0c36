import Distributed
import GPUBridge
import GPUBridgeActors

/// A virtual actor that returns what it is sent: the cluster benchmark's target (its cost is the actor layer and the
/// wire, nothing else) and a quick way to see which node holds an id. `gpubridge node` registers it as "echo".
public distributed actor EchoActor: VirtualActor {
    public typealias ActorSystem = EmbeddedActorSystem
    public let lifecycle = ActivationLifecycle()
    private var calls = 0

    public init(actorSystem: EmbeddedActorSystem) { self.actorSystem = actorSystem }

    public func activate() async throws -> DeviceID? { nil }
    public func deactivate() async throws {}

    /// Returns `bytes`.
    public distributed func echo(_ bytes: [UInt8]) async throws -> [UInt8] {
        try await withActivation {
            calls += 1
            return bytes
        }
    }

    /// Returns `values`.
    public distributed func echoFloats(_ values: [Float]) async throws -> [Float] {
        try await withActivation {
            calls += 1
            return values
        }
    }

    /// Calls this activation has served.
    public distributed func callCount() async throws -> Int { try await withActivation { calls } }
}
