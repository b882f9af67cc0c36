import Glibc
import Synchronization
import Testing

@testable import GPUBridge

/// How the CPU backend splits a launch into chunks of groups, and which launches run on the calling thread, for each
/// `SwiftKernel.Scheduling`.
@Suite("CPU backend scheduling: chunks per launch and the calling thread")
struct CPUSchedulingTests {
    /// What one launch did: the group ranges its chunks were given, and whether every chunk ran on the thread that
    /// enqueued it. (A split launch's chunks may also land on that thread once it is back in Dispatch's pool, so only
    /// "every chunk there" tells an inline launch apart.)
    struct Record {
        var ranges: [Range<Int>]
        var allOnCallingThread: Bool
    }

    /// A CPU device with five cores: up to twenty chunks per split launch.
    static func device() throws -> Device { try Device(backend: CPUBackend(cores: 5)) }

    /// Launches a kernel of `scheduling` over 103 groups of `groupSize`, with buffer arguments of `bufferBytes` in all
    /// (two buffers), on an idle queue, and records its chunks.
    static func launch(_ scheduling: SwiftKernel.Scheduling, groupSize: Int, bufferBytes: Int) async throws -> Record {
        let device = try device()
        let seen = Mutex<(ranges: [Range<Int>], threads: [pthread_t])>(([], []))
        let kernel = try device.compile(
            KernelSource(name: "record_chunks", scheduling: scheduling) { context in
                seen.withLock {
                    $0.ranges.append(context.groups)
                    $0.threads.append(pthread_self())
                }
            })
        let first = try device.makeRawBuffer(byteCount: bufferBytes / 2)
        let second = try device.makeRawBuffer(byteCount: bufferBytes - bufferBytes / 2)
        let launch = Launch(groups: Extent3(103), groupSize: Extent3(groupSize))
        // No suspension between reading the thread and enqueueing: both happen on this thread.
        let caller = pthread_self()
        let completion = try device.enqueue(kernel, launch, arguments: [.buffer(first), .buffer(second)])
        try await completion.wait()
        let (ranges, threads) = seen.withLock { $0 }
        return Record(
            ranges: ranges.sorted { $0.lowerBound < $1.lowerBound },
            allOnCallingThread: !threads.isEmpty && threads.allSatisfy { pthread_equal($0, caller) != 0 })
    }

    @Test(
        "large launches are split, and the chunks cover every group once",
        arguments: [
            // perCore: one chunk per core.
            (SwiftKernel.Scheduling.perCore, 512, 64, 5),
            // perGroup: up to four chunks per core, however small the launch.
            (.perGroup, 512, 64, 20), (.perGroup, 4, 64, 20),
            // perByte: split once the buffers hold more than inlinePassBytes, however few the work-items.
            (.perByte, 4, CPUBackend.inlinePassBytes + 64, 20),
            // perItem: split by work-items.
            (.perItem, 512, 64, 20),
            // threaded: never split; the body threads itself.
            (.threaded, 512, 64, 1),
        ])
    func split(scheduling: SwiftKernel.Scheduling, groupSize: Int, bufferBytes: Int, chunks: Int) async throws {
        let record = try await Self.launch(scheduling, groupSize: groupSize, bufferBytes: bufferBytes)
        #expect(record.ranges.count == chunks)
        #expect(record.ranges.flatMap { Array($0) } == Array(0..<103))
    }

    @Test(
        "small launches, and threaded ones of any size, run in one chunk on the calling thread when the queue is idle",
        arguments: [
            // perCore, threaded and perItem: few work-items.
            (SwiftKernel.Scheduling.perCore, 4, 64), (.threaded, 4, 64), (.perItem, 4, 64),
            // threaded: many work-items too (the body threads itself; no thread is woken for it).
            (.threaded, 512, 64),
            // perByte: buffers of at most inlinePassBytes, however many work-items.
            (.perByte, 512, CPUBackend.inlinePassBytes),
        ])
    func inline(scheduling: SwiftKernel.Scheduling, groupSize: Int, bufferBytes: Int) async throws {
        let record = try await Self.launch(scheduling, groupSize: groupSize, bufferBytes: bufferBytes)
        #expect(record.ranges == [0..<103])
        #expect(record.allOnCallingThread)
    }

    @Test("the built-in kernels declare the scheduling their cost follows")
    func builtinScheduling() throws {
        let catalog = KernelCatalog()
        // matmul: one call over the whole product where the BLAS threads each call itself, else one per core.
        let threadedBLAS =
            switch BLASLibrary.shared {
            case let .success(library): (library.threadsPerCall ?? 1) > 1
            case .failure: false
            }
        #expect(try catalog.definition("matmul").swift?.scheduling == (threadedBLAS ? .threaded : .perCore))
        for id in ["sum_partial", "dot_partial", "softmax_rows", "topk_select", "histogram"] {
            #expect(try catalog.definition(id).swift?.scheduling == .perByte, "\(id)")
        }
    }
}
