import ArgumentParser
import GPUBridge

struct KernelsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kernels",
        abstract: "List the kernel catalog: each kernel, its parameters and the backends that implement it."
    )

    @Flag(name: .long, help: "Print JSON instead of text.")
    var json = false

    struct KernelJSON: Encodable {
        var id: String
        var summary: String
        var parameters: [String]
        var backends: [String]
    }

    func run() async throws {
        let kernels = KernelCatalog().all.map { definition in
            KernelJSON(
                id: definition.id, summary: definition.summary,
                parameters: definition.parameters.map { parameter in
                    switch parameter {
                    case let .buffer(name, size, _, access):
                        return "\(name): \(access.rawValue) buffer (\(size)-byte elements)"
                    case let .scalar(name, type): return "\(name): \(type.rawValue)"
                    }
                }, backends: definition.backends.map(\.rawValue))
        }
        if json { return try printJSON(kernels) }
        for k in kernels {
            print("\(k.id) — \(k.summary)")
            print("    (\(k.parameters.joined(separator: ", ")))  backends: \(k.backends.joined(separator: ", "))")
        }
        print("\nRun one with: gpubridge run <operation> --backend cpu|opencl|cuda --size N --verify")
        print("Operations: \(KernelRunner.names.joined(separator: ", "))")
    }
}
