import Distributed
import Foundation
import GPUBridge
import Logging
import Synchronization

/// Options of an `EmbeddedActorSystem`; `validate()` rejects nonsense.
public struct ActorSystemOptions: Sendable {
    /// How long a virtual actor stays active with no call before it is deactivated (snapshot, then its device memory
    /// is released). The next call activates it again.
    public var idleTimeout: Duration = .seconds(300)
    /// When true, `resolve` hands out proxies and every call goes through `remoteCall`: arguments and results are
    /// encoded (JSON) and the call is executed on the local instance with `executeDistributedTarget`, as a receiving
    /// node would. Slower; it proves an actor's calls survive serialization before it runs in a cluster.
    public var serializeLocalCalls = false

    public init() {}

    public func validate() throws(GPUBridgeError) {
        guard idleTimeout > .zero, idleTimeout <= .seconds(86_400 * 365) else {
            throw .invalidArgument(name: "idleTimeout", value: "\(idleTimeout)", limit: "more than zero, at most a year")
        }
    }
}

/// The embedded default actor system: runs distributed actors in this process, with no services.
///
/// - **Addressing**: actors are addressed by `GPUActorID` (type name, key). A type is registered once with a factory;
///   `resolve` (and `actor(_:key:)`) creates the instance on first use. At most one instance exists per id: the
///   directory is one `Mutex`, and the instance is made while it is held, so 1 000 concurrent first calls find the same
///   instance. Creation is cheap and synchronous; the expensive part (device memory, restoring state) is the
///   activation that the first call runs (see `VirtualActor`).
/// - **Placement**: `place(footprint:excluding:)` chooses a device for an activation the way the `DeviceBroker` chooses
///   one for a request: backend preference, then load, then unreserved memory, with open circuits skipped.
/// - **Calls**: `resolve` returns the local instance, so a call is a plain actor call and `remoteCall` is not used.
///   With `options.serializeLocalCalls` it returns nil instead, the runtime makes a proxy, and `remoteCall` encodes the
///   invocation and executes it on the local instance (a loopback transport).
/// - **Storage**: `storage` keeps actors' snapshots (SQLite by default in applications, in-memory in tests).
///
/// Thread safety: all state is under one lock; any task may call any method.
public final class EmbeddedActorSystem: DistributedActorSystem, Sendable {
    public typealias ActorID = GPUActorID
    public typealias InvocationEncoder = EmbeddedInvocationEncoder
    public typealias InvocationDecoder = EmbeddedInvocationDecoder
    public typealias ResultHandler = EmbeddedResultHandler
    public typealias SerializationRequirement = Codable

    /// The runtime whose devices, catalog and broker actors use.
    public let bridge: Bridge
    /// Where actors' snapshots are kept.
    public let storage: any ActorStorage
    public let options: ActorSystemOptions
    let logger = Logger(label: "gpubridge.actors")

    /// The id the directory is creating an instance for, read by `assignID` during the instance's initializer.
    @TaskLocal static var creating: GPUActorID?

    typealias Factory = @Sendable (EmbeddedActorSystem) -> any DistributedActor

    private struct WeakActor {
        weak var actor: (any DistributedActor)?
    }

    private struct Directory {
        var factories: [String: Factory] = [:]
        var typeNames: [ObjectIdentifier: String] = [:]
        /// Instances the directory created; they live until the system goes away.
        var owned: [GPUActorID: any DistributedActor] = [:]
        /// Instances made directly with `init(actorSystem:)`; resolvable while someone else holds them.
        var unowned: [GPUActorID: WeakActor] = [:]
        var created: [GPUActorID: Int] = [:]
        var activations: [GPUActorID: Int] = [:]
        var placements: [GPUActorID: DeviceID] = [:]
        var anonymous = 0
    }

    private let directory = Mutex(Directory())

    public init(bridge: Bridge, storage: any ActorStorage, options: ActorSystemOptions = ActorSystemOptions()) throws(GPUBridgeError) {
        try options.validate()
        self.bridge = bridge
        self.storage = storage
        self.options = options
    }

    // MARK: Registration and addressing

    /// Registers `type` under `name`; `factory` makes an instance for an id of that name (it runs once per id, under
    /// the directory's lock, so it must only call the actor's initializer; the id is `instance.id`).
    public func register<Act: DistributedActor>(_ type: Act.Type, as name: String,
                                                factory: @escaping @Sendable (EmbeddedActorSystem) -> Act) throws(GPUBridgeError)
        where Act.ActorSystem == EmbeddedActorSystem {
        guard !name.isEmpty else { throw .invalidArgument(name: "name", value: "\"\"", limit: "a non-empty type name") }
        try directory.withLock { d throws(GPUBridgeError) in
            if d.factories[name] != nil {
                throw .invalidArgument(name: "name", value: "\"\(name)\"", limit: "a name not registered yet")
            }
            if let existing = d.typeNames[ObjectIdentifier(type)] {
                throw .invalidArgument(name: "type", value: "\(type)", limit: "a type not registered yet (it is registered as '\(existing)')")
            }
            d.factories[name] = { system in factory(system) }
            d.typeNames[ObjectIdentifier(type)] = name
        }
    }

    /// The name `type` was registered under.
    public func typeName<Act: DistributedActor>(of type: Act.Type) throws(GPUBridgeError) -> String {
        guard let name = directory.withLock({ $0.typeNames[ObjectIdentifier(type)] }) else {
            throw .notFound(kind: "actor type", name: "\(type) (register it with EmbeddedActorSystem.register first)")
        }
        return name
    }

    /// The actor of `type` with `key`, created on first use (its activation runs on its first call).
    public func actor<Act: DistributedActor>(_ type: Act.Type, key: String) throws -> Act where Act.ActorSystem == EmbeddedActorSystem {
        try Act.resolve(id: GPUActorID(type: try typeName(of: type), key: key), using: self)
    }

    /// The one instance for `id`, made by its type's factory the first time. Throws `notFound` for an unknown type.
    func instance(for id: GPUActorID) throws(GPUBridgeError) -> any DistributedActor {
        try directory.withLock { d throws(GPUBridgeError) -> any DistributedActor in
            if let existing = d.owned[id] { return existing }
            if let existing = d.unowned[id]?.actor { return existing }
            guard let factory = d.factories[id.type] else {
                let known = d.factories.keys.sorted().joined(separator: ", ")
                throw .notFound(kind: "actor", name: "\(id) (no actor type is registered as '\(id.type)'; registered: [\(known)])")
            }
            let made = Self.$creating.withValue(id) { factory(self) }
            d.owned[id] = made
            d.created[id, default: 0] += 1
            return made
        }
    }

    // MARK: DistributedActorSystem

    public func resolve<Act>(id: GPUActorID, as actorType: Act.Type) throws -> Act? where Act: DistributedActor, Act.ID == GPUActorID {
        let found = try instance(for: id)
        guard let typed = found as? Act else {
            throw GPUBridgeError.invalidArgument(name: "actorType for \(id)", value: "\(Act.self)",
                                                 limit: "\(type(of: found)), the type registered as '\(id.type)'")
        }
        return options.serializeLocalCalls ? nil : typed
    }

    public func assignID<Act>(_ actorType: Act.Type) -> GPUActorID where Act: DistributedActor, Act.ID == GPUActorID {
        if let id = Self.creating { return id }
        let n = directory.withLock { d -> Int in
            d.anonymous += 1
            return d.anonymous
        }
        return GPUActorID(type: String(reflecting: actorType), key: "instance-\(n)")
    }

    public func actorReady<Act>(_ actor: Act) where Act: DistributedActor, Act.ID == GPUActorID {
        // The directory records instances it creates itself once the factory returns (it holds the lock now).
        if Self.creating == actor.id { return }
        directory.withLock { $0.unowned[actor.id] = WeakActor(actor: actor) }
    }

    public func resignID(_ id: GPUActorID) {
        directory.withLock { d in
            if d.unowned[id]?.actor == nil { d.unowned[id] = nil }
        }
    }

    public func makeInvocationEncoder() -> EmbeddedInvocationEncoder { EmbeddedInvocationEncoder() }

    public func remoteCall<Act, Err, Res>(on actor: Act, target: RemoteCallTarget, invocation: inout EmbeddedInvocationEncoder,
                                          throwing: Err.Type, returning: Res.Type) async throws -> Res
        where Act: DistributedActor, Act.ID == GPUActorID, Err: Error, Res: Codable {
        let reply = try await deliver(to: actor.id, target: target, invocation: invocation)
        guard case let .value(bytes) = reply else {
            throw GPUBridgeError.backendFailure(backend: "embedded actor system", call: target.identifier, code: -1,
                                                message: "the target returned no value, expected \(Res.self)")
        }
        do {
            return try JSONDecoder().decode(Res.self, from: bytes)
        } catch {
            throw GPUBridgeError.backendFailure(backend: "embedded actor system", call: target.identifier, code: -1,
                                                message: "could not decode the result as \(Res.self): \(error)")
        }
    }

    public func remoteCallVoid<Act, Err>(on actor: Act, target: RemoteCallTarget, invocation: inout EmbeddedInvocationEncoder,
                                         throwing: Err.Type) async throws where Act: DistributedActor, Act.ID == GPUActorID, Err: Error {
        _ = try await deliver(to: actor.id, target: target, invocation: invocation)
    }

    /// The receiving side of a call: decode the invocation and run it on the local instance.
    private func deliver(to id: GPUActorID, target: RemoteCallTarget, invocation: EmbeddedInvocationEncoder) async throws -> EmbeddedResultHandler.Outcome {
        let local = try instance(for: id)
        var decoder = EmbeddedInvocationDecoder(envelope: invocation.envelope)
        let handler = EmbeddedResultHandler()
        try await executeDistributedTarget(on: local, target: target, invocationDecoder: &decoder, handler: handler)
        return try handler.outcome()
    }

    // MARK: Activations and placement

    func recordActivation(_ id: GPUActorID, device: DeviceID?) {
        directory.withLock { d in
            d.activations[id, default: 0] += 1
            d.placements[id] = device
        }
    }

    func recordPlacement(_ id: GPUActorID, device: DeviceID?) {
        directory.withLock { $0.placements[id] = device }
    }

    /// Activations `id` has had so far (the first call activates; each call after an idle deactivation activates again).
    public func activationCount(of id: GPUActorID) -> Int { directory.withLock { $0.activations[id, default: 0] } }
    /// Instances made for `id` (at most one).
    public func instanceCount(of id: GPUActorID) -> Int { directory.withLock { $0.created[id, default: 0] } }
    /// The device each active, placed activation lives on.
    public var placements: [GPUActorID: DeviceID] { directory.withLock { $0.placements } }
    /// The device the activation of `id` lives on; nil while it is not active (or holds no device memory).
    public func placement(of id: GPUActorID) -> DeviceID? { directory.withLock { $0.placements[id] } }

    /// Chooses a device for an activation that needs `footprint` bytes: the first backend of the bridge's order with
    /// a usable device, then the least loaded (requests running plus waiting), then the one with the most memory not
    /// reserved by this process; devices with an open circuit, in `excluding`, or without room are skipped.
    ///
    /// The broker's own `acquire` takes a launch slot, which an activation does not need, so this reads
    /// `broker.states` and applies the same order without taking one.
    public func place(footprint: Int, excluding: Set<DeviceID> = []) throws(GPUBridgeError) -> Device {
        let broker = bridge.broker
        let states = broker.states
        for backend in bridge.options.backendOrder {
            var best: (index: Int, load: Int, memory: Int)?
            for (i, state) in states.enumerated() where state.device.backend == backend && !excluding.contains(state.device) {
                guard state.circuit != .open else { continue }
                let cached = broker.devices[i].pool.statistics.bytesCached
                if footprint > 0, state.unreservedMemory < footprint, cached < footprint { continue }
                let load = state.running + state.waiting
                if let current = best, load > current.load || (load == current.load && state.unreservedMemory <= current.memory) { continue }
                best = (i, load, state.unreservedMemory)
            }
            if let best { return broker.devices[best.index] }
        }
        throw .backendUnavailable(backend: bridge.options.backendOrder.map(\.rawValue).joined(separator: ","),
                                  reason: "no device with a closed circuit and \(footprint) bytes free"
                                      + (excluding.isEmpty ? "" : " outside \(excluding.map(\.description).sorted())"))
    }

    /// Deactivates the activation of `id` now (as the idle timer would): its state is snapshotted to storage and its
    /// device memory released. No-op for an id that is not active or not a `VirtualActor`.
    public func deactivate(_ id: GPUActorID) async throws {
        guard let found = directory.withLock({ $0.owned[id] }), let actor = found as? any VirtualActor else { return }
        try await Self.deactivate(actor)
    }

    private static func deactivate<A: VirtualActor>(_ actor: A) async throws {
        try await actor.whenLocal { local in try await local.deactivateNow() }
    }

    /// Deactivates every active virtual actor (snapshots saved, device memory released). Returns the errors of those
    /// that could not be deactivated (they stay active).
    @discardableResult
    public func shutdown() async -> [GPUActorID: any Error] {
        let all = directory.withLock { Array($0.owned) }
        var failures: [GPUActorID: any Error] = [:]
        for (id, instance) in all {
            guard let actor = instance as? any VirtualActor else { continue }
            do { try await Self.deactivate(actor) } catch { failures[id] = error }
        }
        return failures
    }
}

// MARK: Invocation encoding

/// An encoded invocation: generic substitutions (mangled type names) and each argument as JSON.
public struct InvocationEnvelope: Sendable, Codable {
    public var genericSubstitutions: [String] = []
    public var arguments: [Data] = []
}

public struct EmbeddedInvocationEncoder: DistributedTargetInvocationEncoder, Sendable {
    public typealias SerializationRequirement = Codable
    public private(set) var envelope = InvocationEnvelope()

    public mutating func recordGenericSubstitution<T>(_ type: T.Type) throws {
        guard let name = _mangledTypeName(type) else {
            throw GPUBridgeError.unsupported(feature: "generic substitution \(type) (no mangled name)", backend: "embedded actor system")
        }
        envelope.genericSubstitutions.append(name)
    }

    public mutating func recordArgument<Value: SerializationRequirement>(_ argument: RemoteCallArgument<Value>) throws {
        envelope.arguments.append(try JSONEncoder().encode(argument.value))
    }

    public mutating func recordErrorType<E: Error>(_ type: E.Type) throws {}
    public mutating func recordReturnType<R: SerializationRequirement>(_ type: R.Type) throws {}
    public mutating func doneRecording() throws {}
}

public struct EmbeddedInvocationDecoder: DistributedTargetInvocationDecoder {
    public typealias SerializationRequirement = Codable
    let envelope: InvocationEnvelope
    private var next = 0

    init(envelope: InvocationEnvelope) { self.envelope = envelope }

    public mutating func decodeGenericSubstitutions() throws -> [Any.Type] {
        try envelope.genericSubstitutions.map { name in
            guard let type = _typeByName(name) else { throw GPUBridgeError.notFound(kind: "type", name: name) }
            return type
        }
    }

    public mutating func decodeNextArgument<Argument: SerializationRequirement>() throws -> Argument {
        guard next < envelope.arguments.count else {
            throw GPUBridgeError.outOfBounds(name: "invocation arguments", offset: next, length: 1, limit: envelope.arguments.count)
        }
        defer { next += 1 }
        return try JSONDecoder().decode(Argument.self, from: envelope.arguments[next])
    }

    public mutating func decodeErrorType() throws -> Any.Type? { nil }
    public mutating func decodeReturnType() throws -> Any.Type? { nil }
}

/// Collects what the executed target returned or threw.
public final class EmbeddedResultHandler: DistributedTargetInvocationResultHandler, Sendable {
    public typealias SerializationRequirement = Codable

    enum Outcome: Sendable {
        case value(Data), void
    }

    private let result = Mutex<Result<Outcome, any Error>?>(nil)

    public func onReturn<Success: SerializationRequirement>(value: Success) async throws {
        let bytes = try JSONEncoder().encode(value)
        result.withLock { $0 = .success(.value(bytes)) }
    }

    public func onReturnVoid() async throws { result.withLock { $0 = .success(.void) } }

    // In-process the callee's error is handed back as it is; a transport between nodes encodes it instead.
    public func onThrow<Err: Error>(error: Err) async throws { result.withLock { $0 = .failure(error) } }

    func outcome() throws -> Outcome {
        guard let result = result.withLock({ $0 }) else {
            throw GPUBridgeError.backendFailure(backend: "embedded actor system", call: "executeDistributedTarget", code: -1,
                                                message: "the target neither returned nor threw")
        }
        return try result.get()
    }
}
