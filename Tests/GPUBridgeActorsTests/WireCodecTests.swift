import Foundation
import GPUBridge
@testable import GPUBridgeActors
import GPUBridgeTestSupport
import Testing

@Suite("Wire codec")
struct WireCodecTests {
    private func roundTrip<T: Codable & Equatable>(_ value: T) throws -> T {
        var writer = WireWriter()
        try WireCodec.encode(value, into: &writer)
        return try writer.bytes.withUnsafeBytes { try WireCodec.decode(T.self, from: $0) }
    }

    @Test("bulk arrays, empty or not, come back as their own type (an empty [UInt8] is not tagged as floats)")
    func bulkArrays() throws {
        #expect(try roundTrip([UInt8]()) == [])
        #expect(try roundTrip([Float]()) == [])
        #expect(try roundTrip([Int]()) == [])
        #expect(try roundTrip([Double]()) == [])
        #expect(try roundTrip(Data()) == Data())
        #expect(try roundTrip([UInt8]([1, 2, 255])) == [1, 2, 255])
        #expect(try roundTrip([Float]([1.5, -2])) == [1.5, -2])
        #expect(try roundTrip([Int]([Int.min, 0, Int.max])) == [Int.min, 0, Int.max])
        #expect(try roundTrip([Double]([.pi])) == [.pi])
        #expect(try roundTrip(Data([9, 8])) == Data([9, 8]))
        #expect(try roundTrip(["a": 1]) == ["a": 1])
    }

    @Test(
        "values over FreshArrays.hugePageBytes go into fresh arrays: every byte arrives, after what the writer held",
        arguments: [FreshArrays.hugePageBytes - 1, FreshArrays.hugePageBytes, FreshArrays.hugePageBytes * 2 + 12_345])
    func largeValues(count: Int) throws {
        let bytes = (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 131 &+ $0 >> 9) }
        var writer = WireWriter()
        writer.u32(0xDEAD_BEEF)
        try writer.lengthPrefixed { w in try WireCodec.encode(bytes, into: &w) }
        let floats = (0..<(count / 4)).map { Float($0) * 0.5 - 3 }
        try writer.lengthPrefixed { w in try WireCodec.encode(floats, into: &w) }
        #expect(writer.bytes.count == 4 + 4 + 1 + count + 4 + 1 + floats.count * 4)
        let (tag, first, second, left) = try writer.bytes.withUnsafeBytes {
            raw throws -> (UInt32, [UInt8], [Float], Int) in
            var reader = WireReader(raw)
            let tag = try reader.u32()
            let first = try WireCodec.decode([UInt8].self, from: try reader.region())
            let second = try WireCodec.decode([Float].self, from: try reader.region())
            return (tag, first, second, reader.remaining)
        }
        #expect(tag == 0xDEAD_BEEF)
        #expect(first == bytes)
        #expect(second == floats)
        #expect(left == 0)
    }

    @Test(
        "FreshArrays.make hands its closure every byte of the array, large or small, and rethrows; joining copies parts in order"
    )
    func freshArrays() throws {
        for count in [0, 1, 4095, FreshArrays.hugePageBytes + 3] {
            let made = FreshArrays.make(UInt32.self, count: count) { raw in
                #expect(raw.count == count * 4)
                for i in 0..<count { raw.storeBytes(of: UInt32(i), toByteOffset: i * 4, as: UInt32.self) }
            }
            #expect(made.count == count)
            #expect(made.enumerated().allSatisfy { UInt32($0.offset) == $0.element })
        }
        let parts: [[UInt8]] = [[1, 2], [], [3, 4, 5], [6]]
        #expect(
            FreshArrays.joining(count: 6) { copy in for p in parts { p.withUnsafeBytes(copy) } } == [1, 2, 3, 4, 5, 6])
        #expect(FreshArrays.joining(count: 4) { copy in for p in parts { p.withUnsafeBytes(copy) } } == [1, 2, 3, 4])
        #expect(
            FreshArrays.joining(count: 8) { copy in for p in parts { p.withUnsafeBytes(copy) } } == [
                1, 2, 3, 4, 5, 6, 0, 0,
            ])
        struct Stop: Error {}
        #expect(throws: Stop.self) { _ = try FreshArrays.make(UInt8.self, count: 16) { _ in throw Stop() } }
    }

    @Test("a value read as another bulk type is refused with the tag named")
    func mismatch() throws {
        var writer = WireWriter()
        try WireCodec.encode([UInt8](), into: &writer)
        #expect(writer.bytes == [2])
        let error = writer.bytes.withUnsafeBytes { raw -> GPUBridgeError? in
            do { _ = try WireCodec.decode([Float].self, from: raw); return nil } catch {
                return error as? GPUBridgeError
            }
        }
        guard case let .invalidArgument(_, value, _)? = error else {
            Issue.record("\(String(describing: error))"); return
        }
        #expect(value.contains("bytes"))
    }

    @Test("a length-prefixed region longer than its limit throws, names the size, and leaves the writer as it was")
    func lengthPrefixLimit() throws {
        var writer = WireWriter()
        try writer.string("ok")
        let before = writer.bytes
        let error = bridgeError {
            try writer.lengthPrefixed(maxLength: 8) { w in try w.blob(Array(repeating: 1, count: 5)) }
        }
        #expect(
            error
                == .invalidArgument(
                    name: "length-prefixed wire region", value: "9 bytes",
                    limit: "at most 8 bytes (a 4-byte length)"))
        #expect(writer.bytes == before)
        // At the limit it is written, and reads back.
        try writer.lengthPrefixed(maxLength: 8) { w in try w.blob([1, 2, 3, 4]) }
        #expect(writer.bytes.count == before.count + 12)
        try writer.bytes.withUnsafeBytes { raw in
            var reader = WireReader(raw)
            #expect(try reader.string() == "ok")
            let region = try reader.region()
            #expect(region.count == 8)
            #expect(reader.remaining == 0)
        }
        #expect(try WireWriter.checkedU32(Int(UInt32.max), name: "n") == UInt32.max)
        #expect(
            bridgeError { try WireWriter.checkedU32(Int(UInt32.max) + 1, name: "n") }
                == .invalidArgument(
                    name: "n", value: "\(Int(UInt32.max) + 1)",
                    limit: "0...\(UInt32.max) (a 4-byte wire field)"))
    }

    @Test("a reader whose offset lies outside its bytes throws instead of reading there")
    func readerOffset() {
        let bytes: [UInt8] = [1, 2, 3, 4]
        bytes.withUnsafeBytes { raw in
            for offset in [-1, 5, Int.min] {
                var reader = WireReader(raw, offset: offset)
                #expect(throws: GPUBridgeError.self) { try reader.u8() }
                #expect(throws: GPUBridgeError.self) { _ = try reader.take(0) }
            }
        }
    }
}
