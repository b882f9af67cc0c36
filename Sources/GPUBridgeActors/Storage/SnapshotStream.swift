import GPUBridge

/// Writes one snapshot as a stream of bytes, stored in chunks of `chunkBytes` as they fill (`ActorStorage.writeChunk`),
/// so a snapshot of any size needs one chunk of host memory, not the whole state.
///
/// Made by `DurableActor.checkpoint()` and handed (`inout`) to the actor's `writeSnapshot(to:)`; used from that
/// actor's isolation only. The snapshot becomes current only when the checkpoint commits it.
public struct SnapshotWriter: Sendable {
    let storage: any ActorStorage
    let actor: GPUActorID
    let epoch: Int64
    /// The snapshot being written.
    public let snapshot: SnapshotID
    /// Bytes per stored chunk (the last one may be shorter).
    public let chunkBytes: Int
    private var buffer: [UInt8] = []
    /// Chunks stored so far.
    public private(set) var chunks = 0
    /// Bytes written so far (stored or buffered).
    public private(set) var bytes: Int64 = 0

    init(storage: any ActorStorage, actor: GPUActorID, epoch: Int64, snapshot: SnapshotID, chunkBytes: Int) {
        self.storage = storage
        self.actor = actor
        self.epoch = epoch
        self.snapshot = snapshot
        self.chunkBytes = max(1, chunkBytes)
        buffer.reserveCapacity(self.chunkBytes)
    }

    /// Appends `raw` to the snapshot, storing every chunk it fills.
    public mutating func write(_ raw: [UInt8]) async throws {
        var offset = 0
        while offset < raw.count {
            let take = min(chunkBytes - buffer.count, raw.count - offset)
            buffer.append(contentsOf: raw[offset..<offset + take])
            offset += take
            bytes += Int64(take)
            if buffer.count == chunkBytes { try await flush() }
        }
    }

    /// Appends the raw bytes of `values` (host byte order).
    public mutating func write<T: BitwiseCopyable>(contentsOf values: [T]) async throws {
        // Copied out first: `write` suspends, and the pointer of `withUnsafeBytes` must not outlive its closure.
        var offset = 0
        let stride = MemoryLayout<T>.stride
        let perStep = max(1, chunkBytes / max(1, stride))
        while offset < values.count {
            let end = min(values.count, offset + perStep)
            try await write(values[offset..<end].withUnsafeBytes { [UInt8]($0) })
            offset = end
        }
    }

    /// Appends `value`'s raw bytes in little-endian order.
    public mutating func write<T: FixedWidthInteger>(littleEndian value: T) async throws {
        try await write(withUnsafeBytes(of: value.littleEndian) { [UInt8]($0) })
    }

    /// Stores what is buffered as the last chunk.
    mutating func finish() async throws {
        if !buffer.isEmpty { try await flush() }
    }

    private mutating func flush() async throws {
        try await storage.writeChunk(buffer, of: actor, snapshot: snapshot, index: chunks, epoch: epoch)
        chunks += 1
        buffer.removeAll(keepingCapacity: true)
    }
}

/// Reads one stored snapshot back as a stream of bytes, fetching a chunk at a time (`ActorStorage.readChunk`).
///
/// Made by `DurableActor`'s activation and handed (`inout`) to the actor's `restore(from:)`; used from that actor's
/// isolation only. Reading past the end, or a chunk missing, throws `ActorStorageError.corrupt`.
public struct SnapshotReader: Sendable {
    let storage: any ActorStorage
    let actor: GPUActorID
    /// The snapshot being read.
    public let head: SnapshotHead
    private var chunk: [UInt8] = []
    private var offset = 0
    private var nextChunk = 0
    /// Bytes not read yet.
    public private(set) var remaining: Int64

    init(storage: any ActorStorage, actor: GPUActorID, head: SnapshotHead) {
        self.storage = storage
        self.actor = actor
        self.head = head
        remaining = head.bytes
    }

    /// The next `count` bytes.
    public mutating func read(count: Int) async throws -> [UInt8] {
        guard count >= 0, Int64(count) <= remaining else {
            throw ActorStorageError.corrupt(
                actor: "\(actor)",
                detail: "\(head.id) has \(remaining) bytes left, "
                    + "\(count) were asked for")
        }
        var out: [UInt8] = []
        out.reserveCapacity(count)
        while out.count < count {
            if offset == chunk.count {
                guard nextChunk < head.chunks else {
                    throw ActorStorageError.corrupt(
                        actor: "\(actor)", detail: "\(head.id) ends after \(head.chunks) chunks")
                }
                chunk = try await storage.readChunk(actor, snapshot: head.id, index: nextChunk)
                nextChunk += 1
                offset = 0
                guard !chunk.isEmpty else {
                    throw ActorStorageError.corrupt(
                        actor: "\(actor)", detail: "chunk \(nextChunk - 1) of \(head.id) is empty")
                }
            }
            let take = min(count - out.count, chunk.count - offset)
            out.append(contentsOf: chunk[offset..<offset + take])
            offset += take
        }
        remaining -= Int64(count)
        return out
    }

    /// The next `count` values of `T` (raw, host byte order).
    public mutating func read<T: BitwiseCopyable>(_: T.Type, count: Int) async throws -> [T] {
        let (byteCount, overflow) = count.multipliedReportingOverflow(by: MemoryLayout<T>.stride)
        guard !overflow, count >= 0 else {
            throw ActorStorageError.corrupt(
                actor: "\(actor)", detail: "\(count) values of \(T.self) asked of \(head.id)")
        }
        let raw = try await read(count: byteCount)
        return [T](unsafeUninitializedCapacity: count) { out, initialized in
            raw.withUnsafeBytes { UnsafeMutableRawBufferPointer(out).copyMemory(from: $0) }
            initialized = count
        }
    }

    /// The next little-endian integer of type `T`.
    public mutating func read<T: FixedWidthInteger>(littleEndian _: T.Type) async throws -> T {
        let raw = try await read(count: MemoryLayout<T>.size)
        var value: T = 0
        withUnsafeMutableBytes(of: &value) { dst in raw.withUnsafeBytes { dst.copyMemory(from: $0) } }
        return T(littleEndian: value)
    }
}
