import GPUBridge
import Testing

@Suite("Host <-> device round trips")
struct RoundTripTests {
    @Test("typed buffer, whole")
    func typedWhole() throws {
        let device = try makeCPUDevice()
        let values = (0..<1000).map { Int64($0 * 3 - 7) }
        let buffer = try device.makeBuffer(copying: values)
        #expect(buffer.count == 1000)
        #expect(buffer.byteCount == 8000)
        #expect(try buffer.toArray() == values)
    }

    @Test("typed buffer with non-zero source and destination offsets")
    func typedOffsets() throws {
        let device = try makeCPUDevice()
        let buffer = try device.makeBuffer(of: Float.self, count: 100)
        try buffer.copy(from: [Float](repeating: 0, count: 100))
        let source = (0..<50).map { Float($0) + 0.5 }
        try buffer.copy(from: source, sourceOffset: 10, toOffset: 30, count: 20)  // source[10..<30] -> buffer[30..<50]
        var out = [Float](repeating: -1, count: 40)
        try buffer.copy(to: &out, destinationOffset: 5, fromOffset: 25, count: 30)  // buffer[25..<55] -> out[5..<35]
        #expect(out[0..<5].allSatisfy { $0 == -1 })
        #expect(out[5..<10].allSatisfy { $0 == 0 })  // buffer[25..<30] untouched zeros
        #expect(Array(out[10..<30]) == Array(source[10..<30]))  // buffer[30..<50]
        #expect(out[30..<35].allSatisfy { $0 == 0 })
        #expect(out[35..<40].allSatisfy { $0 == -1 })
    }

    @Test("untyped buffer with offsets")
    func untyped() throws {
        let device = try makeCPUDevice()
        let raw = try device.makeRawBuffer(byteCount: 256)
        let bytes = (0..<200).map { UInt8($0) }
        try bytes.withUnsafeBytes { try raw.copy(from: UnsafeRawBufferPointer(rebasing: $0[100..<200]), toOffset: 17) }
        var back = [UInt8](repeating: 0, count: 100)
        try back.withUnsafeMutableBytes { try raw.copy(to: $0, fromOffset: 17) }
        #expect(back == Array(bytes[100..<200]))
        #expect(raw.handle != 0)
        #expect(raw.address == raw.handle)  // a whole block at the start of its segment
    }

    @Test("through views, typed and untyped")
    func views() throws {
        let device = try makeCPUDevice()
        let buffer = try device.makeBuffer(copying: [UInt32](repeating: 9, count: 64))
        let view = try buffer.view(offset: 16, count: 32)
        #expect(view.count == 32)
        #expect(view.raw.isView)
        #expect(view.raw.address == buffer.raw.address + 64)
        try view.copy(from: (0..<10).map { UInt32($0) }, toOffset: 2)
        let inner = try view.view(offset: 2, count: 10)
        #expect(try inner.toArray() == (0..<10).map { UInt32($0) })
        let all = try buffer.toArray()
        #expect(all[0..<18].allSatisfy { $0 == 9 })
        #expect(Array(all[18..<28]) == (0..<10).map { UInt32($0) })
        #expect(all[28...].allSatisfy { $0 == 9 })

        let raw = try buffer.raw.view(offset: 4, byteCount: 8)
        var two = [UInt32](repeating: 0, count: 2)
        try two.withUnsafeMutableBytes { try raw.copy(to: $0) }
        #expect(two == [9, 9])
    }

    @Test("a view keeps its parent's memory alive")
    func viewKeepsParentAlive() throws {
        let device = try makeCPUDevice()
        var view: Buffer<Int32>?
        do {
            let parent = try device.makeBuffer(copying: (0..<1024).map { Int32($0) })
            view = try parent.view(offset: 512, count: 512)
        }
        #expect(device.pool.statistics.blocksInUse == 1)
        #expect(try view?.toArray().first == 512)
        view = nil
        #expect(device.pool.statistics.blocksInUse == 0)
        #expect(device.pool.statistics.bytesInUse == 0)
    }

    @Test("async copies through host buffers, device-to-device copy and fill")
    func asyncCopies() async throws {
        let device = try makeCPUDevice()
        let host = try device.makeHostBuffer(byteCount: 400)
        try host.write((0..<100).map { Float($0) })
        let a = try device.makeBuffer(of: Float.self, count: 100)
        try await a.fill(-1)
        try await a.copy(from: host, hostOffset: 10, toOffset: 20, count: 50)
        let b = try device.makeBuffer(of: Float.self, count: 100)
        try await b.fill(2.5)
        try await b.copy(from: a, sourceOffset: 20, toOffset: 0, count: 50)
        let back = try device.makeHostBuffer(byteCount: 400)
        try await b.copy(to: back, hostOffset: 1, fromOffset: 0, count: 60)
        let out = try back.read(Float.self, count: 60, at: 1)
        #expect(Array(out[0..<50]) == (10..<60).map { Float($0) })
        #expect(out[50..<60].allSatisfy { $0 == 2.5 })
        #expect(try a.toArray(offset: 0, count: 20).allSatisfy { $0 == -1 })
    }

    @Test("an array handed to an async copy may be dropped at once")
    func asyncFromArray() async throws {
        let device = try makeCPUDevice()
        let buffer = try device.makeBuffer(of: Int16.self, count: 10)
        var completion: Completion?
        do {
            let values = (0..<10).map { Int16($0 * 100) }
            completion = try buffer.enqueueCopy(from: values)
        }
        try await completion?.wait()
        #expect(try buffer.toArray() == (0..<10).map { Int16($0 * 100) })
    }
}
