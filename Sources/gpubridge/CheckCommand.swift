import ArgumentParser
import Foundation
import GPUBridge

struct CheckCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract:
            "Run the device checks (views, async copies, 1 000 launches in flight, compile errors, out-of-memory, "
            + "large shared memory, misaligned views, device faults); exits non-zero if any fails or the backend has "
            + "no device.",
        discussion: """
            Checks: \(DeviceChecks.Name.allCases.map(\.rawValue).joined(separator: ", ")). device-lost runs only with \
            --destructive: on CUDA it faults the device on purpose, which destroys the CUDA context for the rest of \
            the process, so it runs last. To run it on its own: --destructive --only device-lost.
            """
    )

    @Option(name: .long, help: "Backend: auto (every available backend), cpu, opencl or cuda.")
    var backend: String = "auto"

    @Option(name: .long, help: "Run only this check (repeatable).")
    var only: [String] = []

    @Flag(name: .long, help: "Also run device-lost, which destroys the CUDA context (see the discussion).")
    var destructive = false

    @Flag(name: .long, help: "Print JSON instead of text.")
    var json = false

    func validate() throws {
        guard BackendChoice(rawValue: backend) != nil else {
            throw ValidationError(
                "invalid --backend '\(backend)'; expected one of \(BackendChoice.allCases.map(\.rawValue).joined(separator: ", "))"
            )
        }
        for name in only where DeviceChecks.Name(rawValue: name) == nil {
            throw ValidationError(
                "invalid --only '\(name)'; expected one of \(DeviceChecks.Name.allCases.map(\.rawValue).joined(separator: ", "))"
            )
        }
    }

    struct DeviceResult: Encodable {
        var device: String
        var name: String
        var checks: [SelfTestCommand.CheckJSON]
    }

    func run() async throws {
        let (reports, devices, errors) = Backends.discover()
        let choice = BackendChoice(rawValue: backend)!  // validated above
        let chosen: [Device]
        do {
            chosen = choice == .auto ? devices : try choice.select(from: devices, reports: reports)
        } catch let GPUBridgeError.backendUnavailable(kind, reason) {
            let label = BackendKind(rawValue: kind).map { "\(Self.label($0)) " } ?? ""
            FileHandle.standardError.write(Data("no \(label)device: \(reason)\n".utf8))
            throw ExitCode(2)
        }
        let selection = only.isEmpty ? nil : Set(only.compactMap(DeviceChecks.Name.init(rawValue:)))
        var results: [DeviceResult] = []
        var failed = errors.count
        let json = self.json
        for device in chosen {
            if !json {
                print("\(device.id) \(device.info.name)")
                fflush(nil)
            }
            let checks = await DeviceChecks.run(on: device, includeDestructive: destructive, only: selection) {
                check in
                if !json {
                    let mark = check.status == .passed ? "PASS" : check.status == .failed ? "FAIL" : "N/A "
                    print("  \(mark) \(check.name) — \(check.detail) (\(check.duration.short))")
                    // Each line out at once: a run killed by a timeout keeps the checks that ended.
                    fflush(nil)
                }
            }
            failed += checks.filter { $0.status == .failed }.count
            results.append(
                DeviceResult(
                    device: device.id.description, name: device.info.name,
                    checks: checks.map {
                        SelfTestCommand.CheckJSON(
                            name: $0.name, status: $0.status.rawValue, detail: $0.detail,
                            milliseconds: $0.duration.milliseconds)
                    }))
        }
        if json {
            try printJSON(results)
        } else {
            for error in errors { print("error: \(error)") }
            let all = results.flatMap(\.checks)
            let passed = all.filter { $0.status == SelfTest.Check.Status.passed.rawValue }.count
            let skipped = all.filter { $0.status == SelfTest.Check.Status.notApplicable.rawValue }.count
            print("\(passed) passed, \(failed) failed, \(skipped) not applicable")
        }
        if failed > 0 { throw ExitCode(1) }
    }

    /// How a backend is named in messages: `CUDA`, `OpenCL`, `CPU`.
    static func label(_ kind: BackendKind) -> String {
        switch kind {
        case .cuda: return "CUDA"
        case .opencl: return "OpenCL"
        case .cpu: return "CPU"
        }
    }
}
