import GPUBridge
import Synchronization
import Testing

@Suite("Device checks on the CPU backend")
struct DeviceChecksTests {
    /// What each check must report on the CPU backend: the CUDA-only ones and the compile-error check (the CPU
    /// backend compiles nothing at run time) do not apply; every other one must pass.
    static let expected: [DeviceChecks.Name: SelfTest.Check.Status] = [
        .views: .passed, .asyncCopies: .passed, .concurrentLaunches: .passed, .compileError: .notApplicable,
        .outOfMemory: .passed, .largeSharedMemory: .notApplicable, .misalignedView: .passed,
        .deviceLost: .notApplicable,
    ]

    @Test("every check runs in order on the CPU device and reports the expected status with numbers")
    func allChecks() async throws {
        let device = try makeCPUDevice()
        let checks = await DeviceChecks.run(on: device, includeDestructive: true)
        #expect(checks.map(\.name) == DeviceChecks.Name.allCases.map(\.rawValue))
        for check in checks {
            let name = try #require(DeviceChecks.Name(rawValue: check.name))
            #expect(check.status == Self.expected[name], "\(check.name): \(check.detail)")
            #expect(!check.detail.isEmpty)
        }
        let byName = Dictionary(uniqueKeysWithValues: checks.map { ($0.name, $0) })
        #expect(byName["concurrent-launches"]?.detail.contains("1000 launches") == true)
        #expect(byName["large-shared-memory"]?.detail.contains("CUDA only") == true)
        #expect(byName["device-lost"]?.detail.contains("CUDA only") == true)
        #expect(byName["compile-error"]?.detail.contains("swift") == true)
        #expect(device.pool.statistics.bytesInUse == 0)
    }

    @Test("progress sees each check as it ends, and only the selected checks run")
    func selection() async throws {
        let device = try makeCPUDevice()
        let seen = Recorder()
        let checks = await DeviceChecks.run(on: device, only: [.outOfMemory, .views]) { seen.append($0.name) }
        #expect(checks.map(\.name) == ["views", "out-of-memory"])
        #expect(seen.names == ["views", "out-of-memory"])
        #expect(checks.allSatisfy { $0.status == .passed })
    }

    @Test("device-lost is not run unless destructive checks are asked for, and says why")
    func destructiveOptIn() async throws {
        let device = try makeCPUDevice()
        let checks = await DeviceChecks.run(on: device, only: [.deviceLost])
        #expect(checks.count == 1)
        #expect(checks.first?.status == .notApplicable)
        #expect(checks.first?.detail.contains("--destructive") == true)
    }

    @Test("the out-of-memory check does not ask the CPU backend for twice the host memory when the pool would allow it")
    func outOfMemoryGuard() async throws {
        let device = try makeCPUDevice(poolLimit: Int.max)
        let before = device.counters.allocations
        let checks = await DeviceChecks.run(on: device, only: [.outOfMemory])
        #expect(checks.first?.status == .notApplicable)
        #expect(checks.first?.detail.contains("posix_memalign") == true)
        #expect(device.counters.allocations == before)
    }
}

/// Collects check names reported from the `progress` callback.
private final class Recorder: Sendable {
    private let storage = Mutex<[String]>([])
    func append(_ name: String) { storage.withLock { $0.append(name) } }
    var names: [String] { storage.withLock { $0 } }
}
