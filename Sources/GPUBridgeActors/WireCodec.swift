import Foundation
import GPUBridge

/// The byte format of actor calls: how a `Codable` value, an invocation and a reply become bytes and back.
///
/// A value is one tag byte and a body. Bulk values travel as their raw little-endian bytes (a `[Float]` of 64 MiB is
/// one `memcpy` each way, never JSON); everything else is JSON. All integers in frames are little-endian.
///
/// | tag | type          | body                          |
/// |-----|---------------|-------------------------------|
/// | 0   | any `Codable` | JSON                          |
/// | 1   | `[Float]`     | raw float32                   |
/// | 2   | `[UInt8]`     | the bytes                     |
/// | 3   | `Data`        | the bytes                     |
/// | 4   | `[Int]`       | raw int64                     |
/// | 5   | `[Double]`    | raw float64                   |
public enum WireCodec {
    enum Tag: UInt8 {
        case json = 0, floats = 1, bytes = 2, data = 3, ints = 4, doubles = 5
    }

    /// Appends `value` (tag and body) to `writer`.
    public static func encode<T: Encodable>(_ value: T, into writer: inout WireWriter) throws {
        // Chosen by the static type as well as the value: an empty array casts to every array type (`[UInt8]()
        // as? [Float]` succeeds), so a cast alone would tag an empty `[UInt8]` as floats.
        if T.self == [Float].self, let v = value as? [Float] {
            writer.u8(Tag.floats.rawValue)
            writer.raw(v)
        } else if T.self == [UInt8].self, let v = value as? [UInt8] {
            writer.u8(Tag.bytes.rawValue)
            writer.raw(v)
        } else if T.self == Data.self, let v = value as? Data {
            writer.u8(Tag.data.rawValue)
            v.withUnsafeBytes { writer.append($0) }
        } else if T.self == [Int].self, let v = value as? [Int] {
            writer.u8(Tag.ints.rawValue)
            writer.raw(v.map { Int64($0) })
        } else if T.self == [Double].self, let v = value as? [Double] {
            writer.u8(Tag.doubles.rawValue)
            writer.raw(v)
        } else {
            writer.u8(Tag.json.rawValue)
            let json = try JSONEncoder().encode(value)
            json.withUnsafeBytes { writer.append($0) }
        }
    }

    /// The value of type `T` encoded in `bytes` (as written by `encode`).
    public static func decode<T: Decodable>(_ type: T.Type, from bytes: UnsafeRawBufferPointer) throws -> T {
        guard let first = bytes.first, let tag = Tag(rawValue: first) else {
            throw GPUBridgeError.invalidArgument(
                name: "encoded \(T.self)", value: bytes.isEmpty ? "empty" : "tag \(bytes[0])",
                limit: "a wire value tag 0...5")
        }
        let body = UnsafeRawBufferPointer(rebasing: bytes[1...])
        func mismatch() -> GPUBridgeError {
            .invalidArgument(
                name: "encoded value", value: "tag \(tag) (\(body.count) bytes)", limit: "a value of type \(T.self)")
        }
        switch tag {
        case .json:
            return try JSONDecoder().decode(T.self, from: Data(body))
        case .floats:
            guard T.self == [Float].self else { throw mismatch() }
            return try rawArray(Float.self, body) as! T  // T is [Float]: checked on the line above
        case .bytes:
            guard T.self == [UInt8].self else { throw mismatch() }
            return try rawArray(UInt8.self, body) as! T  // T is [UInt8]
        case .data:
            guard T.self == Data.self else { throw mismatch() }
            return Data(body) as! T  // T is Data
        case .ints:
            guard T.self == [Int].self else { throw mismatch() }
            return try rawArray(Int64.self, body).map { Int($0) } as! T  // T is [Int]
        case .doubles:
            guard T.self == [Double].self else { throw mismatch() }
            return try rawArray(Double.self, body) as! T  // T is [Double]
        }
    }

    static func rawArray<E: BitwiseCopyable>(_: E.Type, _ body: UnsafeRawBufferPointer) throws -> [E] {
        let stride = MemoryLayout<E>.stride
        guard body.count % stride == 0 else {
            throw GPUBridgeError.sizeMismatch(
                name: "raw \(E.self) array bytes (a multiple of \(stride))",
                expected: body.count / stride * stride, actual: body.count)
        }
        return FreshArrays.make(E.self, count: body.count / stride) { out in
            if let base = body.baseAddress, let to = out.baseAddress {
                to.copyMemory(from: base, byteCount: body.count)
            }
        }
    }
}

/// Appends little-endian frames to a byte array.
public struct WireWriter: Sendable {
    public private(set) var bytes: [UInt8] = []

    public init(capacity: Int = 256) { bytes.reserveCapacity(capacity) }

    public mutating func u8(_ v: UInt8) { bytes.append(v) }
    public mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    public mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    public mutating func i64(_ v: Int64) { u64(UInt64(bitPattern: v)) }
    /// Appends `raw`. A large region that does not fit the capacity goes into a fresh array made for it
    /// (`FreshArrays`), the bytes before it copied in front.
    public mutating func append(_ raw: UnsafeRawBufferPointer) {
        guard raw.count >= FreshArrays.hugePageBytes, bytes.capacity - bytes.count < raw.count else {
            bytes.append(contentsOf: raw)
            return
        }
        let before = bytes
        bytes = FreshArrays.make(UInt8.self, count: before.count + raw.count) { out in
            before.withUnsafeBytes {
                if let b = $0.baseAddress { out.baseAddress!.copyMemory(from: b, byteCount: $0.count) }
            }
            (out.baseAddress! + before.count).copyMemory(from: raw.baseAddress!, byteCount: raw.count)
        }
    }
    mutating func raw<E: BitwiseCopyable>(_ values: [E]) { values.withUnsafeBytes { append($0) } }

    /// A 4-byte length, then the bytes `body` appends; returns what `body` returns. Throws (and leaves the writer as
    /// it was) when `body` appends more than `UInt32.max` bytes, which a 4-byte length cannot say.
    public mutating func lengthPrefixed<R>(_ body: (inout WireWriter) throws -> R) throws -> R {
        try lengthPrefixed(maxLength: Int(UInt32.max), body)
    }

    /// `lengthPrefixed` with a lower bound than the field's width (tests reach the refusal without 4 GiB).
    mutating func lengthPrefixed<R>(maxLength: Int, _ body: (inout WireWriter) throws -> R) throws -> R {
        let at = bytes.count
        u32(0)
        let result: R
        do { result = try body(&self) } catch {
            bytes.removeSubrange(at...)
            throw error
        }
        let written = bytes.count - at - 4
        guard written <= maxLength, let length = UInt32(exactly: written) else {
            bytes.removeSubrange(at...)
            let limit = min(maxLength, Int(UInt32.max))
            throw GPUBridgeError.invalidArgument(
                name: "length-prefixed wire region", value: "\(written) bytes",
                limit: "at most \(limit) bytes (a 4-byte length)")
        }
        withUnsafeBytes(of: length.littleEndian) { l in for i in 0..<4 { bytes[at + i] = l[i] } }
        return result
    }

    public mutating func string(_ s: String) throws { try lengthPrefixed { w in w.bytes.append(contentsOf: s.utf8) } }
    public mutating func blob(_ b: [UInt8]) throws { try lengthPrefixed { w in w.bytes.append(contentsOf: b) } }

    /// `value` as a 4-byte wire field, or an error naming `name`, the value and the limit when it does not fit.
    public static func checkedU32(_ value: Int, name: String) throws(GPUBridgeError) -> UInt32 {
        guard let v = UInt32(exactly: value) else {
            throw .invalidArgument(name: name, value: "\(value)", limit: "0...\(UInt32.max) (a 4-byte wire field)")
        }
        return v
    }
}

/// Reads little-endian frames; every read checks the bounds and throws `outOfBounds` on a truncated frame.
public struct WireReader {
    public let bytes: UnsafeRawBufferPointer
    public private(set) var offset = 0

    public init(_ bytes: UnsafeRawBufferPointer, offset: Int = 0) {
        self.bytes = bytes
        self.offset = offset
    }

    /// Bytes left to read (0 when the offset lies outside the bytes).
    public var remaining: Int { (0...bytes.count).contains(offset) ? bytes.count - offset : 0 }

    mutating func take(_ n: Int) throws -> UnsafeRawBufferPointer {
        guard n >= 0, (0...bytes.count).contains(offset), n <= remaining else {
            throw GPUBridgeError.outOfBounds(name: "wire frame", offset: offset, length: n, limit: bytes.count)
        }
        defer { offset += n }
        return UnsafeRawBufferPointer(rebasing: bytes[offset..<offset + n])
    }

    public mutating func u8() throws -> UInt8 { try take(1)[0] }
    public mutating func u32() throws -> UInt32 { UInt32(littleEndian: try take(4).loadUnaligned(as: UInt32.self)) }
    public mutating func u64() throws -> UInt64 { UInt64(littleEndian: try take(8).loadUnaligned(as: UInt64.self)) }
    public mutating func i64() throws -> Int64 { Int64(bitPattern: try u64()) }
    /// A length-prefixed region, without copying.
    public mutating func region() throws -> UnsafeRawBufferPointer { try take(Int(try u32())) }
    public mutating func string() throws -> String { String(decoding: try region(), as: UTF8.self) }
    public mutating func blob() throws -> [UInt8] { [UInt8](try region()) }
}
