import ArgumentParser
import Foundation
import GPUBridge

struct ValidateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "validate",
        abstract:
            "Run a built-in kernel on a reference and a candidate device with the same seeded inputs and compare "
            + "every output element; exits non-zero when any differs beyond tolerance or a device is missing.",
        discussion: """
            Kernels: \(BuiltinKernelValidation.kernels.joined(separator: ", ")) (dashes or underscores; dot, sum, \
            softmax and topk name the kernels of those operations). --size has the meaning it has for run: elements, \
            the matrix side for matmul, the columns of 64 rows for softmax_rows, the matrix rows for cosine_scores and \
            topk_select; each kernel has its own default. Devices: cpu, opencl or cuda, optionally with an ordinal \
            (opencl:1); the first device of the backend without one.
            """
    )

    @Argument(help: "The built-in kernel to validate; omit it (or give --all) to validate every built-in kernel.")
    var kernel: String?

    @Flag(name: .long, help: "Validate every built-in kernel.")
    var all = false

    @Option(name: .long, help: "The reference device: cpu, opencl or cuda, optionally :ordinal.")
    var reference: String

    @Option(name: .long, help: "The candidate device: cpu, opencl or cuda, optionally :ordinal.")
    var candidate: String

    @Option(name: .long, help: "Problem size (see the discussion); default per kernel.")
    var size: Int?

    @Option(name: .long, help: "Seed of the inputs (0...18446744073709551615).")
    var seed: UInt64 = 1

    static let aliases = ["dot": "dot_partial", "sum": "sum_partial", "softmax": "softmax_rows", "topk": "topk_select"]

    /// The catalog ids to validate.
    var kernels: [String] {
        guard let kernel, !all else { return BuiltinKernelValidation.kernels }
        let id = kernel.replacingOccurrences(of: "-", with: "_")
        return [Self.aliases[id] ?? id]
    }

    func validate() throws {
        if all, let kernel {
            throw ValidationError("give a kernel name or --all, not both (got '\(kernel)' and --all)")
        }
        for id in kernels where !BuiltinKernelValidation.kernels.contains(id) {
            throw ValidationError(
                "unknown kernel '\(kernel ?? id)'; available: \(BuiltinKernelValidation.kernels.joined(separator: ", "))"
            )
        }
        for (flag, value) in [("--reference", reference), ("--candidate", candidate)] {
            _ = try DeviceChoice(flag: flag, value)
        }
        if let size {
            for id in kernels {
                let limit = try BuiltinKernelValidation.maximumSize(id)
                guard size >= 1, size <= limit else {
                    throw ValidationError("invalid --size \(size) for \(id); expected 1...\(limit)")
                }
            }
        }
    }

    func run() async throws {
        let (reports, devices, _) = Backends.discover()
        let referenceDevice: Device, candidateDevice: Device
        do {
            referenceDevice = try DeviceChoice(flag: "--reference", reference).select(from: devices, reports: reports)
            candidateDevice = try DeviceChoice(flag: "--candidate", candidate).select(from: devices, reports: reports)
        } catch let error as DeviceChoice.Missing {
            FileHandle.standardError.write(Data("\(error.message)\n".utf8))
            throw ExitCode(2)
        }
        let validator = KernelValidator(seed: seed)
        let catalog = KernelCatalog()
        var failed: [String] = []
        for id in kernels {
            do {
                let report = try await validator.validate(
                    try catalog.definition(id), reference: referenceDevice, candidate: candidateDevice,
                    launch: try BuiltinKernelValidation.launch(
                        id, size: size ?? BuiltinKernelValidation.defaultSize(id)))
                print(report)
                if !report.passed { failed.append(id) }
            } catch {
                print("\(id): ERROR — \(error)")
                failed.append(id)
            }
        }
        if kernels.count > 1 {
            print(
                "\(kernels.count - failed.count) of \(kernels.count) kernels passed"
                    + (failed.isEmpty ? "" : "; failed: \(failed.joined(separator: ", "))"))
        }
        if !failed.isEmpty { throw ExitCode(1) }
    }
}

/// A `--reference` or `--candidate` value: a backend and an optional device ordinal (`opencl`, `opencl:1`).
struct DeviceChoice {
    /// No device answers the choice; `message` says which and why.
    struct Missing: Error {
        var message: String
    }

    let flag: String
    let backend: BackendKind
    let ordinal: Int?

    init(flag: String, _ value: String) throws {
        let parts = value.split(separator: ":", omittingEmptySubsequences: false)
        let expected = "expected cpu, opencl or cuda, optionally followed by :ordinal (opencl:1)"
        guard parts.count <= 2, let backend = BackendKind(rawValue: String(parts[0])) else {
            throw ValidationError("invalid \(flag) '\(value)'; \(expected)")
        }
        var ordinal: Int?
        if parts.count == 2 {
            guard let number = Int(parts[1]), number >= 0 else {
                throw ValidationError("invalid \(flag) '\(value)'; \(expected)")
            }
            ordinal = number
        }
        self.flag = flag
        self.backend = backend
        self.ordinal = ordinal
    }

    /// The chosen device among `devices`; `Missing` naming the flag, the backend and the reason when there is none.
    func select(from devices: [Device], reports: [BackendReport]) throws -> Device {
        let ofBackend: [Device]
        do {
            ofBackend = try BackendChoice(rawValue: backend.rawValue)!.select(from: devices, reports: reports)
        } catch let GPUBridgeError.backendUnavailable(_, reason) {
            throw Missing(
                message: "no \(CheckCommand.label(backend)) device for \(flag) \(backend.rawValue): \(reason)")
        }
        guard let ordinal else { return ofBackend[0] }
        guard let device = ofBackend.first(where: { $0.id.ordinal == ordinal }) else {
            throw Missing(
                message:
                    "no device \(backend.rawValue):\(ordinal) for \(flag); available: \(ofBackend.map(\.id.description).joined(separator: ", "))"
            )
        }
        return device
    }
}
