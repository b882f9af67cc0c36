import Distributed
import Foundation
import GPUBridge
import Logging
import Synchronization
import Tracing

/// Options of an `EmbeddedActorSystem`; `validate()` rejects nonsense.
public struct ActorSystemOptions: Sendable {
    /// How long a virtual actor stays active with no call before it is deactivated (snapshot, then its device memory
    /// is released). The next call activates it again.
    public var idleTimeout: Duration = .seconds(300)
    /// When true, `resolve` hands out proxies and every call goes through `remoteCall`: arguments and results are
    /// encoded (JSON) and the call is executed on the local instance with `executeDistributedTarget`, as a receiving
    /// node would. Slower; it proves an actor's calls survive serialization before it runs in a cluster.
    public var serializeLocalCalls = false
    /// When durable actors write snapshots and how much they remember (see `DurableActor`).
    public var durability = DurabilityOptions()

    public init() {}

    public func validate() throws(GPUBridgeError) {
        guard idleTimeout > .zero, idleTimeout <= .seconds(86_400 * 365) else {
            throw .invalidArgument(
                name: "idleTimeout", value: "\(idleTimeout)", limit: "more than zero, at most a year")
        }
        try durability.validate()
    }
}

/// When a `DurableActor` compacts its journal into a snapshot, and how much it remembers for retries.
///
/// A checkpoint is taken in the background after a journal append once the entries since the last snapshot reach
/// `checkpointEntries` or `checkpointBytes`, or the oldest of them is `checkpointAge` old; deactivation takes a final
/// one. Reads go on while it runs; mutations wait for it.
/// A value held by `ActorSystemOptions`, fixed once the system is made; any thread.
public struct DurabilityOptions: Sendable, Hashable {
    /// When false, mutations are applied without being journaled: the state is saved only by snapshots
    /// (checkpoints and deactivation), so a crash loses what was applied since the last one. For caches whose state
    /// can be rebuilt, and to measure what journaling costs (`gpubridge bench durability`).
    public var journal = true
    /// Journal entries since the last snapshot that trigger a checkpoint.
    public var checkpointEntries = 10_000
    /// Journal bytes since the last snapshot that trigger a checkpoint.
    public var checkpointBytes = 256 << 20
    /// Age of the oldest entry since the last snapshot that triggers a checkpoint (checked at each append).
    public var checkpointAge: Duration = .seconds(600)
    /// Bytes per stored snapshot chunk.
    public var snapshotChunkBytes = 8 << 20
    /// Call ids each actor remembers (the most recent ones), so a retry of one of those calls is not applied twice.
    public var rememberedCalls = 10_000

    public init() {}

    public func validate() throws(GPUBridgeError) {
        guard checkpointEntries >= 1 else {
            throw .invalidArgument(
                name: "durability.checkpointEntries", value: "\(checkpointEntries)", limit: "at least 1")
        }
        guard checkpointBytes >= 1 else {
            throw .invalidArgument(name: "durability.checkpointBytes", value: "\(checkpointBytes)", limit: "at least 1")
        }
        guard checkpointAge > .zero else {
            throw .invalidArgument(name: "durability.checkpointAge", value: "\(checkpointAge)", limit: "more than zero")
        }
        guard snapshotChunkBytes >= 4096, snapshotChunkBytes <= SQLiteActorStorage.maxChunkBytes else {
            throw .invalidArgument(
                name: "durability.snapshotChunkBytes", value: "\(snapshotChunkBytes)",
                limit: "4096...\(SQLiteActorStorage.maxChunkBytes)")
        }
        guard rememberedCalls >= 0, rememberedCalls <= 10_000_000 else {
            throw .invalidArgument(
                name: "durability.rememberedCalls", value: "\(rememberedCalls)", limit: "0...10000000")
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
        /// The lifecycle of every instance that has activated at least once.
        var lifecycles: [GPUActorID: ActivationLifecycle] = [:]
        var active: Set<GPUActorID> = []
        var failedActivations: Set<GPUActorID> = []
        var anonymous = 0
    }

    private let directory = Mutex(Directory())
    private let forwarder = Mutex<(any ActorCallForwarder)?>(nil)

    public init(bridge: Bridge, storage: any ActorStorage, options: ActorSystemOptions = ActorSystemOptions())
        throws(GPUBridgeError)
    {
        try options.validate()
        self.bridge = bridge
        self.storage = storage
        self.options = options
    }

    // MARK: Registration and addressing

    /// Registers `type` under `name`; `factory` makes an instance for an id of that name (it runs once per id, under
    /// the directory's lock, so it must only call the actor's initializer; the id is `instance.id`).
    public func register<Act: DistributedActor>(
        _ type: Act.Type, as name: String,
        factory: @escaping @Sendable (EmbeddedActorSystem) -> Act
    ) throws(GPUBridgeError)
    where Act.ActorSystem == EmbeddedActorSystem {
        guard !name.isEmpty else { throw .invalidArgument(name: "name", value: "\"\"", limit: "a non-empty type name") }
        try directory.withLock { d throws(GPUBridgeError) in
            if d.factories[name] != nil {
                throw .invalidArgument(name: "name", value: "\"\(name)\"", limit: "a name not registered yet")
            }
            if let existing = d.typeNames[ObjectIdentifier(type)] {
                throw .invalidArgument(
                    name: "type", value: "\(type)",
                    limit: "a type not registered yet (it is registered as '\(existing)')")
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
    public func actor<Act: DistributedActor>(_ type: Act.Type, key: String) throws -> Act
    where Act.ActorSystem == EmbeddedActorSystem {
        try Act.resolve(id: GPUActorID(type: try typeName(of: type), key: key), using: self)
    }

    /// The one instance for `id`, made by its type's factory the first time. Throws `notFound` for an unknown type.
    func instance(for id: GPUActorID) throws(GPUBridgeError) -> any DistributedActor {
        try directory.withLock { d throws(GPUBridgeError) -> any DistributedActor in
            if let existing = d.owned[id] { return existing }
            if let existing = d.unowned[id]?.actor { return existing }
            guard let factory = d.factories[id.type] else {
                let known = d.factories.keys.sorted().joined(separator: ", ")
                throw .notFound(
                    kind: "actor", name: "\(id) (no actor type is registered as '\(id.type)'; registered: [\(known)])")
            }
            let made = Self.$creating.withValue(id) { factory(self) }
            d.owned[id] = made
            d.created[id, default: 0] += 1
            return made
        }
    }

    // MARK: DistributedActorSystem

    public func resolve<Act>(id: GPUActorID, as actorType: Act.Type) throws -> Act?
    where Act: DistributedActor, Act.ID == GPUActorID {
        if forwarder.withLock({ $0 != nil }) {
            // In a cluster the activation may live on another node: always a proxy; the forwarder routes each call.
            let registered = directory.withLock { d -> (factory: Bool, type: Bool) in
                (d.factories[id.type] != nil, d.typeNames[ObjectIdentifier(actorType)] == id.type)
            }
            guard registered.factory else {
                throw GPUBridgeError.notFound(
                    kind: "actor", name: "\(id) (no actor type is registered as '\(id.type)')")
            }
            guard registered.type else {
                throw GPUBridgeError.invalidArgument(
                    name: "actorType for \(id)", value: "\(Act.self)",
                    limit: "the type registered as '\(id.type)'")
            }
            return nil
        }
        let found = try instance(for: id)
        guard let typed = found as? Act else {
            throw GPUBridgeError.invalidArgument(
                name: "actorType for \(id)", value: "\(Act.self)",
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

    public func remoteCall<Act, Err, Res>(
        on actor: Act, target: RemoteCallTarget, invocation: inout EmbeddedInvocationEncoder,
        throwing: Err.Type, returning: Res.Type
    ) async throws -> Res
    where Act: DistributedActor, Act.ID == GPUActorID, Err: Error, Res: Codable {
        let reply = try await send(ActorCall(target: target.identifier, envelope: invocation.envelope), to: actor.id)
        switch reply {
        case let .value(bytes):
            do {
                return try bytes.withUnsafeBytes { try WireCodec.decode(Res.self, from: $0) }
            } catch {
                throw GPUBridgeError.backendFailure(
                    backend: "actor system", call: target.identifier, code: -1,
                    message: "could not decode the result as \(Res.self): \(error)")
            }
        case .void:
            throw GPUBridgeError.backendFailure(
                backend: "actor system", call: target.identifier, code: -1,
                message: "the target returned no value, expected \(Res.self)")
        case let .error(envelope):
            throw envelope.error()
        }
    }

    public func remoteCallVoid<Act, Err>(
        on actor: Act, target: RemoteCallTarget, invocation: inout EmbeddedInvocationEncoder,
        throwing: Err.Type
    ) async throws where Act: DistributedActor, Act.ID == GPUActorID, Err: Error {
        let reply = try await send(ActorCall(target: target.identifier, envelope: invocation.envelope), to: actor.id)
        if case let .error(envelope) = reply { throw envelope.error() }
    }

    /// Sends `call` to wherever `id` runs: the forwarder's node when one is attached, else this process.
    private func send(_ call: ActorCall, to id: GPUActorID) async throws -> ActorReply {
        if let forwarder = forwarder.withLock({ $0 }) {
            return try await forwarder.forward(call, to: id)
        }
        return await execute(call, on: id)
    }

    /// The receiving side of a call: decodes `call` and runs it on this process's instance of `id` (made by its type's
    /// factory on first use). Never throws: the target's error, or why it could not run, is the reply.
    public func execute(_ call: ActorCall, on id: GPUActorID) async -> ActorReply {
        await withSpan(SpanNames.actorCall, ofKind: .internal) { span in
            if span.isRecording {
                span.updateAttributes { a in
                    a["gpubridge.actor.type"] = id.type
                    a["gpubridge.actor.key"] = id.key
                    a["gpubridge.actor.method"] = CallTargetName.readable(call.target)
                    a["gpubridge.actor.argument_bytes"] = call.arguments.count
                }
            }
            let reply = await run(call, on: id)
            if case let .error(envelope) = reply {
                span.setStatus(SpanStatus(code: .error, message: envelope.description))
            }
            return reply
        }
    }

    private func run(_ call: ActorCall, on id: GPUActorID) async -> ActorReply {
        do {
            let local = try instance(for: id)
            var decoder = EmbeddedInvocationDecoder(call: call)
            let handler = EmbeddedResultHandler()
            // The call's id is the served actor's to journal; the caller's key must not leak into calls it makes.
            try await ActorCallContext.$current.withValue(call.callID.map { (id, $0) }) {
                try await ActorCallContext.$idempotencyKey.withValue(nil) {
                    try await executeDistributedTarget(
                        on: local, target: RemoteCallTarget(call.target),
                        invocationDecoder: &decoder, handler: handler)
                }
            }
            return handler.reply()
        } catch {
            return .error(RemoteErrorEnvelope(error))
        }
    }

    // MARK: Forwarding

    /// Attaches the component that routes calls to other nodes (`GPUBridgeCluster`). From then on `resolve` hands out
    /// proxies for every registered type and each call goes through `forwarder.forward`, which runs it on the node that
    /// holds the activation (possibly this one, through `execute`).
    public func attach(forwarder: any ActorCallForwarder) {
        self.forwarder.withLock { $0 = forwarder }
    }

    /// Instances this process holds now, by id (activations of this node in a cluster).
    public var localInstanceIDs: [GPUActorID] { directory.withLock { Array($0.owned.keys) } }

    // MARK: Activations and placement

    func recordActivation(_ id: GPUActorID, device: DeviceID?, lifecycle: ActivationLifecycle) {
        directory.withLock { d in
            d.activations[id, default: 0] += 1
            d.lifecycles[id] = lifecycle
            d.placements[id] = device
            d.active.insert(id)
            d.failedActivations.remove(id)
        }
    }

    func recordActivationFailure(_ id: GPUActorID) {
        _ = directory.withLock { $0.failedActivations.insert(id) }
    }

    /// Whether the last activation of `id` failed and it is not active now (a node then gives up its registration).
    public func lastActivationFailed(_ id: GPUActorID) -> Bool {
        directory.withLock { $0.failedActivations.contains(id) && !$0.active.contains(id) }
    }

    func recordDeactivation(_ id: GPUActorID) {
        directory.withLock { d in
            d.placements[id] = nil
            d.active.remove(id)
        }
    }

    /// Every virtual actor of this process that has activated at least once, active or not, by id: its phase, device,
    /// activations and calls. Reads one lock per actor; any thread.
    public var activationStatus: [ActivationStatus] {
        let (lifecycles, placements) = directory.withLock { ($0.lifecycles, $0.placements) }
        return lifecycles.map { id, lifecycle in
            let figures = lifecycle.callFigures
            return ActivationStatus(
                id: id, phase: lifecycle.phase, device: placements[id], activations: lifecycle.activations,
                calls: figures.calls, inFlight: figures.inFlight, lastCall: figures.lastCall,
                failedCalls: figures.failed, callNanoseconds: figures.nanoseconds,
                journal: lifecycle.journalStatistics)
        }.sorted { ($0.id.type, $0.id.key) < ($1.id.type, $1.id.key) }
    }

    /// Virtual actors active now (activated and not deactivated since); idle shells are not counted.
    public var activeCount: Int { directory.withLock { $0.active.count } }

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
            for (i, state) in states.enumerated()
            where state.device.backend == backend && !excluding.contains(state.device) {
                guard state.circuit != .open else { continue }
                let cached = broker.devices[i].pool.statistics.bytesCached
                if footprint > 0, state.unreservedMemory < footprint, cached < footprint { continue }
                let load = state.running + state.waiting
                if let current = best,
                    load > current.load || (load == current.load && state.unreservedMemory <= current.memory)
                {
                    continue
                }
                best = (i, load, state.unreservedMemory)
            }
            if let best { return broker.devices[best.index] }
        }
        throw .backendUnavailable(
            backend: bridge.options.backendOrder.map(\.rawValue).joined(separator: ","),
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

/// Routes a call to the node that holds (or will hold) the activation of an actor; `GPUBridgeCluster` implements it.
public protocol ActorCallForwarder: Sendable {
    /// Runs `call` on the activation of `id` wherever it lives and returns its reply. Throws when the call could not
    /// be delivered (the node is unreachable, the deadline passed); the target's own errors come back in the reply.
    func forward(_ call: ActorCall, to id: GPUActorID) async throws -> ActorReply
}

/// One encoded invocation of a distributed method: the target's identifier, the generic substitutions (mangled type
/// names) and the arguments, each a length-prefixed `WireCodec` value in `arguments`.
public struct ActorCall: Sendable {
    public var target: String
    public var genericSubstitutions: [String]
    public var argumentCount: Int
    public var arguments: [UInt8]
    /// Identifies the logical call across retries (see `ActorCallContext`); nil when the caller gave none.
    public var callID: String?

    public init(
        target: String, genericSubstitutions: [String], argumentCount: Int, arguments: [UInt8],
        callID: String? = nil
    ) {
        self.target = target
        self.genericSubstitutions = genericSubstitutions
        self.argumentCount = argumentCount
        self.arguments = arguments
        self.callID = callID
    }

    /// A call made now: it carries the caller's idempotency key, or a new id.
    init(target: String, envelope: InvocationEnvelope) {
        self.init(
            target: target, genericSubstitutions: envelope.genericSubstitutions, argumentCount: envelope.argumentCount,
            arguments: envelope.arguments.bytes, callID: ActorCallContext.idempotencyKey ?? UUID().uuidString)
    }
}

/// What an invocation produced: a value (a `WireCodec` value), nothing, or an error.
public enum ActorReply: Sendable {
    case value([UInt8])
    case void
    case error(RemoteErrorEnvelope)
}

/// An error thrown by a remote target, as it crosses the wire: its type's mangled name, and its JSON when the type is
/// `Codable`. `error()` gives back the typed error when this process knows the type, else a `RemoteActorError`.
public struct RemoteErrorEnvelope: Sendable, Hashable {
    /// The mangled name of the error's type (empty when it has none).
    public var mangledType: String
    /// The error's type as Swift prints it.
    public var typeName: String
    /// `String(describing:)` of the error.
    public var description: String
    /// The error encoded as JSON, when its type is `Encodable`.
    public var json: [UInt8]?

    public init(mangledType: String, typeName: String, description: String, json: [UInt8]?) {
        self.mangledType = mangledType
        self.typeName = typeName
        self.description = description
        self.json = json
    }

    public init(_ error: any Error) {
        let type = Swift.type(of: error)
        mangledType = _mangledTypeName(type) ?? ""
        typeName = String(reflecting: type)
        description = String(describing: error)
        if let encodable = error as? any Encodable, let data = try? JSONEncoder().encode(encodable) {
            json = [UInt8](data)
        } else {
            json = nil
        }
    }

    /// The typed error when its type is `Decodable` and known here; otherwise a `RemoteActorError` carrying its
    /// type name and description.
    public func error() -> any Error {
        if let json, let type = _typeByName(mangledType) as? any (Error & Decodable).Type {
            func decode<E: Error & Decodable>(_ t: E.Type) -> (any Error)? {
                try? JSONDecoder().decode(t, from: Data(json))
            }
            if let typed = decode(type) { return typed }
        }
        return RemoteActorError(type: typeName, description: description)
    }
}

/// A remote target threw an error whose type is not `Codable` (or not known to this process).
public struct RemoteActorError: Error, Sendable, Hashable, Codable, CustomStringConvertible {
    /// The remote error's type, as Swift prints it.
    public var type: String
    /// The remote error's description.
    public var description: String

    public init(type: String, description: String) {
        self.type = type
        self.description = description
    }
}

/// An invocation as it is being recorded: generic substitutions and the encoded arguments.
public struct InvocationEnvelope: Sendable {
    public var genericSubstitutions: [String] = []
    public var argumentCount = 0
    public var arguments = WireWriter()
}

public struct EmbeddedInvocationEncoder: DistributedTargetInvocationEncoder, Sendable {
    public typealias SerializationRequirement = Codable
    public private(set) var envelope = InvocationEnvelope()

    public mutating func recordGenericSubstitution<T>(_ type: T.Type) throws {
        guard let name = _mangledTypeName(type) else {
            throw GPUBridgeError.unsupported(
                feature: "generic substitution \(type) (no mangled name)", backend: "actor system")
        }
        envelope.genericSubstitutions.append(name)
    }

    public mutating func recordArgument<Value: SerializationRequirement>(_ argument: RemoteCallArgument<Value>) throws {
        try envelope.arguments.lengthPrefixed { w in try WireCodec.encode(argument.value, into: &w) }
        envelope.argumentCount += 1
    }

    public mutating func recordErrorType<E: Error>(_ type: E.Type) throws {}
    public mutating func recordReturnType<R: SerializationRequirement>(_ type: R.Type) throws {}
    public mutating func doneRecording() throws {}
}

public struct EmbeddedInvocationDecoder: DistributedTargetInvocationDecoder {
    public typealias SerializationRequirement = Codable
    let call: ActorCall
    private var next = 0
    private var offset = 0

    init(call: ActorCall) { self.call = call }

    public mutating func decodeGenericSubstitutions() throws -> [Any.Type] {
        try call.genericSubstitutions.map { name in
            guard let type = _typeByName(name) else { throw GPUBridgeError.notFound(kind: "type", name: name) }
            return type
        }
    }

    public mutating func decodeNextArgument<Argument: SerializationRequirement>() throws -> Argument {
        guard next < call.argumentCount else {
            throw GPUBridgeError.outOfBounds(
                name: "invocation arguments", offset: next, length: 1, limit: call.argumentCount)
        }
        let start = offset
        let (value, end) = try call.arguments.withUnsafeBytes { raw throws -> (Argument, Int) in
            var reader = WireReader(raw, offset: start)
            let region = try reader.region()
            return (try WireCodec.decode(Argument.self, from: region), reader.offset)
        }
        offset = end
        next += 1
        return value
    }

    public mutating func decodeErrorType() throws -> Any.Type? { nil }
    public mutating func decodeReturnType() throws -> Any.Type? { nil }
}

/// Collects what the executed target returned or threw.
public final class EmbeddedResultHandler: DistributedTargetInvocationResultHandler, Sendable {
    public typealias SerializationRequirement = Codable

    private let result = Mutex<ActorReply?>(nil)

    public func onReturn<Success: SerializationRequirement>(value: Success) async throws {
        var writer = WireWriter()
        try WireCodec.encode(value, into: &writer)
        let bytes = writer.bytes
        result.withLock { $0 = .value(bytes) }
    }

    public func onReturnVoid() async throws { result.withLock { $0 = .void } }

    public func onThrow<Err: Error>(error: Err) async throws {
        result.withLock { $0 = .error(RemoteErrorEnvelope(error)) }
    }

    func reply() -> ActorReply {
        result.withLock { $0 }
            ?? .error(
                RemoteErrorEnvelope(
                    GPUBridgeError.backendFailure(
                        backend: "actor system", call: "executeDistributedTarget", code: -1,
                        message: "the target neither returned nor threw")))
    }
}
