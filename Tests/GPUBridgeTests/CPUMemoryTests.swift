import Dispatch
import Glibc
import Testing

@testable import GPUBridge

/// Deterministic bytes (never all equal, so a misplaced slice shows), written once and shared by the cases.
// Written once when first used and only read afterwards.
nonisolated(unsafe) private let patternBytes: UnsafeMutableRawBufferPointer = {
    let count = 5 * CPUMemory.parallelBytes
    let bytes = UnsafeMutableRawBufferPointer.allocate(byteCount: count, alignment: 64)
    var state: UInt64 = 0x9E37_79B9_7F4A_7C15
    bytes.withMemoryRebound(to: UInt64.self) { words in
        for i in words.indices {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            words[i] = state
        }
    }
    return bytes
}()

/// Whether `count` bytes at `a` and `b` are equal (memcmp: the test runs unoptimised, and byte loops would be slow).
private func same(_ a: UnsafeRawPointer, _ b: UnsafeRawPointer, _ count: Int) -> Bool { memcmp(a, b, count) == 0 }

@Suite("CPU backend memory path: mapped allocations, copies and fills over all cores")
struct CPUMemoryTests {
    /// Sizes around the thresholds, most not multiples of a page, a cache line or the pattern.
    static let sizes = [
        1, 63, 4097, CPUMemory.parallelBytes - 1, CPUMemory.parallelBytes, CPUMemory.parallelBytes + 13,
        3 * CPUMemory.parallelBytes + 4093,
    ]

    @Test("a large allocation is mapped, zeroed, 64-byte aligned, usable to its last byte, and freed")
    func mappedAllocation() throws {
        let sizes = [CPUMemory.mappedBytes - 1, CPUMemory.mappedBytes, CPUMemory.mappedBytes + 4097, 9 << 20]
        let zeros = UnsafeMutableRawPointer(calloc(sizes.max()!, 1)!)
        defer { Glibc.free(zeros) }
        for size in sizes {
            let pointer = try CPUMemory.allocate(byteCount: size, cores: 3).get()
            #expect(UInt(bitPattern: pointer) % UInt(CPUBackend.alignment) == 0)
            if size >= CPUMemory.mappedBytes {
                // Every page is resident before anything touches it (faulted in by the allocation), and reads zero.
                let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))
                let pages = (size + pageSize - 1) / pageSize
                var resident = [UInt8](repeating: 0, count: pages)
                #expect(mincore(pointer, size, &resident) == 0)
                let missing = resident.filter { $0 & 1 == 0 }.count
                #expect(missing == 0, "size \(size): \(missing) of \(pages) pages not resident after allocation")
                #expect(same(pointer, zeros, size), "size \(size)")
            }
            memcpy(pointer, patternBytes.baseAddress!, size)
            #expect(same(pointer, patternBytes.baseAddress!, size), "size \(size)")
            CPUMemory.free(pointer, byteCount: size)
        }
    }

    @Test("an allocation the host cannot hold is refused with ENOMEM, not a crash")
    func impossibleAllocation() {
        // More than the address space the kernel hands a process (2^47 bytes on x86-64 and arm64 with 4-level tables).
        let result = CPUMemory.allocate(byteCount: 1 << 56, cores: 2)
        guard case let .failure(status) = result else {
            Issue.record("allocating 2^56 bytes succeeded")
            return
        }
        #expect(status.code == ENOMEM)
    }

    @Test("split copies equal memcpy for every size, offset and core count", arguments: [1, 2, 3, 8])
    func copies(cores: Int) {
        let source = patternBytes.baseAddress!
        for size in Self.sizes {
            for offset in [0, 1, 61] {
                let destination = UnsafeMutableRawBufferPointer.allocate(byteCount: size + offset + 1, alignment: 64)
                defer { destination.deallocate() }
                memset(destination.baseAddress!, 0xA5, destination.count)
                CPUMemory.copy(to: destination.baseAddress! + offset, from: source + offset, count: size, cores: cores)
                #expect(same(destination.baseAddress! + offset, source + offset, size), "size \(size) offset \(offset)")
                // Nothing outside the destination range was written.
                #expect(destination[size + offset] == 0xA5 && (offset == 0 || destination[offset - 1] == 0xA5))
            }
        }
    }

    @Test("moves within one allocation: overlapping ranges stay correct, disjoint ones are split", arguments: [1, 4])
    func moves(cores: Int) {
        let size = 2 * CPUMemory.parallelBytes + 77
        for shift in [-4097, -1, 1, 4097, size] {
            let count = size + abs(shift)
            let memory = UnsafeMutableRawBufferPointer.allocate(byteCount: count, alignment: 64)
            defer { memory.deallocate() }
            memcpy(memory.baseAddress!, patternBytes.baseAddress!, count)
            let from = shift < 0 ? -shift : 0, to = shift < 0 ? 0 : shift
            CPUMemory.move(to: memory.baseAddress! + to, from: memory.baseAddress! + from, count: size, cores: cores)
            #expect(same(memory.baseAddress! + to, patternBytes.baseAddress! + from, size), "shift \(shift)")
        }
    }

    @Test("fills repeat 1-, 2-, 4- and 8-byte patterns exactly, in range only", arguments: [1, 2, 5])
    func fills(cores: Int) {
        let patterns: [[UInt8]] = [[0x5A], [0x11, 0x11], [1, 2], [9, 8, 7, 6], [1, 2, 3, 4, 5, 6, 7, 8]]
        let largest = Self.sizes.max()!
        let expected = UnsafeMutableRawBufferPointer.allocate(byteCount: largest, alignment: 64)
        defer { expected.deallocate() }
        for pattern in patterns {
            // The expected bytes: one 4 KiB block written byte by byte, then copied block after block.
            for i in 0..<4096 { expected[i] = pattern[i % pattern.count] }
            for start in stride(from: 4096, to: largest, by: 4096) {
                memcpy(expected.baseAddress! + start, expected.baseAddress!, min(4096, largest - start))
            }
            for size in Self.sizes.map({ $0 / pattern.count * pattern.count }) where size > 0 {
                let memory = UnsafeMutableRawBufferPointer.allocate(byteCount: size + 16, alignment: 64)
                defer { memory.deallocate() }
                memset(memory.baseAddress!, 0xC3, memory.count)
                CPUMemory.fill(memory.baseAddress! + 8, count: size, pattern: pattern, cores: cores)
                #expect(same(memory.baseAddress! + 8, expected.baseAddress!, size), "pattern \(pattern) size \(size)")
                #expect(memory[7] == 0xC3 && memory[size + 8] == 0xC3, "pattern \(pattern) size \(size) spilled")
            }
        }
    }

    @Test("a CPU device round-trips large buffers through the split paths, including async copies from arrays")
    func deviceRoundTrip() async throws {
        let device = try Device(backend: CPUBackend(cores: 3))
        let count = CPUMemory.parallelBytes / 4 * 3 + 5
        let values = (0..<count).map { Float($0 % 1000) - 500 }
        let buffer = try device.makeBuffer(of: Float.self, count: count)
        try await buffer.raw.enqueueFill(pattern: [0xFF]).wait()
        try await buffer.enqueueCopy(from: values).wait()
        #expect(try buffer.toArray() == values)
        // While a launch holds the queue, a copy from an array is staged and still lands after it, in order.
        let gate = DispatchSemaphoreBox()
        let blocker = try device.compile(
            KernelSource(name: "wait_for_gate", scheduling: .perGroup) { _ in gate.wait() })
        let blocked = try device.enqueue(blocker, Launch(groups: Extent3(1), groupSize: Extent3(1)), arguments: [])
        // A fill queued behind the blocked launch, then a copy from an array: the copy must land after the fill.
        let fill = try buffer.raw.enqueueFill(pattern: [0])
        let reversed = Array(values.reversed())
        let copy = try buffer.enqueueCopy(from: reversed)
        gate.signal()
        try await blocked.wait()
        try await fill.wait()
        try await copy.wait()
        #expect(try buffer.toArray() == reversed)
        let other = try device.makeBuffer(of: Float.self, count: count)
        try await other.raw.enqueueCopy(from: buffer.raw).wait()
        #expect(try other.toArray() == reversed)
    }
}

/// A one-shot gate a kernel waits on.
private final class DispatchSemaphoreBox: Sendable {
    private let semaphore = DispatchSemaphore(value: 0)
    func wait() { semaphore.wait() }
    func signal() { semaphore.signal() }
}
