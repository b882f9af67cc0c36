import GRPCCore

/// Raw bytes in and out: the cluster's frames are its own (`ClusterRequest`, `ClusterReply`), so gRPC carries
/// opaque messages; no protobuf.
struct BytesDeserializer: MessageDeserializer {
    func deserialize<Bytes: GRPCContiguousBytes>(_ serializedMessageBytes: Bytes) throws -> [UInt8] {
        serializedMessageBytes.withUnsafeBytes { [UInt8]($0) }
    }
}

/// One outgoing message made of pieces of byte arrays (a header and a slice of the arguments), copied once into the
/// transport's buffer.
struct Pieces: Sendable {
    var parts: [(bytes: [UInt8], range: Range<Int>)]

    init(_ parts: [(bytes: [UInt8], range: Range<Int>)]) { self.parts = parts }
    init(_ whole: [UInt8]) { parts = [(whole, 0..<whole.count)] }

    var count: Int { parts.reduce(0) { $0 + $1.range.count } }
}

struct PiecesSerializer: MessageSerializer {
    func serialize<Bytes: GRPCContiguousBytes>(_ message: Pieces) throws -> Bytes {
        var out = Bytes(repeating: 0, count: message.count)
        out.withUnsafeMutableBytes { dst in
            var at = 0
            for part in message.parts where !part.range.isEmpty {
                part.bytes.withUnsafeBytes { src in
                    dst.baseAddress!.advanced(by: at).copyMemory(
                        from: src.baseAddress!.advanced(by: part.range.lowerBound),
                        byteCount: part.range.count)
                }
                at += part.range.count
            }
        }
        return out
    }
}

/// The node service's methods (`gpubridge.cluster.v1.Node`).
enum NodeMethods {
    static let service = "gpubridge.cluster.v1.Node"
    /// Unary: one request message (header + arguments), one reply message (header + body).
    static let call = MethodDescriptor(fullyQualifiedService: service, method: "Call")
    /// Bidirectional streaming, for payloads over the message limit: the request header, then argument chunks; the
    /// reply header, then body chunks.
    static let callStream = MethodDescriptor(fullyQualifiedService: service, method: "CallStream")
    /// Unary: empty request; the reply is the answering node's id as text.
    static let ping = MethodDescriptor(fullyQualifiedService: service, method: "Ping")
}
