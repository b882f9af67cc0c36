import Foundation
import GPUBridge
import Testing

/// The README's example of a CPU kernel written as a Swift closure, run as written, and checked to be the same text as
/// the README shows.
@Suite("README example")
struct ReadmeExampleTests {
    @Test("runs and prints the expected values")
    func runs() async throws {
        let printed = try await readmeExample()
        #expect(printed == [1.0, 2.0, 3.0, 4.0])
    }

    @Test("is the text the README shows")
    func matchesReadme() throws {
        let here = #filePath
        let root = String(here[..<here.range(of: "/Tests/")!.lowerBound])
        let readme = String(decoding: try readFile(root + "/README.md"), as: UTF8.self)
        let test = String(decoding: try readFile(here), as: UTF8.self)
        // The second swift block: the first is the Swift kernel (GPUBridgeKernelsTests checks it).
        let second = readme.range(of: "```swift\n").map { String(readme[$0.upperBound...]) } ?? ""
        let block = second.components(between: "```swift\n", and: "```")
        let marked = (test.components(between: "// README-BEGIN\n", and: "        // README-END") ?? "")
            .split(separator: "\n", omittingEmptySubsequences: false)
            .map { $0.hasPrefix("        ") ? String($0.dropFirst(8)) : String($0) }
            .joined(separator: "\n")
        #expect(block != nil)
        #expect(block == marked, "README.md's swift block and readmeExample() differ")
    }

    func readmeExample() async throws -> [Float] {
        // README-BEGIN
        let device = try Device(backend: CPUBackend())  // or a CUDA / OpenCL device from their providers

        let a = try device.makeBuffer(copying: [Float](repeating: 1, count: 1024))
        let b = try device.makeBuffer(copying: (0..<1024).map { Float($0) })
        let c = try device.makeBuffer(of: Float.self, count: 1024)

        // The CPU backend runs Swift kernels; CUDA and OpenCL compile kernel text (see docs/).
        let add = KernelSource(name: "add") { context in
            let a = try context.buffer(0, as: Float.self), b = try context.buffer(1, as: Float.self)
            let c = try context.buffer(2, as: Float.self)
            for i in context.items where i < c.count { c[i] = a[i] + b[i] }
        }
        let kernel = try device.compile(add)
        let result = try await device.launch(kernel, .covering(1024), arguments: [.buffer(a), .buffer(b), .buffer(c)])

        let sum = try c.toArray()
        print(sum[0..<4], result.hostDuration)  // [1.0, 2.0, 3.0, 4.0] and the launch's time
        // README-END
        return Array(sum[0..<4])
    }
}

extension String {
    /// The text between the first `start` and the next `end`, or nil.
    func components(between start: String, and end: String) -> String? {
        guard let s = range(of: start), let e = self[s.upperBound...].range(of: end) else { return nil }
        return String(self[s.upperBound..<e.lowerBound])
    }
}
