#if SwiftKernels
    import Foundation
    import Testing

    /// Type-checks Swift source that uses `@GPUKernel` with the toolchain's `swiftc` and the macro plugin this package
    /// built, as a user's build would: the diagnostics are the compiler's own, with their file, line and column.
    enum KernelTypeChecker {
        struct Diagnostic: CustomStringConvertible {
            var line: Int
            var column: Int
            var severity: String
            var message: String
            var description: String { "\(line):\(column): \(severity): \(message)" }
        }

        /// The build folder holding the test binary, `Modules/` and the macro plugin `GPUBridgeKernelMacros-tool`.
        static var products: URL {
            URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        }

        /// `swiftc` beside the `swift` that runs the tests, or the first on PATH.
        static func swiftc() throws -> String {
            let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin"
            for folder in path.split(separator: ":") {
                let candidate = "\(folder)/swiftc"
                if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            }
            throw TypeCheckError(reason: "no swiftc on PATH (\(path))")
        }

        struct TypeCheckError: Error, CustomStringConvertible {
            var reason: String
            var description: String { reason }
        }

        /// Every diagnostic `swiftc -typecheck` gives for `source` (one file), in order, the compiler's exit status
        /// and its whole error output (where `-dump-macro-expansions` in `extraArguments` prints the expansions).
        /// Notes are kept in `diagnostics`; the caret lines and source excerpts are not.
        static func check(_ source: String, extraArguments: [String] = []) throws -> (
            status: Int32, diagnostics: [Diagnostic], output: String
        ) {
            let folder = FileManager.default.temporaryDirectory.appendingPathComponent(
                "gpubridge-kernel-check-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: folder) }
            let file = folder.appendingPathComponent("Kernels.swift")
            try source.write(to: file, atomically: true, encoding: .utf8)
            let plugin = products.appendingPathComponent("GPUBridgeKernelMacros-tool").path
            guard FileManager.default.isExecutableFile(atPath: plugin) else {
                throw TypeCheckError(reason: "the macro plugin is not at \(plugin)")
            }
            let process = Process()
            process.executableURL = URL(fileURLWithPath: try swiftc())
            process.arguments =
                [
                    "-typecheck", "-swift-version", "6", "-diagnostic-style", "llvm",
                    "-I", products.appendingPathComponent("Modules").path,
                    // GPUBridge's C loops: SwiftPM hands every dependent target this module map; so does the checker.
                    "-Xcc",
                    "-fmodule-map-file="
                        + products.appendingPathComponent("CGPUBridgeVectorMath.build/module.modulemap").path,
                    "-load-plugin-executable", "\(plugin)#GPUBridgeKernelMacros", file.path,
                ] + extraArguments
            let errors = Pipe()
            process.standardError = errors
            process.standardOutput = FileHandle.nullDevice
            process.standardInput = FileHandle.nullDevice
            try process.run()
            let output = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            var diagnostics: [Diagnostic] = []
            let prefix = file.path + ":"
            for line in output.split(separator: "\n", omittingEmptySubsequences: true) {
                if line.hasPrefix("<unknown>") {
                    // A diagnostic the compiler could not place is a defect of the macro: keep it, at line 0.
                    diagnostics.append(Diagnostic(line: 0, column: 0, severity: "error", message: String(line)))
                    continue
                }
                guard line.hasPrefix(prefix) else { continue }
                let fields = line.dropFirst(prefix.count).split(separator: ":", maxSplits: 3)
                guard fields.count == 4, let row = Int(fields[0]), let column = Int(fields[1]) else { continue }
                diagnostics.append(
                    Diagnostic(
                        line: row, column: column, severity: fields[2].trimmingCharacters(in: .whitespaces),
                        message: fields[3].trimmingCharacters(in: .whitespaces)))
            }
            return (process.terminationStatus, diagnostics, output)
        }
    }
#endif
