import ArgumentParser
import Foundation
import GPUBridge
import GPUBridgeOps
import Logging

@main
struct GPUBridgeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gpubridge",
        abstract: "Run compute kernels on GPUs (CUDA, OpenCL) or the CPU from Swift.",
        discussion:
            "Logs go to standard error at the level in GPUBRIDGE_LOG_LEVEL (trace, debug, info, notice, warning, error; default warning).",
        version: GPUBridgeVersion.string,
        subcommands: [
            DevicesCommand.self, KernelsCommand.self, RunCommand.self, SelfTestCommand.self, CheckCommand.self,
            ValidateCommand.self, BenchCommand.self, DemoCommand.self,
            ServeCommand.self, NodeCommand.self, CallCommand.self, CertsCommand.self,
        ]
    )

    static func main() async {
        let level =
            ProcessInfo.processInfo.environment["GPUBRIDGE_LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) ?? .warning
        // Standard error at GPUBRIDGE_LOG_LEVEL, and warnings and errors kept for the operations endpoint
        // (/api/v1/errors and the dashboard's recent errors).
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return MultiplexLogHandler([handler, RecentErrors.LogHandler(label: label)])
        }
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            exit(withError: error)
        }
    }
}
