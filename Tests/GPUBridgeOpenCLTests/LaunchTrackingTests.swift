import GPUBridge
import GPUBridgeOpenCL
import Testing

// Needs an OpenCL device (PoCL in CI).
@Suite("OpenCL launch completions", .enabled(if: OpenCLTestEnvironment.available, OpenCLTestEnvironment.skipReason))
struct LaunchTrackingTests {
    static let counter = KernelSource(
        name: "count_up", language: .openCLC,
        text: """
            __kernel void count_up(__global int* x) { if (get_global_id(0) == 0) x[0] += 1; }
            """, entryPoint: "count_up")

    @Test(
        "every launch of a burst completes, in order, including the ones after the last armed callback",
        arguments: [1, 31, 32, 33, 40, 100, 1000])
    func burst(count: Int) async throws {
        let (device, _) = try makeOpenCLDevice()
        let kernel = try device.compile(Self.counter)
        let x = try device.makeBuffer(copying: [Int32(0)])
        var completions: [Completion] = []
        for _ in 0..<count {
            completions.append(
                try device.enqueue(kernel, Launch(groups: Extent3(1), groupSize: Extent3(1)), arguments: [.buffer(x)]))
        }
        // Waiting on each in turn: a launch between armed callbacks is reported when a later one ends.
        var timed = 0
        for completion in completions {
            if let timings = try await completion.wait(), timings.start != nil, timings.end != nil { timed += 1 }
        }
        #expect(completions.allSatisfy { $0.isComplete })
        let total = try x.toArray()[0]
        #expect(total == Int32(count))  // the queue ran them all, one after another
        #expect(timed == count)  // every launch reports its own event's device times (PoCL's queue profiles)
    }

    @Test("a launch awaited on its own reports its device timings")
    func loneLaunch() async throws {
        let (device, _) = try makeOpenCLDevice()
        let kernel = try device.compile(Self.counter)
        let x = try device.makeBuffer(copying: [Int32(0)])
        for _ in 0..<5 {
            let result = try await device.launch(
                kernel, Launch(groups: Extent3(1), groupSize: Extent3(1)), arguments: [.buffer(x)])
            let timings = try #require(result.timings)
            let start = try #require(timings.start), end = try #require(timings.end)
            #expect(end >= start)
        }
    }

    @Test("synchronize reports every launch enqueued before it")
    func synchronizeCompletesLaunches() async throws {
        let (device, _) = try makeOpenCLDevice()
        let kernel = try device.compile(Self.counter)
        let x = try device.makeBuffer(copying: [Int32(0)])
        let completions = try (0..<50).map { _ in
            try device.enqueue(kernel, Launch(groups: Extent3(1), groupSize: Extent3(1)), arguments: [.buffer(x)])
        }
        try await device.synchronize()
        #expect(completions.allSatisfy { $0.isComplete })
        let total = try x.toArray()[0]
        #expect(total == 50)
    }
}
