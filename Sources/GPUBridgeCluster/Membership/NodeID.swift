import Foundation
import GPUBridge

/// A node of the cluster: where it listens and when it started (its generation). A restarted process at the same
/// address is a new node (Orleans' silo address: endpoint + generation). A value; any thread.
public struct NodeID: Sendable, Hashable, Codable, Comparable, CustomStringConvertible {
    public var host: String
    public var port: Int
    /// The node's start time in microseconds since 1970; distinguishes a restart at the same address.
    public var generation: Int64

    public init(host: String, port: Int, generation: Int64) {
        self.host = host
        self.port = port
        self.generation = generation
    }

    public var description: String { "\(host):\(port)@\(generation)" }

    public static func < (a: NodeID, b: NodeID) -> Bool {
        (a.host, a.port, a.generation) < (b.host, b.port, b.generation)
    }

    /// Parses `host:port@generation`.
    public init(parsing text: String) throws(GPUBridgeError) {
        let parts = text.split(separator: "@", maxSplits: 1)
        guard parts.count == 2, let generation = Int64(parts[1]), let colon = parts[0].lastIndex(of: ":"),
            let port = Int(parts[0][parts[0].index(after: colon)...]), (1...65_535).contains(port)
        else {
            throw .invalidArgument(name: "node", value: "\"\(text)\"", limit: "host:port@generation")
        }
        self.init(host: String(parts[0][..<colon]), port: port, generation: generation)
    }
}
