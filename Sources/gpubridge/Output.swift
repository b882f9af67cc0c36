import Foundation
import GPUBridge

/// Writes `value` as pretty JSON on standard output.
func printJSON<T: Encodable>(_ value: T) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    let data = try encoder.encode(value)
    print(String(decoding: data, as: UTF8.self))
}

extension Duration {
    /// Milliseconds as a floating-point number.
    var milliseconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) * 1000 + Double(attoseconds) / 1e15
    }

    /// A short human form: `12.3 ms`, `45.6 µs`.
    var short: String {
        let ms = milliseconds
        if ms >= 1000 { return String(format: "%.2f s", ms / 1000) }
        if ms >= 1 { return String(format: "%.2f ms", ms) }
        return String(format: "%.1f µs", ms * 1000)
    }
}

/// Bytes in a readable unit.
func formatBytes(_ bytes: Int) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"]
    var value = Double(bytes)
    var unit = 0
    while value >= 1024, unit < units.count - 1 { value /= 1024; unit += 1 }
    return unit == 0 ? "\(bytes) B" : String(format: "%.1f %@", value, units[unit])
}
