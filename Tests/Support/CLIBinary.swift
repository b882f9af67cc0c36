import Foundation

/// The built `gpubridge` executable the process tests run: `GPUBRIDGE_BIN` when set (and executable), else the one
/// `swift build --build-tests` puts next to the test bundle. Read once; any thread.
public enum CLIBinary {
    public static let path: String? = {
        let fm = FileManager.default
        if let given = ProcessInfo.processInfo.environment["GPUBRIDGE_BIN"] {
            return fm.isExecutableFile(atPath: given) ? given : nil
        }
        let bundle = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        let folders = [
            bundle, bundle.deletingLastPathComponent(), Bundle.main.bundleURL.deletingLastPathComponent(),
            Bundle.main.bundleURL,
        ]
        for folder in folders {
            let candidate = folder.appendingPathComponent("gpubridge").path
            if fm.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }()
}
