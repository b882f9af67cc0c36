import Foundation
import GPUBridge
import GPUBridgeTestSupport
import Testing

/// Float elements of `bytes`.
private func floats(_ bytes: [UInt8]?) -> [Float] {
    (bytes ?? []).withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
}

/// vector_add's signature with a CPU body of our own: `c[i] = transform(i, a[i] + b[i])`, or no write where the
/// transform returns nil.
private func vectorAddTwin(
    _ id: String, inputs: BufferAccess = .readWrite, _ transform: @escaping @Sendable (Int, Float) -> Float?
) -> KernelDefinition {
    KernelDefinition(
        id: id, summary: "vector_add with a changed CPU body",
        parameters: [
            .buffer("a", Float.self, extent: .argument(3), access: inputs),
            .buffer("b", Float.self, extent: .argument(3), access: inputs),
            .buffer("c", Float.self, extent: .argument(3)), .scalar(name: "n", type: .int32),
        ],
        portableText: nil, entryPoint: id
    ) { context in
        let a = try context.buffer(0, as: Float.self), b = try context.buffer(1, as: Float.self)
        let c = try context.buffer(2, as: Float.self)
        for i in context.items.clamped(to: 0..<(try context.integer(3))) {
            if let value = transform(i, a[i] + b[i]) { c[i] = value }
        }
    }
}

private func vectorAddLaunch(_ n: Int) -> ValidationLaunch {
    ValidationLaunch(
        .covering(n),
        arguments: [
            .buffer(.float32, count: n), .buffer(.float32, count: n), .buffer(.float32, count: n), .int32(Int32(n)),
        ])
}

/// The built-in vector_add (a lookup that cannot fail for a built-in id, but is not forced).
private func vectorAdd() throws -> KernelDefinition { try KernelCatalog().definition("vector_add") }

@Suite("KernelValidator on the CPU backend")
struct KernelValidatorTests {
    @Test("every built-in kernel validated CPU against CPU passes, and every buffer goes back to the pool")
    func builtinsOnCPU() async throws {
        let device = try makeCPUDevice()
        for id in BuiltinKernelValidation.kernels {
            let size = id == "matmul" ? 40 : 3001
            let report = try await KernelValidator(seed: 3).validate(
                try KernelCatalog().definition(id), reference: device, candidate: device,
                launch: try BuiltinKernelValidation.launch(id, size: size))
            #expect(report.passed, "\(report)")
            #expect(!report.buffers.isEmpty, "\(id) compared no buffer")
            #expect(report.buffers.allSatisfy { $0.mismatches == 0 && $0.maxAbsoluteDifference == 0 })
        }
        #expect(device.pool.statistics.bytesInUse == 0)
    }

    @Test("only the buffers the portable text does not declare const are compared; topk_select's scores are not")
    func comparedBuffers() async throws {
        let device = try makeCPUDevice()
        let validator = KernelValidator()
        let add = try await validator.validate(
            vectorAdd(), reference: device, candidate: device, launch: vectorAddLaunch(10))
        #expect(add.buffers.map(\.name) == ["c"])
        #expect(add.buffers.map(\.count) == [10])
        let topk = try await validator.validate(
            try KernelCatalog().definition("topk_select"), reference: device, candidate: device,
            launch: try BuiltinKernelValidation.launch("topk_select", size: 50))
        #expect(topk.buffers.map(\.name) == ["outIndex", "outScore"])
        #expect(topk.buffers.map(\.type) == [.int32, .float32])
        // A definition without portable text may write every buffer.
        let twin = try await validator.validate(
            reference: vectorAddTwin("twin", { $1 }), on: device, candidate: vectorAddTwin("twin", { $1 }), on: device,
            launch: vectorAddLaunch(10))
        #expect(twin.buffers.map(\.name) == ["a", "b", "c"])
        #expect(twin.passed)
        // One whose inputs are declared read-only has only its output compared.
        let declared = try await validator.validate(
            reference: vectorAddTwin("twin", inputs: .readOnly, { $1 }), on: device,
            candidate: vectorAddTwin("twin", inputs: .readOnly, { $1 }), on: device, launch: vectorAddLaunch(10))
        #expect(declared.buffers.map(\.name) == ["c"])
        #expect(declared.passed)
    }

    @Test("every built-in declares read-only exactly the buffers its portable text points to as const")
    func builtinAccessMatchesText() throws {
        var checked = 0
        for definition in KernelCatalog().all {
            let text = try #require(definition.portable?.text, "\(definition.id) has no portable text")
            for parameter in definition.parameters {
                guard let access = parameter.access else { continue }
                let constPointer = try Regex("GB_GLOBAL const \\w+\\* GB_RESTRICT \(parameter.name)\\b")
                let pointer = try Regex("GB_GLOBAL \\w+\\* GB_RESTRICT \(parameter.name)\\b")
                #expect(text.contains(constPointer) || text.contains(pointer), "\(definition.id).\(parameter.name)")
                #expect(
                    (access == .readOnly) == text.contains(constPointer),
                    "\(definition.id).\(parameter.name) is declared \(access.rawValue)")
                checked += 1
            }
        }
        #expect(checked >= 25)
    }

    @Test("a twin that writes a wrong value at element 137 is reported there, with both values")
    func wrongElement() async throws {
        let device = try makeCPUDevice()
        let n = 1000
        let launch = vectorAddLaunch(n)
        let wrong = vectorAddTwin("vector_add_wrong") { i, sum in i == 137 ? sum + 1 : sum }
        let report = try await KernelValidator(seed: 11).validate(
            reference: vectorAdd(), on: device, candidate: wrong, on: device, launch: launch)
        let inputs = try launch.initialContents(seed: 11)
        let a = floats(inputs[0]), b = floats(inputs[1])
        #expect(!report.passed)
        let c = try #require(report.buffers.first { $0.name == "c" })
        #expect(c.mismatches == 1)
        #expect(c.count == n)
        #expect(
            c.firstMismatch
                == ElementMismatch(
                    buffer: "c", index: 137, reference: .float32(a[137] + b[137]),
                    candidate: .float32(a[137] + b[137] + 1)))
        #expect(report.firstMismatch?.index == 137)
        #expect(abs(c.maxAbsoluteDifference - 1) < 1e-6)
        #expect(report.description.contains("first difference at c[137]"))
        #expect(report.description.contains("FAILED"))
        #expect(report.referenceKernel == "vector_add")
        #expect(report.candidateKernel == "vector_add_wrong")
        #expect(device.pool.statistics.bytesInUse == 0)
    }

    @Test("an element the candidate never writes keeps its seeded pre-fill and is reported")
    func unwrittenElement() async throws {
        let device = try makeCPUDevice()
        let launch = vectorAddLaunch(600)
        let skips = vectorAddTwin("vector_add_skips_500") { i, sum in i == 500 ? nil : sum }
        let report = try await KernelValidator(seed: 5).validate(
            reference: vectorAdd(), on: device, candidate: skips, on: device, launch: launch)
        let inputs = try launch.initialContents(seed: 5)
        let a = floats(inputs[0]), b = floats(inputs[1]), prefill = floats(inputs[2])
        #expect(!report.passed)
        #expect(report.buffers.first { $0.name == "c" }?.mismatches == 1)
        #expect(
            report.firstMismatch
                == ElementMismatch(
                    buffer: "c", index: 500, reference: .float32(a[500] + b[500]), candidate: .float32(prefill[500])))
    }

    @Test("a relative difference of about 1e-6 passes the default float32 tolerance and fails an exact one")
    func tolerance() async throws {
        let device = try makeCPUDevice()
        let launch = vectorAddLaunch(4096)
        let nudged = vectorAddTwin("vector_add_nudged") { _, sum in sum * (1 + 1e-6) }
        let loose = try await KernelValidator().validate(
            reference: vectorAdd(), on: device, candidate: nudged, on: device, launch: launch)
        #expect(loose.passed, "\(loose)")
        let c = try #require(loose.buffers.first { $0.name == "c" })
        #expect(c.tolerance == .float32Default)
        #expect(c.maxRelativeDifference > 0)
        #expect(c.maxRelativeDifference < 2e-6)
        let strict = try await KernelValidator(tolerance: .exact).validate(
            reference: vectorAdd(), on: device, candidate: nudged, on: device, launch: launch)
        #expect(!strict.passed)
        let strictC = try #require(strict.buffers.first { $0.name == "c" })
        #expect(strictC.mismatches > 4096 / 2)
        #expect(strictC.tolerance == .exact)
        #expect(strict.buffers.filter { $0.name != "c" }.allSatisfy { $0.passed })
        // A per-buffer tolerance wins over the validator's.
        var perBuffer = launch
        perBuffer.arguments[2] = .buffer(.float32, count: 4096, tolerance: .exact)
        let buffer = try await KernelValidator(tolerance: .float32Default).validate(
            reference: vectorAdd(), on: device, candidate: nudged, on: device, launch: perBuffer)
        #expect(!buffer.passed)
    }

    @Test("the comparison rule: NaN equals only NaN, infinities equal themselves, integers compare exactly")
    func comparisonRule() async throws {
        let t = ValidationTolerance(absolute: 1e-3, relative: 1e-2)
        #expect(t.accepts(reference: .nan, candidate: .nan))
        #expect(!t.accepts(reference: .nan, candidate: 1))
        #expect(!t.accepts(reference: 1, candidate: .nan))
        #expect(t.accepts(reference: .infinity, candidate: .infinity))
        #expect(!t.accepts(reference: .infinity, candidate: -.infinity))
        #expect(!t.accepts(reference: 1e300, candidate: .infinity))
        #expect(t.accepts(reference: 100, candidate: 101.0005))
        #expect(!t.accepts(reference: 100, candidate: 101.002))
        #expect(ValidationTolerance.defaultFor(.float64) == ValidationTolerance(absolute: 1e-12, relative: 1e-12))
        #expect(ValidationTolerance.defaultFor(.int32) == .exact)

        // One int32 output: the candidate adds 1 at index 3, and writes NaN where the reference writes NaN (float64).
        let parameters: [KernelParameter] = [
            .buffer("ints", Int32.self), .buffer("reals", Double.self), .scalar(name: "n", type: .int32),
        ]
        func definition(_ id: String, _ offset: Int32) -> KernelDefinition {
            KernelDefinition(id: id, summary: "", parameters: parameters, portableText: nil, entryPoint: id) {
                context in
                let ints = try context.buffer(0, as: Int32.self), reals = try context.buffer(1, as: Double.self)
                for i in context.items.clamped(to: 0..<(try context.integer(2))) {
                    ints[i] = Int32(i) + (i == 3 ? offset : 0)
                    reals[i] = i == 2 ? .nan : Double(i)
                }
            }
        }
        let device = try makeCPUDevice()
        let report = try await KernelValidator().validate(
            reference: definition("r", 0), on: device, candidate: definition("c", 1), on: device,
            launch: ValidationLaunch(
                .covering(8), arguments: [.buffer(.int32, count: 8), .buffer(.float64, count: 8), .int32(8)]))
        #expect(report.buffers.map(\.name) == ["ints", "reals"])
        #expect(
            report.buffers[0].firstMismatch
                == ElementMismatch(buffer: "ints", index: 3, reference: .int32(3), candidate: .int32(4)))
        #expect(report.buffers[0].mismatches == 1)
        #expect(report.buffers[1].passed)
        #expect(report.buffers[1].maxAbsoluteDifference == 0)
        #expect(!report.passed)
    }

    @Test("the same seed gives the same bytes; another seed gives others; ranges and generators are kept")
    func seeds() throws {
        let launch = ValidationLaunch(
            .covering(1000),
            arguments: [
                .buffer(.float32, count: 1000), .buffer(.int32, count: 1000, contents: .uniform(lower: -3, upper: 9)),
                .buffer(.float64, count: 1000, contents: .generated { i, _ in Double(i) / 2 }), .int32(1000),
            ])
        let first = try launch.initialContents(seed: 42)
        #expect(first == (try launch.initialContents(seed: 42)))
        let other = try launch.initialContents(seed: 43)
        #expect(first[0] != other[0])
        #expect(first[1] != other[1])
        #expect(first[3] == nil)
        #expect(first[0]?.count == 4000)
        let a = floats(first[0])
        #expect(a.allSatisfy { $0 >= -1 && $0 <= 1 })
        #expect(Set(a).count > 990)
        let ints = (first[1] ?? []).withUnsafeBytes { Array($0.bindMemory(to: Int32.self)) }
        #expect(ints.allSatisfy { (-3...9).contains($0) })
        #expect(Set(ints) == Set(-3...9))
        let generated = (first[2] ?? []).withUnsafeBytes { Array($0.bindMemory(to: Double.self)) }
        #expect(generated == (0..<1000).map { Double($0) / 2 })
        // A buffer's contents do not depend on the other buffers' sizes.
        var longer = launch
        longer.arguments[1] = .buffer(.int32, count: 5000)
        #expect(try longer.initialContents(seed: 42)[0] == first[0])
    }

    @Test("bad arguments are refused naming the argument, the value and the limit, before anything is allocated")
    func badArguments() async throws {
        let device = try makeCPUDevice()
        let validator = KernelValidator()
        func check(
            _ launch: ValidationLaunch, _ expected: GPUBridgeError, sourceLocation: SourceLocation = #_sourceLocation
        ) async {
            let error = await bridgeError(
                {
                    try await validator.validate(vectorAdd(), reference: device, candidate: device, launch: launch)
                }, sourceLocation: sourceLocation)
            #expect(error == expected, sourceLocation: sourceLocation)
        }
        var launch = vectorAddLaunch(16)
        launch.arguments.removeLast()
        await check(
            launch,
            .invalidArgument(
                name: "arguments", value: "3 arguments", limit: "4, the parameters of 'vector_add' (a, b, c, n)"))
        launch = vectorAddLaunch(16)
        launch.arguments[0] = .buffer(.float32, count: 0)
        await check(
            launch,
            .invalidArgument(
                name: "arguments[0] (a) count", value: "0", limit: "1...\(device.pool.limit / 4) elements of float32"))
        launch.arguments[0] = .buffer(.float32, count: device.pool.limit)
        await check(
            launch,
            .invalidArgument(
                name: "arguments[0] (a) count", value: "\(device.pool.limit)",
                limit: "1...\(device.pool.limit / 4) elements of float32"))
        launch = vectorAddLaunch(16)
        launch.arguments[3] = .float(16)
        await check(
            launch, .invalidArgument(name: "arguments[3] (n)", value: "float32(16.0)", limit: "a scalar of type int32"))
        launch = vectorAddLaunch(16)
        launch.arguments[1] = .buffer(.float64, count: 16)
        await check(
            launch,
            .invalidArgument(
                name: "arguments[1] (b) type", value: "float64 (8-byte elements)", limit: "4-byte elements, as declared"
            ))
        launch = vectorAddLaunch(16)
        launch.arguments[2] = .int32(16)
        await check(
            launch,
            .invalidArgument(name: "arguments[2] (c)", value: "scalar int32(16)", limit: "a buffer of 4-byte elements"))
        launch = vectorAddLaunch(16)
        launch.arguments[2] = .buffer(.float32, count: 16, tolerance: ValidationTolerance(absolute: -1, relative: 0))
        await check(
            launch,
            .invalidArgument(name: "arguments[2] (c) tolerance.absolute", value: "-1.0", limit: "a finite value >= 0"))
        launch = vectorAddLaunch(16)
        launch.arguments[0] = .buffer(.float32, count: 16, contents: .uniform(lower: 1, upper: -1))
        await check(
            launch,
            .invalidArgument(
                name: "arguments[0] contents", value: "uniform(1.0...-1.0)", limit: "finite bounds with lower <= upper")
        )
        // Integer contents must be integers of the element type.
        let ints = ValidationLaunch(
            .covering(4), arguments: [.buffer(.uint8, count: 4, contents: .generated { i, _ in i == 2 ? 256 : 0 })])
        #expect(
            bridgeError({ try ints.initialContents(seed: 1) })
                == .invalidArgument(
                    name: "arguments[0] contents at index 2", value: "256.0",
                    limit: "an integer in uint8's range 0...255"))
        // A candidate whose parameters differ from the reference's.
        let other = KernelDefinition(
            id: "other", summary: "", parameters: [.buffer("x", Double.self), .scalar(name: "n", type: .int32)],
            portableText: nil,
            entryPoint: "other", swift: { _ in })
        let mismatch = await bridgeError {
            try await validator.validate(
                reference: vectorAdd(), on: device, candidate: other, on: device, launch: vectorAddLaunch(16))
        }
        #expect(
            mismatch
                == .invalidArgument(
                    name: "candidate 'other' parameters", value: "2 parameters",
                    limit: "4, as the reference 'vector_add' declares"))
        let negative = await bridgeError {
            try await KernelValidator(tolerance: ValidationTolerance(absolute: 0, relative: .nan)).validate(
                vectorAdd(), reference: device, candidate: device, launch: vectorAddLaunch(16))
        }
        #expect(negative == .invalidArgument(name: "tolerance.relative", value: "nan", limit: "a finite value >= 0"))
        #expect(device.counters.allocations == 0)
        #expect(device.pool.statistics.bytesInUse == 0)
    }

    @Test("a launch that fails after the buffers were made returns them all to the pool")
    func failingLaunchFreesMemory() async throws {
        let device = try makeCPUDevice()
        let failing = vectorAddTwin("vector_add_fails") { _, _ in nil }
        var throwing = failing
        throwing.swift = SwiftKernel { _ in
            throw GPUBridgeError.backendFailure(backend: "cpu", call: "test", code: 1, message: "fails on purpose")
        }
        let error = await bridgeError {
            try await KernelValidator().validate(
                reference: vectorAdd(), on: device, candidate: throwing, on: device, launch: vectorAddLaunch(100_000))
        }
        #expect(error != nil)
        #expect(device.counters.allocations > 0)
        #expect(device.pool.statistics.bytesInUse == 0)
        let unknown = bridgeError { try BuiltinKernelValidation.launch("nope", size: 1) }
        #expect(unknown == .notFound(kind: "built-in kernel", name: "nope"))
        #expect(
            bridgeError({ try BuiltinKernelValidation.launch("matmul", size: 46_341) })
                == .invalidArgument(name: "size", value: "46341", limit: "1...46340 for matmul"))
    }
}

@Suite(
    "gpubridge validate",
    .enabled(if: CLIBinary.path != nil, "the gpubridge executable was not built beside the tests"),
    .serialized)
struct ValidateCommandTests {
    @Test("validate vector-add --reference cpu --candidate cpu passes and exits 0")
    func cpuAgainstCPU() throws {
        let run = try runProcess(
            try #require(CLIBinary.path),
            ["validate", "vector-add", "--reference", "cpu", "--candidate", "cpu", "--size", "5000"])
        #expect(run.status == 0, "\(run.output)")
        #expect(run.output.contains("vector_add: PASSED — reference cpu:0"))
        #expect(run.output.contains("c (float32 x 5000): all within tolerance; max |diff| 0"))
    }

    @Test("a bad device, kernel or size is refused with the usage status")
    func badInput() throws {
        let cli = try #require(CLIBinary.path)
        #expect(
            try runProcess(cli, ["validate", "vector-add", "--reference", "tpu", "--candidate", "cpu"]).status == 64)
        #expect(try runProcess(cli, ["validate", "nope", "--reference", "cpu", "--candidate", "cpu"]).status == 64)
        #expect(
            try runProcess(cli, ["validate", "matmul", "--size", "0", "--reference", "cpu", "--candidate", "cpu"])
                .status == 64)
        #expect(
            try runProcess(cli, ["validate", "vector-add", "--reference", "cpu", "--candidate", "cpu:7"]).status == 2)
    }
}
