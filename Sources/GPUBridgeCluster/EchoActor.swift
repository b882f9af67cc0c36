import Distributed
import Foundation
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

    /// Who served this call: the activation's fencing token (its directory number; nil outside a cluster), the serving
    /// process and the calls this activation has served. A fault harness checks with it that no replaced activation
    /// serves after its successor has.
    public distributed func stamp() async throws -> EchoStamp {
        try await withActivation {
            calls += 1
            return EchoStamp(
                token: ActivationFence.current.flatMap { $0.actor == id ? $0.token : nil },
                process: ProcessInfo.processInfo.processIdentifier, calls: calls)
        }
    }
}

/// What `EchoActor.stamp()` returns. A value; any thread.
public struct EchoStamp: Sendable, Hashable, Codable {
    /// The serving activation's fencing token (nil outside a cluster).
    public var token: Int64?
    /// The serving process's id.
    public var process: Int32
    /// Calls the activation has served, this one included.
    public var calls: Int

    public init(token: Int64?, process: Int32, calls: Int) {
        self.token = token
        self.process = process
        self.calls = calls
    }
}
