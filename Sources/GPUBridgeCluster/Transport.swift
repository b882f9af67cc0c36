import Foundation
import GPUBridge
import GPUBridgeActors
import Synchronization

/// Why a cluster call or a node operation failed, as the caller sees it.
public enum ClusterError: Error, Sendable, Hashable, Codable, CustomStringConvertible {
    /// The node holding the activation could not be reached (connection refused or reset, TLS refused, the node died).
    /// The call may or may not have run there.
    case nodeUnreachable(node: String, actor: String, reason: String)
    /// The call did not complete within its deadline. It may still run on the remote node.
    case deadlineExceeded(actor: String, node: String, timeout: String)
    /// The node refused the call because it does not hold that activation (stale directory entry); retried once by
    /// the caller after a fresh lookup, so callers see it only when the directory keeps pointing elsewhere.
    case notHere(actor: String, node: String, reason: String)
    /// No node is active to place an activation on.
    case noActiveNodes(actor: String, reason: String)
    /// This node is not running (not started, shutting down, stopped or declared dead).
    case nodeNotRunning(node: String, state: String)
    /// A frame on the wire could not be read.
    case malformedMessage(what: String, detail: String)
    /// A frame's header claims more bytes than this side accepts (`WireLimits.maxCallBytes`); refused before anything
    /// of that size is allocated.
    case messageTooLarge(what: String, claimedBytes: UInt64, limitBytes: Int)
    /// The node serving a call lost its membership lease before the call finished (it could not renew it in time, so
    /// the cluster may already run the actor elsewhere). The call may or may not have run.
    case leaseExpired(node: String, actor: String)
    /// A membership or directory call got no answer within `ClusterOptions.databaseTimeout`.
    case databaseTimeout(call: String, timeout: String)

    public var description: String {
        switch self {
        case let .nodeUnreachable(node, actor, reason):
            return "call to \(actor) failed: node \(node) is unreachable (\(reason)); the call may or may not have run"
        case let .deadlineExceeded(actor, node, timeout):
            return "call to \(actor) on node \(node) exceeded its deadline of \(timeout)"
        case let .notHere(actor, node, reason):
            return "node \(node) does not hold \(actor): \(reason)"
        case let .noActiveNodes(actor, reason):
            return "no node can host \(actor): \(reason)"
        case let .nodeNotRunning(node, state):
            return "node \(node) is not running (\(state))"
        case let .malformedMessage(what, detail):
            return "malformed \(what): \(detail)"
        case let .messageTooLarge(what, claimed, limit):
            return "\(what) refused: its header claims \(claimed) bytes, more than the limit of \(limit) bytes "
                + "(WireLimits.maxCallBytes)"
        case let .leaseExpired(node, actor):
            return "node \(node) lost its membership lease while running a call to \(actor); the call may or may not "
                + "have run"
        case let .databaseTimeout(call, timeout):
            return "\(call) got no answer from the membership database within \(timeout) (databaseTimeout)"
        }
    }
}

/// One call as it crosses the wire: the activation it is for, who sends it, its remaining time and the invocation.
public struct ClusterRequest: Sendable {
    public var address: ActorAddress
    /// The sending node (or client), for logs.
    public var caller: String
    /// Nanoseconds the caller still waits when it sends the call. The receiver does not cut a call that runs longer
    /// (an actor's work is not cancelled half-way); the caller stops waiting and reports `deadlineExceeded`.
    public var timeoutNanoseconds: Int64
    public var call: ActorCall

    public init(address: ActorAddress, caller: String, timeoutNanoseconds: Int64, call: ActorCall) {
        self.address = address
        self.caller = caller
        self.timeoutNanoseconds = timeoutNanoseconds
        self.call = call
    }

    /// Everything but the arguments (which travel as they are, after it). Throws when a field does not fit its wire
    /// width (a string over 4 GiB, a port or count over `UInt32.max`).
    func header() throws -> [UInt8] {
        var w = WireWriter(capacity: 256)
        w.u32(Self.magic)
        try w.string(address.id.type)
        try w.string(address.id.key)
        try w.string(address.node.host)
        w.u32(try WireWriter.checkedU32(address.node.port, name: "node port"))
        w.i64(address.node.generation)
        w.i64(address.activation)
        try w.string(caller)
        w.i64(timeoutNanoseconds)
        try w.string(call.target)
        w.u32(try WireWriter.checkedU32(call.genericSubstitutions.count, name: "generic substitutions"))
        for s in call.genericSubstitutions { try w.string(s) }
        w.u32(try WireWriter.checkedU32(call.argumentCount, name: "argument count"))
        try w.string(call.callID ?? "")
        w.u64(UInt64(call.arguments.count))
        return w.bytes
    }

    static let magic: UInt32 = 0x4742_4332  // "GBC2" (GBC1 had no call id)

    /// Parses a header; returns the request without arguments and the length of the arguments that follow. A header
    /// claiming more than `maxArgumentBytes` is refused with `ClusterError.messageTooLarge` before anything is
    /// allocated for the arguments.
    static func parseHeader(
        _ reader: inout WireReader,
        maxArgumentBytes: Int
    ) throws -> (ClusterRequest, argumentBytes: Int) {
        guard try reader.u32() == magic else { throw ClusterError.malformedMessage(what: "call", detail: "bad magic") }
        let type = try reader.string(), key = try reader.string(), host = try reader.string()
        let port = Int(try reader.u32()), generation = try reader.i64(), activation = try reader.i64()
        let caller = try reader.string(), timeout = try reader.i64(), target = try reader.string()
        guard !target.isEmpty else { throw ClusterError.malformedMessage(what: "call", detail: "empty target") }
        let substitutionCount = Int(try reader.u32())
        guard substitutionCount <= 64 else {
            throw ClusterError.malformedMessage(
                what: "call", detail: "\(substitutionCount) generic substitutions (at most 64)")
        }
        var substitutions: [String] = []
        for _ in 0..<substitutionCount { substitutions.append(try reader.string()) }
        let argumentCount = Int(try reader.u32())
        let callID = try reader.string()
        guard callID.utf8.count <= 256 else {
            throw ClusterError.malformedMessage(
                what: "call", detail: "a call id of \(callID.utf8.count) bytes (at most 256)")
        }
        let claimed = try reader.u64()
        guard maxArgumentBytes >= 0, claimed <= UInt64(maxArgumentBytes) else {
            throw ClusterError.messageTooLarge(
                what: "call to \(type)/\(key)", claimedBytes: claimed,
                limitBytes: maxArgumentBytes)
        }
        let request = ClusterRequest(
            address: ActorAddress(
                id: GPUActorID(type: type, key: key), node: NodeID(host: host, port: port, generation: generation),
                activation: activation),
            caller: caller, timeoutNanoseconds: timeout,
            call: ActorCall(
                target: target, genericSubstitutions: substitutions, argumentCount: argumentCount, arguments: [],
                callID: callID.isEmpty ? nil : callID))
        return (request, Int(claimed))  // at most maxArgumentBytes, an Int
    }

    /// Parses a whole request (header and arguments) from one message.
    static func parse(_ bytes: UnsafeRawBufferPointer, maxArgumentBytes: Int) throws -> ClusterRequest {
        var reader = WireReader(bytes)
        var (request, argumentBytes) = try parseHeader(&reader, maxArgumentBytes: maxArgumentBytes)
        guard reader.remaining == argumentBytes else {
            throw ClusterError.malformedMessage(
                what: "call", detail: "\(reader.remaining) argument bytes, header says \(argumentBytes)")
        }
        request.call.arguments = [UInt8](UnsafeRawBufferPointer(rebasing: bytes[reader.offset...]))
        return request
    }
}

/// What a node answers to a call.
public enum ClusterReply: Sendable {
    /// The call ran on the activation; its outcome (value, void or the target's error).
    case reply(ActorReply)
    /// The node does not hold the addressed activation; the caller looks the actor up again.
    case notHere(reason: String)
}

extension ClusterReply {
    enum Kind: UInt8 { case value = 0, void = 1, error = 2, notHere = 3 }

    /// The reply's frame: a kind byte, then its body (the value's bytes, an error envelope or a reason).
    func header() throws -> (header: [UInt8], body: [UInt8]) {
        var w = WireWriter(capacity: 64)
        switch self {
        case let .reply(.value(bytes)):
            w.u8(Kind.value.rawValue)
            w.u64(UInt64(bytes.count))
            return (w.bytes, bytes)
        case .reply(.void):
            w.u8(Kind.void.rawValue)
            w.u64(0)
        case let .reply(.error(e)):
            w.u8(Kind.error.rawValue)
            var body = WireWriter()
            try body.string(e.mangledType)
            try body.string(e.typeName)
            try body.string(e.description)
            body.u8(e.json == nil ? 0 : 1)
            try body.blob(e.json ?? [])
            w.u64(UInt64(body.bytes.count))
            return (w.bytes, body.bytes)
        case let .notHere(reason):
            w.u8(Kind.notHere.rawValue)
            let body = Array(reason.utf8)
            w.u64(UInt64(body.count))
            return (w.bytes, body)
        }
        return (w.bytes, [])
    }

    static let headerSize = 9

    /// Parses a reply's header; a header claiming more than `maxBodyBytes` is refused with
    /// `ClusterError.messageTooLarge` before anything is allocated for the body.
    static func parseHeader(_ bytes: UnsafeRawBufferPointer, maxBodyBytes: Int) throws -> (Kind, bodyBytes: Int) {
        var r = WireReader(bytes)
        let kindByte = try r.u8()
        guard let kind = Kind(rawValue: kindByte) else {
            throw ClusterError.malformedMessage(what: "reply", detail: "unknown kind \(kindByte)")
        }
        let claimed = try r.u64()
        guard maxBodyBytes >= 0, claimed <= UInt64(maxBodyBytes) else {
            throw ClusterError.messageTooLarge(what: "reply", claimedBytes: claimed, limitBytes: maxBodyBytes)
        }
        return (kind, Int(claimed))  // at most maxBodyBytes, an Int
    }

    static func make(kind: Kind, body: [UInt8]) throws -> ClusterReply {
        switch kind {
        case .value: return .reply(.value(body))
        case .void: return .reply(.void)
        case .notHere: return .notHere(reason: String(decoding: body, as: UTF8.self))
        case .error:
            return try body.withUnsafeBytes { raw in
                var r = WireReader(raw)
                let mangled = try r.string(), name = try r.string(), description = try r.string()
                let hasJSON = try r.u8() == 1
                let json = try r.blob()
                guard r.remaining == 0 else {
                    throw ClusterError.malformedMessage(
                        what: "reply",
                        detail: "\(r.remaining) bytes after the error envelope")
                }
                return .reply(
                    .error(
                        RemoteErrorEnvelope(
                            mangledType: mangled, typeName: name, description: description,
                            json: hasJSON ? json : nil)))
            }
        }
    }

    /// Parses a whole reply from one message.
    static func parse(_ bytes: UnsafeRawBufferPointer, maxBodyBytes: Int) throws -> ClusterReply {
        let (kind, length) = try parseHeader(bytes, maxBodyBytes: maxBodyBytes)
        guard bytes.count - headerSize == length else {
            throw ClusterError.malformedMessage(
                what: "reply", detail: "\(bytes.count - headerSize) body bytes, header says \(length)")
        }
        return try make(kind: kind, body: [UInt8](UnsafeRawBufferPointer(rebasing: bytes[headerSize...])))
    }
}

/// The receiving side of a node: what a transport hands incoming calls and probes to.
public protocol NodeCallHandler: Sendable {
    /// Runs a call (never throws: failures are replies).
    func handle(_ request: ClusterRequest) async -> ClusterReply
    /// Answers a probe with this node's id (a restarted process answers with a new generation).
    func ping(from prober: String) -> NodeID?
}

/// How nodes reach each other. `GRPCNodeTransport` is the real one; `InProcessNodeTransport` connects the nodes of one
/// process (tests).
public protocol NodeTransport: Sendable {
    /// Delivers `request` to `node` and waits at most `timeout` for the reply. Throws `ClusterError.nodeUnreachable`
    /// when the node cannot be reached and `deadlineExceeded` when the timeout passes.
    func call(_ request: ClusterRequest, on node: NodeID, timeout: Duration) async throws -> ClusterReply
    /// Probes `node`; returns the id the process at that address answers with. Throws when it cannot be reached.
    func ping(_ node: NodeID, from prober: String, timeout: Duration) async throws -> NodeID
    /// Starts serving `handler` at `node`'s address (a client that hosts no actors never calls it); returns when the
    /// listener is bound. Returns the port actually bound (for port 0).
    func serve(_ handler: any NodeCallHandler, at node: NodeID) async throws -> Int
    /// Stops serving and closes connections to peers.
    func shutdown() async
    /// Forgets cached connections to `node` (it died).
    func forget(_ node: NodeID)
    /// True when `call` itself enforces its timeout (gRPC deadlines); otherwise the caller races it with a timer.
    var enforcesDeadlines: Bool { get }
}

/// Nodes of one process, connected by direct calls through the same frames as the wire (requests and replies are
/// encoded and decoded), so the in-process cluster tests exercise the codec. `disconnect` makes a node unreachable.
public final class InProcessNodeTransport: NodeTransport {
    /// The shared registry of one in-process cluster.
    public final class Network: Sendable {
        fileprivate struct State {
            var handlers: [String: any NodeCallHandler] = [:]
            var disconnected: Set<String> = []
            /// Links cut one way: "from-host:port>to-host:port".
            var cut: Set<String> = []
        }

        fileprivate let state = Mutex(State())

        public init() {}

        /// Makes the node at `host:port` unreachable (as if its process were killed) or reachable again.
        public func setReachable(host: String, port: Int, _ reachable: Bool) {
            state.withLock { s in
                if reachable {
                    s.disconnected.remove("\(host):\(port)")
                } else {
                    s.disconnected.insert("\(host):\(port)")
                }
            }
        }

        /// Cuts (or restores) the link from the node serving at `from`'s address to `to`'s address, one way: calls
        /// and probes `from` sends to `to` fail as unreachable; everything else goes through.
        public func setReachable(from: NodeID, to: NodeID, _ reachable: Bool) {
            let key = "\(from.host):\(from.port)>\(to.host):\(to.port)"
            state.withLock { s in
                if reachable { s.cut.remove(key) } else { s.cut.insert(key) }
            }
        }
    }

    let network: Network
    /// The largest call arguments or reply body accepted (as `WireLimits.maxCallBytes`).
    public let maxCallBytes: Int
    private let served = Mutex<String?>(nil)

    public init(network: Network, maxCallBytes: Int = WireLimits().maxCallBytes) {
        self.network = network
        self.maxCallBytes = maxCallBytes
    }

    private func handler(for node: NodeID, actor: String) throws -> any NodeCallHandler {
        let endpoint = "\(node.host):\(node.port)"
        let from = served.withLock { $0 }
        let found = network.state.withLock { s -> (any NodeCallHandler)? in
            if let from, s.cut.contains("\(from)>\(endpoint)") { return nil }
            return s.disconnected.contains(endpoint) ? nil : s.handlers[endpoint]
        }
        guard let found else {
            throw ClusterError.nodeUnreachable(node: "\(node)", actor: actor, reason: "connection refused (in-process)")
        }
        return found
    }

    public func call(_ request: ClusterRequest, on node: NodeID, timeout: Duration) async throws -> ClusterReply {
        let target = try handler(for: node, actor: "\(request.address.id)")
        // Through the wire format both ways.
        var bytes = try request.header()
        bytes.append(contentsOf: request.call.arguments)
        let limit = maxCallBytes
        let decoded = try bytes.withUnsafeBytes { try ClusterRequest.parse($0, maxArgumentBytes: limit) }
        let reply = await target.handle(decoded)
        let (header, body) = try reply.header()
        return try (header + body).withUnsafeBytes { try ClusterReply.parse($0, maxBodyBytes: limit) }
    }

    public func ping(_ node: NodeID, from prober: String, timeout: Duration) async throws -> NodeID {
        let target = try handler(for: node, actor: "ping")
        guard let id = target.ping(from: prober) else {
            throw ClusterError.nodeUnreachable(node: "\(node)", actor: "ping", reason: "the node is not running")
        }
        return id
    }

    public func serve(_ handler: any NodeCallHandler, at node: NodeID) async throws -> Int {
        let endpoint = "\(node.host):\(node.port)"
        try network.state.withLock { s throws(GPUBridgeError) in
            guard s.handlers[endpoint] == nil else {
                throw .invalidArgument(
                    name: "listen address", value: endpoint, limit: "an address no in-process node uses")
            }
            s.handlers[endpoint] = handler
        }
        served.withLock { $0 = endpoint }
        return node.port
    }

    public func shutdown() async {
        guard let endpoint = served.withLock({ $0 }) else { return }
        _ = network.state.withLock { $0.handlers.removeValue(forKey: endpoint) }
    }

    public func forget(_ node: NodeID) {}

    public var enforcesDeadlines: Bool { false }
}
