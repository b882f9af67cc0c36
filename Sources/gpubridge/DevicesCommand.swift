import ArgumentParser
import GPUBridge

struct DevicesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "devices",
        abstract: "List every backend with its devices, and for a backend that is not available, why not."
    )

    @Flag(name: .long, help: "Print JSON instead of text.")
    var json = false

    struct BackendJSON: Encodable {
        var backend: String
        var available: Bool
        var reason: String?
        var details: [String: String]
        var devices: [DeviceJSON]
    }

    struct DeviceJSON: Encodable {
        var info: DeviceInfo
        var freeMemory: Int?
        var freeMemoryError: String?
    }

    func run() async throws {
        let (reports, devices, errors) = Backends.discover()
        let output = reports.map { report in
            BackendJSON(
                backend: report.backend.rawValue, available: report.isAvailable,
                reason: report.unavailableReason ?? (report.devices.isEmpty ? "no device" : nil),
                details: Dictionary(report.details, uniquingKeysWith: { a, _ in a }),
                devices: devices.filter { $0.id.backend == report.backend }.map { device in
                    let free = Result { () throws(GPUBridgeError) in try device.freeMemory() }
                    return DeviceJSON(
                        info: device.info, freeMemory: try? free.get(),
                        freeMemoryError: { if case let .failure(e) = free { return "\(e)" } else { return nil } }())
                })
        }
        if json {
            try printJSON(output)
            return
        }
        for backend in output {
            print(
                "\(backend.backend): \(backend.available ? "available" : "unavailable — \(backend.reason ?? "unknown")")"
            )
            for (key, value) in backend.details.sorted(by: { $0.key < $1.key }) { print("    \(key): \(value)") }
            for device in backend.devices {
                let info = device.info
                print("  [\(info.id)] \(info.name) (\(info.vendor))")
                print("      architecture \(info.architecture), driver \(info.driverVersion)")
                print(
                    "      memory \(formatBytes(info.totalMemory)) total, \(device.freeMemory.map(formatBytes) ?? "unknown (\(device.freeMemoryError ?? ""))") free"
                )
                print(
                    "      \(info.computeUnits) compute units, \(info.maxGroupItems) items/group, group size \(info.maxGroupSize), groups \(info.maxGroups)"
                )
                let c = info.capabilities
                print(
                    "      shared memory/group \(formatBytes(c.sharedMemoryPerGroup)), pinned host memory \(c.pinnedHostMemory), async copies \(c.asyncCopies), float64 \(c.float64), profiling \(c.profiling), view alignment \(c.viewOffsetAlignment) B"
                )
            }
        }
        for error in errors { print("error: \(error)") }
    }
}
