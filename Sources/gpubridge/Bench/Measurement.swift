import Foundation
import GPUBridge

/// One benchmark figure: the median of repeated samples, with min and max, in a unit where higher or lower is better.
struct Figure: Encodable {
    var suite: String
    var name: String
    var device: String
    var deviceName: String
    var unit: String
    var median: Double
    var min: Double
    var max: Double
    var samples: Int
    /// Problem size (elements or bytes, see `sizeUnit`).
    var size: Int
    var sizeUnit: String
    var verified: Bool?
    var note: String?
}

/// Runs `body` once to warm up, then `repeats` times, and returns each sample's duration.
func sample(repeats: Int, _ body: () async throws -> Void) async throws -> [Duration] {
    try await body()
    let clock = ContinuousClock()
    var samples: [Duration] = []
    samples.reserveCapacity(repeats)
    for _ in 0..<repeats {
        let start = clock.now
        try await body()
        samples.append(clock.now - start)
    }
    return samples
}

extension Array where Element == Double {
    var median: Double {
        let s = sorted()
        guard !s.isEmpty else { return .nan }
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }
}

extension Duration {
    var seconds: Double { Double(nanoseconds) / 1e9 }
}

/// Builds a figure from durations: `rate(seconds)` converts one sample into the reported unit.
func figure(
    _ suite: String, _ name: String, device: Device, unit: String, size: Int, sizeUnit: String,
    samples: [Duration], verified: Bool? = nil, note: String? = nil, rate: (Double) -> Double
) -> Figure {
    let values = samples.map { rate($0.seconds) }
    return Figure(
        suite: suite, name: name, device: device.id.description, deviceName: device.info.name, unit: unit,
        median: values.median, min: values.min() ?? .nan, max: values.max() ?? .nan, samples: values.count,
        size: size, sizeUnit: sizeUnit, verified: verified, note: note)
}

/// `numerator / denominator` as a figure in "x": the ratio of the medians, with the widest range the samples allow.
func ratio(_ numerator: Figure, over denominator: Figure, name: String, note: String? = nil) -> Figure {
    var r = numerator
    r.name = name
    r.unit = "x"
    r.median = numerator.median / denominator.median
    r.min = numerator.min / denominator.max
    r.max = numerator.max / denominator.min
    r.note = note
    return r
}

/// Progress lines on standard error when it is a terminal.
struct Progress {
    let enabled = isatty(2) != 0
    func say(_ text: String) {
        guard enabled else { return }
        FileHandle.standardError.write(Data("\u{1B}[2K\r… \(text)".utf8))
    }
    func done() {
        guard enabled else { return }
        FileHandle.standardError.write(Data("\u{1B}[2K\r".utf8))
    }
}
