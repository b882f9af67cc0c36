import GPUBridge
import GPUBridgeActors
import NIOCore
import Synchronization

/// A value arriving in chunks. When its connection has room (`TCPAssemblies.reserveLimit`), the array of the announced
/// size is made when the head comes, as a fresh mapping whose pages are committed only as bytes arrive, and each piece
/// is copied into it as it is read: no byte waits in a read buffer, and the value is whole the moment its last byte
/// comes. Otherwise nothing is reserved for bytes that have not come: the pieces are copied into segments of at most
/// `segmentBytes` as they arrive (never keeping a read buffer alive), and once the last has come into an array of the
/// exact size (`FreshArrays`). Either way more bytes than the head announced are refused. Confined to one event loop.
struct TCPAssembly<Tag> {
    let expected: Int
    let tag: Tag
    /// Whether the value's array was made when the head came.
    let reserved: Bool
    private var value: [UInt8] = []
    private var segments: [ByteBuffer] = []
    private var received = 0

    /// The largest segment an assembly that was not reserved holds its bytes in.
    static var segmentBytes: Int { 1 << 20 }

    init(expected: Int, tag: Tag, reserve: Bool) {
        self.expected = expected
        self.tag = tag
        self.reserved = reserve
        if reserve { value = FreshArrays.reserve(count: expected) }
    }

    /// Takes the next bytes; returns the whole value once every announced byte has come, and nil before.
    mutating func append(_ piece: ByteBuffer) throws -> [UInt8]? {
        let n = piece.readableBytes
        guard n <= expected - received else {
            throw ClusterError.malformedMessage(
                what: "chunk",
                detail: "\(n) bytes after \(received): more than the \(expected) bytes its head said")
        }
        if reserved {
            let at = received
            value.withUnsafeMutableBytes { out in
                piece.withUnsafeReadableBytes { bytes in
                    if let base = bytes.baseAddress, n > 0 {
                        (out.baseAddress! + at).copyMemory(from: base, byteCount: n)
                    }
                }
            }
        } else {
            var piece = piece
            while piece.readableBytes > 0 {
                if segments.last.map({ $0.writableBytes == 0 }) ?? true {
                    let unstored = expected - received - (n - piece.readableBytes)
                    segments.append(ByteBufferAllocator().buffer(capacity: min(unstored, Self.segmentBytes)))
                }
                let last = segments.count - 1
                var part = piece.readSlice(length: min(piece.readableBytes, segments[last].writableBytes))!
                segments[last].writeBuffer(&part)
            }
        }
        received += n
        guard received == expected else { return nil }
        if reserved {
            let whole = value
            value = []
            return whole
        }
        let parts = segments
        segments = []
        return FreshArrays.joining(count: expected) { copy in for part in parts { part.withUnsafeReadableBytes(copy) } }
    }
}

/// Bytes reserved for values before their bytes have arrived, over every connection that shares this budget: the
/// process-wide one (`process`) bounds what the heads of all peers together can make a node reserve, however many
/// connections they open. Any thread; one atomic compare-and-swap per reservation.
final class TCPReservations: Sendable {
    /// The budget every connection of the process shares: 1 GiB.
    static let process = TCPReservations(limit: 1 << 30)

    let limit: Int
    private let reserved = Atomic<Int>(0)

    init(limit: Int) {
        self.limit = limit
    }

    /// The bytes reserved now.
    var bytes: Int { reserved.load(ordering: .relaxed) }

    /// Reserves `count` bytes when that stays within the limit; returns whether it did.
    func take(_ count: Int) -> Bool {
        var current = reserved.load(ordering: .relaxed)
        while count <= limit - current {
            let (exchanged, original) = reserved.compareExchange(
                expected: current, desired: current + count, ordering: .relaxed)
            if exchanged { return true }
            current = original
        }
        return false
    }

    /// Gives back `count` bytes taken before.
    func give(_ count: Int) {
        reserved.subtract(count, ordering: .relaxed)
    }
}

/// The values arriving in chunks on one connection, by exchange id, and the bytes reserved for them. An assembly gets
/// its array at its head while this connection's reservations stay within `reserveLimit` and the process's within
/// `TCPReservations.process`, so the heads of peers can make a node hold at most that much address space beyond what
/// they have sent. What is reserved is given back when a value is whole, refused or dropped, and when the connection's
/// handler goes (`deinit`).
///
/// Owned by one connection's handler and confined to its event loop.
final class TCPAssemblies<Tag> {
    /// The most bytes one connection reserves for values before their bytes arrive.
    static var reserveLimit: Int { 256 << 20 }

    private let budget: TCPReservations
    private var assemblies: [UInt64: TCPAssembly<Tag>] = [:]
    /// The announced sizes of the assemblies whose arrays were made at their heads.
    private(set) var reservedBytes = 0

    init(budget: TCPReservations = .process) {
        self.budget = budget
    }

    deinit { budget.give(reservedBytes) }

    var count: Int { assemblies.count }

    /// Starts the value with `id`, of `expected` bytes (a head already checked against the limits).
    func begin(_ id: UInt64, expected: Int, tag: Tag) {
        drop(id)
        let reserve = expected <= Self.reserveLimit - reservedBytes && budget.take(expected)
        if reserve { reservedBytes += expected }
        assemblies[id] = TCPAssembly(expected: expected, tag: tag, reserve: reserve)
    }

    /// Takes the next bytes of the value with `id` (none when it is unknown: refused, abandoned or never begun);
    /// returns its tag and bytes once it is whole. A piece past the announced size drops the value and throws.
    func append(_ piece: ByteBuffer, to id: UInt64) throws -> (Tag, [UInt8])? {
        guard var assembly = assemblies.removeValue(forKey: id) else { return nil }
        let whole: [UInt8]?
        do { whole = try assembly.append(piece) } catch {
            release(assembly)
            throw error
        }
        guard let whole else {
            assemblies[id] = assembly
            return nil
        }
        release(assembly)
        return (assembly.tag, whole)
    }

    /// Forgets the value with `id` and what it holds.
    func drop(_ id: UInt64) {
        guard let assembly = assemblies.removeValue(forKey: id) else { return }
        release(assembly)
    }

    /// Forgets every value (the connection has closed).
    func removeAll() {
        assemblies = [:]
        budget.give(reservedBytes)
        reservedBytes = 0
    }

    private func release(_ assembly: TCPAssembly<Tag>) {
        guard assembly.reserved else { return }
        reservedBytes -= assembly.expected
        budget.give(assembly.expected)
    }
}
