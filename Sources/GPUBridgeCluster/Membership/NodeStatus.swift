/// Where a node is in its life (Orleans' silo status). A value; any thread.
public enum NodeStatus: String, Sendable, Hashable, Codable, CaseIterable {
    /// The row exists; the node is starting and hosts no actors yet.
    case joining = "Joining"
    /// The node hosts actors and answers probes.
    case active = "Active"
    /// The node is deactivating its actors; it takes no new activations.
    case shuttingDown = "ShuttingDown"
    /// The node stopped, or its lease ended (judged by the database's clock). A Dead row never changes again: a
    /// restart is a new generation.
    case dead = "Dead"
}
