import ArgumentParser
import GPUBridge

struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run a built-in operation end to end on one device and check it against the host.",
        discussion: """
            vector-add runs the reference VectorAdd phase by phase (allocate, copy in, compile, launch, copy out, \
            verify) in float32, int32 or float64. The other operations (saxpy, scale, dot, sum, matmul, softmax, topk, \
            histogram) run through the kernel catalog; --size is their element count, the matrix side for matmul, \
            the columns of 64 rows for softmax, and the rows searched for topk.
            """
    )

    @Argument(help: "The operation to run: vector-add, saxpy, scale, dot, sum, matmul, softmax, topk, histogram.")
    var kernel: String

    @Option(name: .long, help: "Backend: auto, cpu, opencl or cuda.")
    var backend: String = "auto"

    @Option(name: .long, help: "Number of elements (1 to 2147483647).")
    var size: Int = 1_000_000

    @Option(name: .long, help: "Element type: float32, int32 or float64.")
    var type: String = "float32"

    @Flag(name: .long, help: "Verify every element against a host computation.")
    var verify = false

    @Flag(name: .long, help: "Print JSON instead of text.")
    var json = false

    func validate() throws {
        guard KernelRunner.names.contains(kernel) else {
            throw ValidationError(
                "unknown kernel '\(kernel)'; available: \(KernelRunner.names.joined(separator: ", "))")
        }
        guard BackendChoice(rawValue: backend) != nil else {
            throw ValidationError(
                "invalid --backend '\(backend)'; expected one of \(BackendChoice.allCases.map(\.rawValue).joined(separator: ", "))"
            )
        }
        guard size >= 1, size <= Int(Int32.max) else {
            throw ValidationError("invalid --size \(size); expected 1...\(Int32.max)")
        }
        guard ["float32", "int32", "float64"].contains(type) else {
            throw ValidationError("invalid --type '\(type)'; expected float32, int32 or float64")
        }
    }

    struct RunJSON: Encodable {
        var kernel: String
        var device: String
        var deviceName: String
        var elements: Int
        var type: String
        var phasesMilliseconds: [String: Double]
        var kernelDeviceMilliseconds: Double?
        /// The result of the check against the host: true when every element matched, false when some did not,
        /// absent when --verify was not given (nothing was checked).
        var verified: Bool?
        var mismatches: Int?
    }

    struct OperationJSON: Encodable {
        var operation: String
        var device: String
        var deviceName: String
        var size: Int
        var summary: String
        var milliseconds: Double
        var verified: Bool?
        var detail: String
    }

    func run() async throws {
        let (reports, devices, _) = Backends.discover()
        // validated above
        let device = try BackendChoice(rawValue: backend)!.select(from: devices, reports: reports)[0]
        if kernel != "vector-add" {
            let outcome = try await KernelRunner.run(kernel, size: size, on: device, verify: verify)
            if json {
                try printJSON(
                    OperationJSON(
                        operation: kernel, device: device.id.description, deviceName: device.info.name, size: size,
                        summary: outcome.summary, milliseconds: outcome.duration.milliseconds,
                        verified: outcome.verified, detail: outcome.detail))
            } else {
                print("\(kernel) on \(device.id) (\(device.info.name)): \(outcome.summary)")
                print(
                    "  \(outcome.duration.short) end to end (upload, compile or cache, launch, download) — \(outcome.detail)"
                )
                if let verified = outcome.verified {
                    print(
                        verified
                            ? "  verified against the host reference"
                            : "  VERIFY FAILED: result differs from the host reference")
                }
            }
            if outcome.verified == false { throw ExitCode(1) }
            return
        }
        let result: VectorAddRun
        switch type {
        case "int32": result = try await VectorAddRun.run(Int32.self, count: size, on: device, verify: verify)
        case "float64": result = try await VectorAddRun.run(Double.self, count: size, on: device, verify: verify)
        default: result = try await VectorAddRun.run(Float.self, count: size, on: device, verify: verify)
        }
        let p = result.phases
        let phases: [(String, Duration)] =
            [
                ("allocate", p.allocate), ("copy-in", p.copyIn), ("compile", p.compile),
                ("launch", p.launch), ("copy-out", p.copyOut),
            ] + (verify ? [("verify", p.verify)] : [])
        if json {
            try printJSON(
                RunJSON(
                    kernel: kernel, device: device.id.description, deviceName: device.info.name, elements: size,
                    type: type,
                    phasesMilliseconds: Dictionary(uniqueKeysWithValues: phases.map { ($0.0, $0.1.milliseconds) }),
                    kernelDeviceMilliseconds: result.kernelTime?.milliseconds,
                    verified: result.mismatches.map { $0 == 0 }, mismatches: result.mismatches))
        } else {
            print("\(kernel) \(type) x \(size) on \(device.id) (\(device.info.name))")
            for (name, duration) in phases {
                print("  \(name.padding(toLength: 9, withPad: " ", startingAt: 0)) \(duration.short)")
            }
            if let kernelTime = result.kernelTime { print("  kernel (device clock) \(kernelTime.short)") }
            if let mismatches = result.mismatches {
                print(
                    mismatches == 0
                        ? "  verified: all \(size) elements match the host"
                        : "  VERIFY FAILED: \(mismatches) elements differ")
            }
        }
        if let mismatches = result.mismatches, mismatches > 0 { throw ExitCode(1) }
    }
}
