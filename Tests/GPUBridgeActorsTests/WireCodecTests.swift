import Foundation
import GPUBridge
import GPUBridgeActors
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

    @Test("a value read as another bulk type is refused with the tag named")
    func mismatch() throws {
        var writer = WireWriter()
        try WireCodec.encode([UInt8](), into: &writer)
        #expect(writer.bytes == [2])
        let error = writer.bytes.withUnsafeBytes { raw -> GPUBridgeError? in
            do { _ = try WireCodec.decode([Float].self, from: raw); return nil } catch { return error as? GPUBridgeError }
        }
        guard case let .invalidArgument(_, value, _)? = error else { Issue.record("\(String(describing: error))"); return }
        #expect(value.contains("bytes"))
    }
}
