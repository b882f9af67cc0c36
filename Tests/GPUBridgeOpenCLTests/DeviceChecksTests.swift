import GPUBridge
import GPUBridgeOpenCL
import Testing

@Suite("Device checks on OpenCL", .enabled(if: OpenCLTestEnvironment.available, OpenCLTestEnvironment.skipReason))
struct DeviceChecksTests {
    /// What each check must report on an OpenCL device: the CUDA-only ones do not apply, every other one passes (the
    /// misaligned view is refused when it is made, since OpenCL's view alignment is more than 2 bytes, or by enqueue).
    static let expected: [DeviceChecks.Name: SelfTest.Check.Status] = [
        .views: .passed, .asyncCopies: .passed, .concurrentLaunches: .passed, .compileError: .passed,
        .outOfMemory: .passed, .largeSharedMemory: .notApplicable, .misalignedView: .passed,
        .deviceLost: .notApplicable,
    ]

    @Test("every check runs on the OpenCL device and reports the expected status")
    func allChecks() async throws {
        let (device, _) = try makeOpenCLDevice()
        let checks = await DeviceChecks.run(on: device, includeDestructive: true)
        #expect(checks.map(\.name) == DeviceChecks.Name.allCases.map(\.rawValue))
        for check in checks {
            let name = try #require(DeviceChecks.Name(rawValue: check.name))
            #expect(check.status == Self.expected[name], "\(check.name): \(check.detail)")
        }
        let byName = Dictionary(uniqueKeysWithValues: checks.map { ($0.name, $0) })
        #expect(byName["compile-error"]?.detail.contains("opencl-c") == true)
        #expect(byName["device-lost"]?.detail.contains("CUDA only") == true)
        #expect(device.pool.statistics.bytesInUse == 0)
    }
}
