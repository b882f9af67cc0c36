import ArgumentParser
import GPUBridge

struct SelfTestCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "selftest",
        abstract: "Run end-to-end checks on each available device; exits non-zero if any fails."
    )

    @Option(name: .long, help: "Backend: auto (every available backend), cpu, opencl or cuda.")
    var backend: String = "auto"

    @Option(name: .long, help: "Elements in the large vector-add check.")
    var size: Int = 10_000_000

    @Flag(name: .long, help: "Print JSON instead of text.")
    var json = false

    func validate() throws {
        guard BackendChoice(rawValue: backend) != nil else {
            throw ValidationError(
                "invalid --backend '\(backend)'; expected one of \(BackendChoice.allCases.map(\.rawValue).joined(separator: ", "))"
            )
        }
        guard size >= 1, size <= Int(Int32.max) else {
            throw ValidationError("invalid --size \(size); expected 1...\(Int32.max)")
        }
    }

    struct DeviceResult: Encodable {
        var device: String
        var name: String
        var checks: [CheckJSON]
    }

    struct CheckJSON: Encodable {
        var name: String
        var status: String
        var detail: String
        var milliseconds: Double
    }

    func run() async throws {
        let (reports, devices, errors) = Backends.discover()
        let choice = BackendChoice(rawValue: backend)!  // validated above
        let chosen = choice == .auto ? devices : try choice.select(from: devices, reports: reports)
        var results: [DeviceResult] = []
        var failed = errors.count
        let json = self.json
        for device in chosen {
            if !json { print("\(device.id) \(device.info.name)") }
            let checks = await SelfTest.run(on: device, largeCount: size) { check in
                if !json {
                    let mark = check.status == .passed ? "PASS" : check.status == .failed ? "FAIL" : "N/A "
                    print("  \(mark) \(check.name) — \(check.detail) (\(check.duration.short))")
                }
            }
            failed += checks.filter { $0.status == .failed }.count
            results.append(
                DeviceResult(
                    device: device.id.description, name: device.info.name,
                    checks: checks.map {
                        CheckJSON(
                            name: $0.name, status: $0.status.rawValue, detail: $0.detail,
                            milliseconds: $0.duration.milliseconds)
                    }))
        }
        if json {
            try printJSON(results)
        } else {
            for error in errors { print("error: \(error)") }
            let total = results.reduce(0) { $0 + $1.checks.count }
            print("\(total - failed) passed, \(failed) failed")
        }
        if failed > 0 { throw ExitCode(1) }
    }
}
