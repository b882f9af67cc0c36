import Logging
import Synchronization

/// Compiled kernel binaries in memory and on disk, shared by every device of a process.
///
/// Keys cover everything that changes the binary: backend, device architecture, compiler version, native flags,
/// language, entry point and source text. On disk each entry is one file named by the key's SHA-256, written
/// atomically (temporary file + rename) with a header that repeats the key digest and a SHA-256 of the payload;
/// an entry whose header or checksum does not match is deleted and rebuilt. The folder is `directory`, or
/// `$GPUBRIDGE_CACHE_DIR`, `$XDG_CACHE_HOME/gpubridge`, `$HOME/.cache/gpubridge` for `KernelCache.default`.
///
/// Thread safety: any thread may use it. Two threads missing on the same key may both compile; the second write
/// replaces the first atomically.
public final class KernelCache: Sendable {
    /// What identifies a binary.
    public struct Key: Sendable, Hashable {
        public var backend: String
        public var architecture: String
        public var compiler: String
        public var flags: [String]
        public var language: String
        public var entryPoint: String
        public var source: String

        public init(
            backend: String, architecture: String, compiler: String, flags: [String], language: String,
            entryPoint: String, source: String
        ) {
            self.backend = backend
            self.architecture = architecture
            self.compiler = compiler
            self.flags = flags
            self.language = language
            self.entryPoint = entryPoint
            self.source = source
        }

        /// Hex SHA-256 over every field, each length-prefixed so no two keys collide by concatenation.
        public var digest: String {
            var hasher = SHA256()
            for field in [
                backend, architecture, compiler, flags.joined(separator: "\u{1F}"), language, entryPoint, source,
            ] {
                let bytes = Array(field.utf8)
                hasher.update(withUnsafeBytes(of: UInt64(bytes.count).littleEndian) { Array($0) })
                hasher.update(bytes)
            }
            return SHA256.hex(hasher.finalize())
        }
    }

    /// Hits and misses, exact at the moment they are read.
    public struct Statistics: Sendable, Hashable, Codable {
        /// A device already had the program loaded.
        public var loadedHits = 0
        /// The binary was in memory.
        public var memoryHits = 0
        /// The binary was read from disk.
        public var diskHits = 0
        /// Nothing was cached: the compiler ran.
        public var misses = 0
        /// Disk entries found corrupt, deleted and rebuilt.
        public var corruptEntries = 0
        /// Entries written to disk.
        public var diskWrites = 0
    }

    /// The folder binaries are stored in, or nil for a memory-only cache.
    public let directory: String?
    private let memory = Mutex<[String: KernelBinary]>([:])
    private let stats = Mutex(Statistics())
    private let logger = Logger(label: "gpubridge.cache")

    private static let magic: [UInt8] = Array("GPUBRIDGE-KERNEL-1\n".utf8)

    /// A cache storing binaries under `directory` (created on first write), or in memory only when nil.
    public init(directory: String?) {
        self.directory = directory
    }

    /// The folder the default cache uses: `$GPUBRIDGE_CACHE_DIR`, else `$XDG_CACHE_HOME/gpubridge`, else
    /// `$HOME/.cache/gpubridge`, else nil (memory only).
    public static var defaultDirectory: String? {
        if let dir = FileStore.environment("GPUBRIDGE_CACHE_DIR") { return dir }
        if let xdg = FileStore.environment("XDG_CACHE_HOME") { return xdg + "/gpubridge" }
        if let home = FileStore.environment("HOME") { return home + "/.cache/gpubridge" }
        return nil
    }

    /// A disk-backed cache in `defaultDirectory`.
    public static func makeDefault() -> KernelCache { KernelCache(directory: defaultDirectory) }

    public var statistics: Statistics { stats.withLock { $0 } }

    func recordLoadedHit() { stats.withLock { $0.loadedHits += 1 } }

    /// The file an entry for `digest` lives in.
    public func path(forDigest digest: String) -> String? {
        directory.map { "\($0)/\(digest).bin" }
    }

    /// The binary for `key`: from memory, else from disk (verified), else from `build()`, which is then stored.
    public func binary(for key: Key, build: () throws(GPUBridgeError) -> KernelBinary) throws(GPUBridgeError)
        -> KernelBinary
    {
        let digest = key.digest
        if let hit = memory.withLock({ $0[digest] }) {
            stats.withLock { $0.memoryHits += 1 }
            return hit
        }
        if let path = path(forDigest: digest) {
            switch readEntry(path: path, digest: digest) {
            case let .found(binary):
                memory.withLock { $0[digest] = binary }
                stats.withLock { $0.diskHits += 1 }
                return binary
            case .corrupt(let reason):
                logger.warning(
                    "corrupt kernel cache entry; rebuilding", metadata: ["path": "\(path)", "reason": "\(reason)"])
                FileStore.remove(path)
                stats.withLock { $0.corruptEntries += 1 }
            case .missing:
                break
            }
        }
        stats.withLock { $0.misses += 1 }
        let binary = try build()
        memory.withLock { $0[digest] = binary }
        if let directory, let path = path(forDigest: digest) {
            do {
                try FileStore.makeDirectories(directory)
                try FileStore.writeAtomically(encode(binary, digest: digest), to: path)
                stats.withLock { $0.diskWrites += 1 }
            } catch {
                // A cache that cannot be written still works from memory; say so once per failure.
                logger.warning(
                    "could not write kernel cache entry", metadata: ["path": "\(path)", "error": "\(error)"])
            }
        }
        return binary
    }

    /// Forgets the in-memory binaries (the disk entries stay), as a new process would see the cache.
    public func clearMemory() { memory.withLock { $0.removeAll() } }

    private enum ReadResult { case found(KernelBinary), corrupt(String), missing }

    // Layout: magic | digest (64 hex) | format length u32 | format | payload length u64 | payload sha256 (32) | payload
    private func encode(_ binary: KernelBinary, digest: String) -> [UInt8] {
        var out = Self.magic
        out += Array(digest.utf8)
        let format = Array(binary.format.utf8)
        out += withUnsafeBytes(of: UInt32(format.count).littleEndian) { Array($0) }
        out += format
        out += withUnsafeBytes(of: UInt64(binary.bytes.count).littleEndian) { Array($0) }
        out += SHA256.hash(binary.bytes)
        out += binary.bytes
        return out
    }

    private func readEntry(path: String, digest: String) -> ReadResult {
        let data: [UInt8]
        do {
            guard let read = try FileStore.read(path) else { return .missing }
            data = read
        } catch {
            return .corrupt("unreadable: \(error)")
        }
        var cursor = 0
        func take(_ n: Int) -> ArraySlice<UInt8>? {
            guard n >= 0, data.count - cursor >= n else { return nil }
            defer { cursor += n }
            return data[cursor..<cursor + n]
        }
        func integer<T: FixedWidthInteger>(_: T.Type) -> T? {
            guard let bytes = take(MemoryLayout<T>.size) else { return nil }
            return bytes.reversed().reduce(T(0)) { $0 << 8 | T($1) }
        }
        guard let magic = take(Self.magic.count), Array(magic) == Self.magic else { return .corrupt("bad header") }
        guard let key = take(64), String(decoding: key, as: UTF8.self) == digest else {
            return .corrupt("key mismatch")
        }
        guard let formatLength = integer(UInt32.self), let format = take(Int(formatLength)) else {
            return .corrupt("truncated format")
        }
        guard let payloadLength = integer(UInt64.self), let checksum = take(32),
            let payload = take(Int(clamping: payloadLength)), cursor == data.count
        else { return .corrupt("truncated payload") }
        guard SHA256.hash(payload) == Array(checksum) else { return .corrupt("checksum mismatch") }
        return .found(KernelBinary(format: String(decoding: format, as: UTF8.self), bytes: Array(payload)))
    }
}
