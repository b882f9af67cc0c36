import Foundation
import GPUBridge
import GPUBridgeTestSupport
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

/// The built `gpubridge` executable (`CLIBinary`).
private let cli = CLIBinary.path

/// Runs the CLI with `arguments`; returns its exit status, standard output and standard error.
private func runCLI(_ arguments: [String]) throws -> (status: Int32, output: String, errors: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: cli!)
    process.arguments = arguments
    let output = Pipe(), errors = Pipe()
    process.standardOutput = output
    process.standardError = errors
    try process.run()
    let out = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    let err = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    return (process.terminationStatus, out, err)
}

@Suite(
    "gpubridge check", .enabled(if: cli != nil, "the gpubridge executable was not built beside the tests"),
    .serialized)
struct CheckCommandTests {
    @Test("bad --only and --backend values are refused naming the value and what is accepted")
    func badInput() throws {
        let only = try runCLI(["check", "--only", "nope"])
        #expect(only.status == 64)
        #expect(only.errors.contains("invalid --only 'nope'; expected one of views, async-copies"))
        let backend = try runCLI(["check", "--backend", "tpu"])
        #expect(backend.status == 64)
        #expect(backend.errors.contains("invalid --backend 'tpu'"))
    }

    @Test("--only runs the named checks on the CPU device and prints them as JSON")
    func onlyJSON() throws {
        let run = try runCLI([
            "check", "--backend", "cpu", "--only", "views", "--only", "large-shared-memory", "--json",
        ])
        #expect(run.status == 0, "\(run.errors)")
        let devices = try #require(try JSONSerialization.jsonObject(with: Data(run.output.utf8)) as? [[String: Any]])
        let checks = try #require(devices.first?["checks"] as? [[String: Any]])
        #expect(checks.map { $0["name"] as? String } == ["views", "large-shared-memory"])
        #expect(checks.map { $0["status"] as? String } == ["passed", "not-applicable"])
    }

    @Test(
        "without a CUDA device, check --backend cuda says so with discovery's reason and exits 2",
        .enabled(if: cudaUnavailableReason != nil, "this machine has a CUDA device: there is nothing to refuse"))
    func noCUDADevice() throws {
        let reason = try #require(cudaUnavailableReason)
        let run = try runCLI(["check", "--backend", "cuda"])
        #expect(run.status == 2)
        #expect(run.errors.contains("no CUDA device: \(reason)"))
    }
}

/// Why `gpubridge devices --json` says CUDA is unavailable, or nil when it has a CUDA device (or no CLI was built).
private let cudaUnavailableReason: String? = {
    guard cli != nil, let listing = try? runCLI(["devices", "--json"]),
        let backends = try? JSONSerialization.jsonObject(with: Data(listing.output.utf8)) as? [[String: Any]],
        let cuda = backends.first(where: { $0["backend"] as? String == "cuda" }),
        cuda["available"] as? Bool == false
    else { return nil }
    return cuda["reason"] as? String ?? "no device"
}()

/// Collects check names reported from the `progress` callback.
private final class Recorder: Sendable {
    private let storage = Mutex<[String]>([])
    func append(_ name: String) { storage.withLock { $0.append(name) } }
    var names: [String] { storage.withLock { $0 } }
}
