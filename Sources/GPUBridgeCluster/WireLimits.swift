import GPUBridge

/// Sizes of the wire: gRPC message size, streaming chunk size and the largest call or reply a node accepts.
///
/// A value type: each node and client copies it from its options at start; any thread may read it. Checking a frame's
/// claimed size against it costs a comparison, made before anything of that size is allocated.
public struct WireLimits: Sendable, Hashable {
    /// The largest gRPC message either side accepts (gRPC's usual 4 MiB); with `TCPNodeTransport`, the largest frame
    /// (plus 1 MiB for a call's header).
    public var maxMessageBytes = 4 * 1024 * 1024
    /// Calls whose request is larger than this go through the streaming method (a head and chunk frames with
    /// `TCPNodeTransport`), cut in chunks of this size; replies larger than it come back the same way.
    public var chunkBytes = 2 * 1024 * 1024
    /// The largest call (its arguments) or reply (its body) either side accepts, streamed or not. A frame whose header
    /// claims more is refused with `ClusterError.messageTooLarge` before anything is allocated for it, and the node
    /// keeps serving. Receive buffers grow with the bytes that actually arrive, never with what a header claims.
    public var maxCallBytes = 1 << 30

    public init() {}

    /// The range `maxCallBytes` must lie in.
    public static let maxCallBytesRange = 1...(1 << 40)

    public func validate() throws(GPUBridgeError) {
        guard Self.maxCallBytesRange.contains(maxCallBytes) else {
            let range = Self.maxCallBytesRange
            throw .invalidArgument(
                name: "maxCallBytes", value: "\(maxCallBytes)",
                limit: "\(range.lowerBound)...\(range.upperBound) (1 TiB)")
        }
        guard chunkBytes >= 4096, chunkBytes <= maxMessageBytes - 65_536 else {
            throw .invalidArgument(
                name: "chunkBytes", value: "\(chunkBytes)",
                limit: "4096...maxMessageBytes - 65536 (\(maxMessageBytes - 65_536))")
        }
    }
}
