import GPUBridge
@testable import GPUBridgeOpenCL
import Synchronization
import Testing

/// What the substituted driver entry points share: the real functions, which launches to report as terminated, and
/// the events of those launches.
private struct TerminationPlan: Sendable {
    var realEnqueue: UInt = 0
    var realEventInfo: UInt = 0
    var launches = 0
    var doomedLaunches: Set<Int> = []
    /// Events of doomed launches whose status has not been read yet.
    var doomedEvents: Set<UInt> = []
}

private let plan = Mutex(TerminationPlan())

/// `clEnqueueNDRangeKernel` as the driver has it; remembers the event of each launch the plan dooms. A launch enqueued
/// without an event cannot be doomed: nothing could report its status.
private let enqueueRecordingEvents: CLFunction.EnqueueNDRangeKernel = {
    queue, kernel, dimensions, offset, global, local, waitCount, waitList, event in
    let real = unsafeBitCast(plan.withLock { $0.realEnqueue }, to: CLFunction.EnqueueNDRangeKernel.self)
    let status = real(queue, kernel, dimensions, offset, global, local, waitCount, waitList, event)
    plan.withLock { p in
        p.launches += 1
        if p.doomedLaunches.contains(p.launches), let made = event?.pointee {
            p.doomedEvents.insert(UInt(bitPattern: Int(bitPattern: made)))
        }
    }
    return status
}

/// `clGetEventInfo` as the driver has it, except that a doomed event's execution status reads
/// CL_OUT_OF_RESOURCES (-5): a command the device terminated.
private let eventInfoWithTerminations: CLFunction.GetInfo = { event, parameter, size, value, returned in
    // One read per doomed launch: the driver reuses a released event's address for later events.
    let (real, doomed) = plan.withLock { p -> (UInt, Bool) in
        guard parameter == 0x11D3, let event else { return (p.realEventInfo, false) }
        return (p.realEventInfo, p.doomedEvents.remove(UInt(bitPattern: Int(bitPattern: event))) != nil)
    }
    if doomed, size >= MemoryLayout<Int32>.size, let value {
        value.storeBytes(of: Int32(-5), as: Int32.self)
        return 0
    }
    return unsafeBitCast(real, to: CLFunction.GetInfo.self)(event, parameter, size, value, returned)
}

// Needs an OpenCL device (PoCL in CI). Serialized: the substituted entry points share one plan.
@Suite(
    "OpenCL launch status", .serialized, .enabled(if: OpenCLTestEnvironment.available, OpenCLTestEnvironment.skipReason)
)
struct LaunchStatusTests {
    /// A device whose driver reports the launches numbered in `doomed` (1-based, in enqueue order) as terminated.
    private func deviceReportingTerminations(_ doomed: Set<Int>) throws -> Device {
        guard let real = OpenCLBackendProvider().discover().devices.first as? OpenCLBackend else {
            throw NoOpenCLDevice()
        }
        let library = real.library
        plan.withLock { p in
            p = TerminationPlan(
                realEnqueue: unsafeBitCast(library.enqueueNDRangeKernel, to: UInt.self),
                realEventInfo: unsafeBitCast(library.getEventInfo, to: UInt.self),
                doomedLaunches: doomed)
        }
        let substituted = OpenCLLibrary(
            copying: library, enqueueNDRangeKernel: enqueueRecordingEvents,
            getEventInfo: eventInfoWithTerminations)
        return try Device(backend: real.reopened(with: substituted))
    }

    @Test(
        "a terminated launch between armed callbacks fails; the launches around it succeed",
        arguments: [[2], [1], [40], [32, 33, 100]])
    func terminatedLaunchIsReported(doomed: [Int]) async throws {
        let device = try deviceReportingTerminations(Set(doomed))
        let kernel = try device.compile(LaunchTrackingTests.counter)
        let x = try device.makeBuffer(copying: [Int32(0)])
        let count = 100
        var completions: [Completion] = []
        for _ in 0..<count {
            completions.append(
                try device.enqueue(kernel, Launch(groups: Extent3(1), groupSize: Extent3(1)), arguments: [.buffer(x)]))
        }
        var failed: [Int] = []
        for (index, completion) in completions.enumerated() {
            do {
                try await completion.wait()
            } catch {
                failed.append(index + 1)
                #expect(error == .openCL("clEnqueueNDRangeKernel (command terminated)", -5))
            }
        }
        #expect(failed == doomed.sorted())
        #expect(plan.withLock { $0.doomedEvents.isEmpty })  // each doomed event's status was read, once
        try await device.synchronize()
        #expect(try x.toArray()[0] == Int32(count))  // the real device ran every launch
    }
}
