import ArgumentParser
import GPUBridge

@main
struct GPUBridgeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gpubridge",
        abstract: "Run compute kernels on GPUs (CUDA, OpenCL) or the CPU from Swift.",
        version: GPUBridgeVersion.string,
        subcommands: [DevicesCommand.self, KernelsCommand.self, RunCommand.self, SelfTestCommand.self, DemoCommand.self]
    )
}
