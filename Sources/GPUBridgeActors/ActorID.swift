/// The address of an actor: its type name and its key. A virtual actor is activated on the first call to its id, so
/// the id is all a caller needs; it never names a device or a node.
public struct GPUActorID: Sendable, Hashable, Codable, CustomStringConvertible {
    /// The name the actor type was registered under (`EmbeddedActorSystem.register`).
    public var type: String
    /// The key within the type, for example an index name or a tenant.
    public var key: String

    public init(type: String, key: String) {
        self.type = type
        self.key = key
    }

    public var description: String { "\(type)/\(key)" }
}
