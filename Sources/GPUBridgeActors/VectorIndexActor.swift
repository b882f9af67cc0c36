import Distributed
import GPUBridge

/// One answer of a vector index query.
public struct VectorHit: Sendable, Hashable, Codable, CustomStringConvertible {
    /// The vector's id.
    public var id: Int
    /// Cosine similarity to the query.
    public var score: Float

    public init(id: Int, score: Float) {
        self.id = id
        self.score = score
    }

    public var description: String { "\(id):\(score)" }
}

/// The rows of a vector index (`VectorIndexActor.export()`): ids in row order and their vectors, row-major.
/// A value returned by `export()`; any thread. It holds every row: as large as the index.
public struct VectorIndexExport: Sendable, Hashable, Codable {
    public var ids: [Int]
    public var vectors: [Float]

    public init(ids: [Int], vectors: [Float]) {
        self.ids = ids
        self.vectors = vectors
    }

    /// The vector of each id (`dim` floats each).
    public func byID(dim: Int) -> [Int: [Float]] {
        var out: [Int: [Float]] = [:]
        for (row, id) in ids.enumerated() { out[id] = Array(vectors[row * dim..<(row + 1) * dim]) }
        return out
    }
}

/// What a vector index holds and what it has moved.
public struct VectorIndexStats: Sendable, Hashable, Codable {
    public var count: Int
    /// Rows the device matrix has room for.
    public var capacity: Int
    public var dim: Int
    /// The device the matrix lives on.
    public var device: DeviceID?
    /// Host-to-device bytes of matrix rows (upserts, restores, migrations) over this instance's life.
    public var matrixBytesUploaded: Int
    /// Host-to-device bytes of query vectors over this instance's life.
    public var queryBytesUploaded: Int
    /// Device-to-device bytes copied (growth, rows moved by deletes).
    public var deviceBytesCopied: Int
    /// Times the matrix moved to another device after its device failed.
    public var migrations: Int
    /// Activations of this instance.
    public var activations: Int
}

/// The snapshot format of a vector index, written and read as a stream: little-endian
/// `"GBVI"`, format version (UInt32 = 1), dim (UInt32), count (Int64), ids (Int64 x count, in row order),
/// rows (Float32 x count x dim, row-major). Rows keep their order, so a restored index answers ties identically.
enum VectorIndexSnapshot {
    static let magic: [UInt8] = Array("GBVI".utf8)
    static let headerBytes = 20
}

/// One journaled change of a vector index. Encoded little-endian: tag (UInt8: 1 upsert, 2 delete), count (Int64),
/// ids (Int64 x count), then for an upsert the rows (Float32 x count x dim).
/// A value made by the index's `upsert`/`delete` and by replay; any thread. Encoding copies its ids and rows
/// once.
public enum VectorIndexMutation: Sendable, Hashable {
    case upsert(ids: [Int], vectors: [Float])
    case delete(ids: [Int])

    func encoded() -> [UInt8] {
        var w = WireWriter(capacity: 9)
        switch self {
        case let .upsert(ids, vectors):
            w.u8(1)
            w.i64(Int64(ids.count))
            w.raw(ids.map { Int64($0).littleEndian })
            w.raw(vectors)
        case let .delete(ids):
            w.u8(2)
            w.i64(Int64(ids.count))
            w.raw(ids.map { Int64($0).littleEndian })
        }
        return w.bytes
    }

    /// The mutation `encoded()` wrote (an upsert's rows are the bytes after the ids; `apply` checks them against dim).
    static func decode(_ bytes: [UInt8]) throws -> VectorIndexMutation {
        try bytes.withUnsafeBytes { raw in
            var r = WireReader(raw)
            let tag = try r.u8()
            let count = try r.i64()
            guard count >= 0, count <= Int64(raw.count / 8) else {
                throw GPUBridgeError.invalidArgument(
                    name: "journaled vector index mutation", value: "\(count) ids",
                    limit: "at most \(raw.count / 8) in \(raw.count) bytes")
            }
            let ids = try WireCodec.rawArray(Int64.self, try r.take(Int(count) * 8)).map {
                Int(Int64(littleEndian: $0))
            }
            switch tag {
            case 1:
                guard r.remaining % 4 == 0 else {
                    throw GPUBridgeError.invalidArgument(
                        name: "journaled upsert rows", value: "\(r.remaining) bytes",
                        limit: "a whole number of float32")
                }
                return .upsert(ids: ids, vectors: try WireCodec.rawArray(Float.self, try r.take(r.remaining)))
            case 2:
                guard r.remaining == 0 else {
                    throw GPUBridgeError.sizeMismatch(
                        name: "journaled delete bytes", expected: raw.count - r.remaining,
                        actual: raw.count)
                }
                return .delete(ids: ids)
            default:
                throw GPUBridgeError.invalidArgument(
                    name: "journaled vector index mutation tag", value: "\(tag)",
                    limit: "1 (upsert) or 2 (delete)")
            }
        }
    }
}

/// A resident vector index: a `count x dim` float32 matrix that lives in device memory across calls, queried for
/// top-k cosine similarity on the device with the built-in `cosine_scores` + `topk_select` kernels. A query uploads
/// only its query vectors; the matrix is never uploaded again.
///
/// - Rows: an upsert overwrites the row of a known id or appends one; past capacity the matrix is reallocated
///   (capacity doubles) and the old rows move with one device-to-device copy. A delete moves the last row into the
///   hole (device-to-device) and keeps the host-side id <-> row maps in step.
/// - Ties: equal scores go to the lower row (rows are in insertion order, with deletes moving the last row into the
///   hole), so answers are deterministic and survive a snapshot and restore.
/// - Concurrency: queries run concurrently; upserts, deletes and checkpoints wait for them and run alone.
/// - Durability (`DurableActor`): an upsert or delete returns once its mutation is journaled in `actorSystem.storage`;
///   activation places the matrix with the system's `place` (free memory, load), streams the last snapshot
///   (`VectorIndexSnapshot`) into it and replays the journal; checkpoints stream the matrix out in chunks.
/// - Faults: a query that fails on its device is retried per `BridgeOptions.attemptsPerDevice`; then, with fallback
///   on, the matrix is read back and moved to another device and the query runs there. If the matrix cannot be read
///   back, the call fails with every attempt named and the index stays where it was, usable once its device recovers.
public distributed actor VectorIndexActor: DurableActor {
    public typealias ActorSystem = EmbeddedActorSystem
    public typealias Mutation = VectorIndexMutation
    /// The vector count after an upsert; the number removed by a delete.
    public typealias MutationResult = Int

    /// Largest dim and k accepted.
    public static let maxDim = 65_536
    public static let maxK = 1_024

    public let lifecycle = ActivationLifecycle()
    public let journal = ActorJournal()
    /// Floats per vector.
    public let dim: Int
    /// Rows the matrix has room for when the index is first activated.
    public let initialCapacity: Int

    private var device: Device?
    private var matrix: Buffer<Float>?
    private var capacity = 0
    private var count = 0
    private var rowToID: [Int] = []
    private var idToRow: [Int: Int] = [:]

    private var matrixBytesUploaded = 0
    private var queryBytesUploaded = 0
    private var deviceBytesCopied = 0
    private var migrations = 0

    // Readers-writer gate: queries share it; mutations and snapshots hold it alone. Waiting writers block new readers.
    private var readers = 0
    private var writing = false
    private var waitingReaders: [CheckedContinuation<Void, Never>] = []
    private var waitingWriters: [CheckedContinuation<Void, Never>] = []

    public init(actorSystem: EmbeddedActorSystem, dim: Int, initialCapacity: Int = 1024) {
        self.actorSystem = actorSystem
        self.dim = dim
        self.initialCapacity = max(1, initialCapacity)
    }

    // MARK: Durable state hooks

    public static func encode(_ mutation: VectorIndexMutation) throws -> [UInt8] { mutation.encoded() }

    public static func decode(_ bytes: [UInt8]) throws -> VectorIndexMutation {
        try VectorIndexMutation.decode(bytes)
    }

    public func restore(from snapshot: SnapshotReader?) async throws -> DeviceID? {
        guard dim >= 1, dim <= Self.maxDim else {
            throw GPUBridgeError.invalidArgument(name: "dim", value: String(dim), limit: "1...\(Self.maxDim)")
        }
        var ids: [Int] = []
        var reader = snapshot
        if var r = reader {
            let name = id.description
            guard r.head.bytes >= Int64(VectorIndexSnapshot.headerBytes),
                try await r.read(count: 4) == VectorIndexSnapshot.magic
            else {
                throw GPUBridgeError.invalidArgument(
                    name: "snapshot of \(name)", value: "\(r.head.bytes) bytes",
                    limit: "a GBVI vector index snapshot")
            }
            let version = try await r.read(littleEndian: UInt32.self)
            guard version == 1 else {
                throw GPUBridgeError.unsupported(
                    feature: "vector index snapshot format \(version) of \(name) (this build reads format 1)",
                    backend: "actors")
            }
            let savedDim = Int(try await r.read(littleEndian: UInt32.self))
            guard savedDim == dim else {
                throw GPUBridgeError.sizeMismatch(name: "snapshot dim of \(name)", expected: dim, actual: savedDim)
            }
            let count = try await r.read(littleEndian: Int64.self)
            // The count comes from stored bytes: range-check it before any arithmetic with it.
            guard count >= 0, count < Int64(Int32.max) else {
                throw GPUBridgeError.invalidArgument(
                    name: "row count in the snapshot of \(name)", value: "\(count)", limit: "0..<\(Int32.max)")
            }
            let expected = Int64(VectorIndexSnapshot.headerBytes) + count * 8 + count * Int64(dim) * 4
            guard r.head.bytes == expected else {
                throw GPUBridgeError.sizeMismatch(
                    name: "snapshot bytes of \(name) (\(count) rows of dim \(dim))", expected: Int(expected),
                    actual: Int(r.head.bytes))
            }
            ids = try await r.read(Int64.self, count: Int(count)).map { Int(Int64(littleEndian: $0)) }
            guard Set(ids).count == ids.count else {
                throw GPUBridgeError.invalidArgument(
                    name: "snapshot ids of \(name)", value: "\(ids.count - Set(ids).count) duplicates",
                    limit: "unique ids")
            }
            reader = r
        }
        let capacity = max(initialCapacity, ids.count)
        let device = try actorSystem.place(footprint: capacity * dim * 4)
        let matrix = try device.makeBuffer(of: Float.self, count: capacity * dim)
        if var r = reader, !ids.isEmpty {
            // Rows stream into the matrix a piece at a time: host memory holds one piece, not the whole state.
            let rowsPerPiece = max(1, (16 << 20) / (dim * 4))
            var row = 0
            while row < ids.count {
                let rows = min(rowsPerPiece, ids.count - row)
                let piece = try await r.read(Float.self, count: rows * dim)
                try matrix.copy(from: piece, sourceOffset: 0, toOffset: row * dim, count: rows * dim)
                matrixBytesUploaded += piece.count * 4
                row += rows
            }
        }
        self.device = device
        self.matrix = matrix
        self.capacity = capacity
        count = ids.count
        rowToID = ids
        idToRow = Dictionary(uniqueKeysWithValues: ids.enumerated().map { ($1, $0) })
        return device.id
    }

    public func release() async {
        matrix = nil
        device = nil
        capacity = 0
        count = 0
        rowToID = []
        idToRow = [:]
    }

    /// Streams header, ids and rows (read back from the device a piece at a time). Queries go on meanwhile.
    public func writeSnapshot(to writer: inout SnapshotWriter) async throws {
        await beginRead()
        defer { endRead() }
        guard let matrix else { throw notActive() }
        try await writer.write(VectorIndexSnapshot.magic)
        try await writer.write(littleEndian: UInt32(1))
        try await writer.write(littleEndian: UInt32(dim))
        try await writer.write(littleEndian: Int64(count))
        try await writer.write(contentsOf: rowToID.map { Int64($0).littleEndian })
        let rowsPerPiece = max(1, (16 << 20) / (dim * 4))
        var row = 0
        while row < count {
            let rows = min(rowsPerPiece, count - row)
            try await writer.write(contentsOf: try matrix.toArray(offset: row * dim, count: rows * dim))
            row += rows
        }
    }

    public func apply(_ mutation: VectorIndexMutation) async throws -> Int {
        switch mutation {
        case let .upsert(ids, vectors): return try await applyUpsert(ids: ids, vectors: vectors)
        case let .delete(ids): return try await applyDelete(ids: ids)
        }
    }

    // MARK: Calls

    /// Inserts or overwrites `ids.count` vectors (`vectors` is `ids.count x dim`, row-major). A repeated id in one
    /// call keeps its last vector. Returns the number of vectors in the index. Durable when it returns; a retry of a
    /// call that already committed (same call id) is not applied again and returns the current count.
    @discardableResult
    public distributed func upsert(ids: [Int], vectors: [Float]) async throws -> Int {
        try await withActivation {
            let (expected, overflow) = ids.count.multipliedReportingOverflow(by: dim)
            guard !overflow, vectors.count == expected else {
                throw GPUBridgeError.sizeMismatch(
                    name: "vectors.count (ids.count x dim \(dim))", expected: overflow ? -1 : expected,
                    actual: vectors.count)
            }
            guard !ids.isEmpty else { return count }
            switch try await mutate(.upsert(ids: ids, vectors: vectors)) {
            case let .applied(newCount, _): return newCount
            case .alreadyApplied: return count
            }
        }
    }

    private func applyUpsert(ids: [Int], vectors: [Float]) async throws -> Int {
        let (expected, overflow) = ids.count.multipliedReportingOverflow(by: dim)
        guard !overflow, vectors.count == expected else {
            throw GPUBridgeError.sizeMismatch(
                name: "vectors.count of a journaled upsert (ids.count x dim \(dim))",
                expected: overflow ? -1 : expected, actual: vectors.count)
        }
        await beginWrite()
        defer { endWrite() }
        // Rows for each id (last occurrence wins), then grow, then copy, then commit the maps.
        var plan: [Int: Int] = [:]  // row -> index in `ids`
        var appended: [Int: Int] = [:]  // new id -> its new row
        var newCount = count
        for (i, id) in ids.enumerated() {
            let row: Int
            if let existing = idToRow[id] ?? appended[id] {
                row = existing
            } else {
                row = newCount
                appended[id] = row
                newCount += 1
            }
            plan[row] = i
        }
        try await reserve(rows: newCount)
        guard let matrix else { throw notActive() }
        // (row, source index) by row; runs consecutive in both are one copy.
        let copies = plan.sorted { $0.key < $1.key }
        var start = 0
        while start < copies.count {
            var end = start + 1
            while end < copies.count, copies[end].key == copies[end - 1].key + 1,
                copies[end].value == copies[end - 1].value + 1
            { end += 1 }
            try matrix.copy(
                from: vectors, sourceOffset: copies[start].value * dim, toOffset: copies[start].key * dim,
                count: (end - start) * dim)
            matrixBytesUploaded += (end - start) * dim * 4
            start = end
        }
        for (id, row) in appended.sorted(by: { $0.value < $1.value }) {
            rowToID.append(id)
            idToRow[id] = row
        }
        count = newCount
        return count
    }

    /// Removes the vectors of `ids` (unknown ids are ignored); the last row moves into each hole. Returns how many
    /// were removed (0 for a retry of a call that already committed). Durable when it returns.
    @discardableResult
    public distributed func delete(ids: [Int]) async throws -> Int {
        try await withActivation {
            guard !ids.isEmpty else { return 0 }
            switch try await mutate(.delete(ids: ids)) {
            case let .applied(removed, _): return removed
            case .alreadyApplied: return 0
            }
        }
    }

    private func applyDelete(ids: [Int]) async throws -> Int {
        await beginWrite()
        defer { endWrite() }
        guard let matrix else { throw notActive() }
        var removed = 0
        for id in ids {
            guard let row = idToRow[id] else { continue }
            let last = count - 1
            if row != last {
                try await matrix.copy(from: matrix, sourceOffset: last * dim, toOffset: row * dim, count: dim)
                deviceBytesCopied += dim * 4
                let moved = rowToID[last]
                rowToID[row] = moved
                idToRow[moved] = row
            }
            rowToID.removeLast()
            idToRow[id] = nil
            count -= 1
            removed += 1
        }
        return removed
    }

    /// The `k` most similar vectors (cosine) to each query (`queries` is `n x dim`), best first; ties go to the
    /// lower row. Fewer than `k` when the index holds fewer vectors.
    public distributed func query(_ queries: [Float], k: Int) async throws -> [[VectorHit]] {
        try await withActivation {
            guard !queries.isEmpty, queries.count % dim == 0 else {
                throw GPUBridgeError.invalidArgument(
                    name: "queries.count", value: String(queries.count), limit: "a positive multiple of dim \(dim)")
            }
            guard k >= 1, k <= Self.maxK else {
                throw GPUBridgeError.invalidArgument(name: "k", value: String(k), limit: "1...\(Self.maxK)")
            }
            let queryCount = queries.count / dim
            var attempts: [String] = []
            var failed: Set<DeviceID> = []
            while true {
                await beginRead()
                guard let device, let matrix else {
                    endRead()
                    throw notActive()
                }
                if count == 0 {
                    endRead()
                    return [[VectorHit]](repeating: [], count: queryCount)
                }
                let rows = count, ids = rowToID, kk = min(k, count)
                let outcome = await attempt(on: device, attempts: &attempts) {
                    () async throws(GPUBridgeError) -> [[VectorHit]] in
                    let q = try device.makeBuffer(copying: queries)
                    let matches = try await Operations.cosineTopK(
                        queries: q, queryCount: queryCount, matrix: matrix, rows: rows, dim: dim, k: kk,
                        context: ExecutionContext(device: device, catalog: actorSystem.bridge.catalog))
                    return matches.map { $0.map { VectorHit(id: ids[$0.index], score: $0.score) } }
                }
                endRead()
                switch outcome {
                case let .success(hits):
                    queryBytesUploaded += queries.count * 4
                    return hits
                case let .failure(error):
                    if Self.isCallerError(error) { throw error }
                    failed.insert(device.id)
                    guard actorSystem.bridge.options.fallback else {
                        throw GPUBridgeError.allAttemptsFailed(operation: "vector-index query", attempts: attempts)
                    }
                    try await migrate(from: device, excluding: failed, attempts: &attempts)
                }
            }
        }
    }

    /// Writes a snapshot now (and trims the journal it covers), without deactivating. Every acknowledged upsert and
    /// delete is durable without it; a checkpoint makes the next activation replay less.
    public distributed func checkpoint() async throws {
        try await withActivation { try await writeCheckpoint() }
    }

    /// The journal's counters and positions (appends, replayed entries, snapshots, remembered calls).
    public distributed func journalStatistics() async throws -> JournalStatistics {
        try await withActivation { journal.statistics }
    }

    /// Vectors in the index.
    public distributed func vectorCount() async throws -> Int {
        try await withActivation { count }
    }

    /// The device the matrix lives on (activating the index if needed).
    public distributed func placement() async throws -> DeviceID? {
        try await withActivation { device?.id }
    }

    public distributed func stats() async throws -> VectorIndexStats {
        try await withActivation {
            VectorIndexStats(
                count: count, capacity: capacity, dim: dim, device: device?.id,
                matrixBytesUploaded: matrixBytesUploaded, queryBytesUploaded: queryBytesUploaded,
                deviceBytesCopied: deviceBytesCopied, migrations: migrations, activations: lifecycle.activations)
        }
    }

    /// Every id and its vector, in row order (`vectors` is `ids.count x dim`): reads the whole matrix back, so it costs
    /// what a snapshot does. For checks and exports, not for serving.
    public distributed func export() async throws -> VectorIndexExport {
        try await withActivation {
            await beginRead()
            defer { endRead() }
            guard let matrix else { throw notActive() }
            return VectorIndexExport(
                ids: rowToID, vectors: count > 0 ? try matrix.toArray(offset: 0, count: count * dim) : [])
        }
    }

    /// The id of each row, in row order (the order ties are broken in).
    public distributed func idsInRowOrder() async throws -> [Int] {
        try await withActivation { rowToID }
    }

    // MARK: Internals

    private func notActive() -> GPUBridgeError {
        .backendUnavailable(backend: "actors", reason: "\(id) holds no device matrix (it is not active)")
    }

    /// Makes room for `rows` rows: a bigger buffer on the same device and one device-to-device copy of the rows held.
    private func reserve(rows: Int) async throws {
        guard rows > capacity else { return }
        guard let device, let old = matrix else { throw notActive() }
        let newCapacity = max(rows, capacity * 2, initialCapacity)
        let grown = try device.makeBuffer(of: Float.self, count: newCapacity * dim)
        if count > 0 {
            try await grown.copy(from: old, sourceOffset: 0, toOffset: 0, count: count * dim)
            deviceBytesCopied += count * dim * 4
        }
        matrix = grown
        capacity = newCapacity
    }

    /// Runs `body` on `device` with a launch slot from the broker, retrying transient failures.
    private func attempt<T>(
        on device: Device, attempts: inout [String],
        _ body: () async throws(GPUBridgeError) -> T
    ) async -> Result<T, GPUBridgeError> {
        let broker = actorSystem.bridge.broker
        let others = Set(broker.devices.map(\.id)).subtracting([device.id])
        var last = GPUBridgeError.backendUnavailable(
            backend: device.id.backend.rawValue, reason: "\(device.id) was not tried")
        for n in 1...actorSystem.bridge.options.attemptsPerDevice {
            guard let lease = await broker.acquire(backends: [device.id.backend], excluding: others) else {
                last = .backendUnavailable(
                    backend: device.id.backend.rawValue, reason: "\(device.id)'s circuit is open")
                attempts.append("\(device.id) attempt \(n): \(last)")
                return .failure(last)
            }
            do throws(GPUBridgeError) {
                let value = try await body()
                broker.release(lease, succeeded: true)
                return .success(value)
            } catch {
                let caller = Self.isCallerError(error)
                broker.release(lease, succeeded: false, countsAsFailure: !caller)
                if caller { return .failure(error) }
                attempts.append("\(device.id) attempt \(n): \(error)")
                last = error
                guard case .backendFailure = error else { return .failure(error) }
            }
        }
        return .failure(last)
    }

    /// Moves the matrix off `failing` to the best other device (not in `excluding`). Throws `allAttemptsFailed` with
    /// every attempt when the matrix cannot be read back or no other device can take it; the index then stays put.
    private func migrate(from failing: Device, excluding: Set<DeviceID>, attempts: inout [String]) async throws {
        await beginWrite()
        defer { endWrite() }
        guard let matrix, self.device === failing else { return }  // another call moved it already
        do throws(GPUBridgeError) {
            let rows = count > 0 ? try matrix.toArray(offset: 0, count: count * dim) : []
            let target = try actorSystem.place(footprint: capacity * dim * 4, excluding: excluding)
            let moved = try target.makeBuffer(of: Float.self, count: capacity * dim)
            if !rows.isEmpty { try moved.copy(from: rows) }
            matrixBytesUploaded += rows.count * 4
            self.matrix = moved
            self.device = target
            migrations += 1
            actorSystem.recordPlacement(id, device: target.id)
            actorSystem.logger.notice(
                "vector index moved after device failures",
                metadata: [
                    "actor": "\(id)", "from": "\(failing.id)", "to": "\(target.id)",
                ])
        } catch {
            attempts.append("moving the matrix off \(failing.id): \(error)")
            throw GPUBridgeError.allAttemptsFailed(operation: "vector-index query", attempts: attempts)
        }
    }

    static func isCallerError(_ error: GPUBridgeError) -> Bool {
        switch error {
        case .invalidArgument, .outOfBounds, .sizeMismatch, .argumentMismatch, .notFound, .wrongDevice: return true
        default: return false
        }
    }

    private func beginRead() async {
        if writing || !waitingWriters.isEmpty {
            await withCheckedContinuation { waitingReaders.append($0) }  // endWrite counts us in
        } else {
            readers += 1
        }
    }

    private func endRead() {
        readers -= 1
        if readers == 0, !waitingWriters.isEmpty {
            writing = true
            waitingWriters.removeFirst().resume()
        }
    }

    private func beginWrite() async {
        if writing || readers > 0 {
            await withCheckedContinuation { waitingWriters.append($0) }  // the releaser sets `writing` for us
        } else {
            writing = true
        }
    }

    private func endWrite() {
        if !waitingReaders.isEmpty {
            writing = false
            readers += waitingReaders.count
            let woken = waitingReaders
            waitingReaders = []
            for r in woken { r.resume() }
        } else if !waitingWriters.isEmpty {
            waitingWriters.removeFirst().resume()  // stays `writing`, handed over
        } else {
            writing = false
        }
    }
}
