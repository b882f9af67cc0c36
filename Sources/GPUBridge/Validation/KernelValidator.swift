/// Differential validation: runs a kernel on a reference device and a candidate device with the same seeded inputs
/// and compares every buffer the kernel may write, element by element.
///
/// Two checks: one `KernelDefinition` on two devices (the CPU against a GPU, PoCL against CUDA), or two definitions
/// of the same signature (a Swift kernel against a hand-written twin), each on its own device (the same device is
/// allowed). Each side gets the same bytes: buffers, outputs included, are filled from `ValidationContents` under
/// `seed`, so an element a kernel fails to write keeps a value the other side overwrote and shows as a difference.
///
/// Comparison: floating-point elements pass when `|reference - candidate| <= absolute + relative * |reference|`
/// (`ValidationTolerance`; defaults float32 1e-5 + 1e-5, float64 1e-12 + 1e-12), NaN equals NaN only when both are
/// NaN; integer elements compare exactly. Which buffers are compared: `ValidationBuffer.Comparison` (by default those
/// the portable text does not declare `const`).
///
/// Errors (`GPUBridgeError`), before anything is allocated: `invalidArgument` naming the argument, its value and the
/// limit (argument count, kinds, element sizes, scalar types, a count below 1 or past a device pool's limit, contents
/// that do not fit the element type, a negative tolerance), or naming the candidate's parameter that does not match
/// the reference's; `unsupported` when a definition has no implementation for a device's backend; then the device's
/// own errors (compilation, launch, copies). Every buffer the validator allocates goes back to its device's pool
/// on every path: success, mismatch and error.
///
/// A value type: any task may use it, and several validations may run at once (each owns its buffers). Cost: the
/// buffers on both devices, three host copies of each buffer (contents, two results), one compile (or cache hit) and
/// one launch per side, run one side after the other, then one pass over the compared elements.
public struct KernelValidator: Sendable {
    /// The seed every buffer's contents derive from.
    public var seed: UInt64
    /// The tolerance for floating-point buffers that set none; nil: `ValidationTolerance.defaultFor(type)`.
    public var tolerance: ValidationTolerance?
    /// Options for both compilations (on a device sharing host memory, other than the CPU backend,
    /// `GB_CONTIGUOUS_ITEMS` is defined as `KernelCatalog` does).
    public var compileOptions: CompileOptions

    public init(
        seed: UInt64 = 1, tolerance: ValidationTolerance? = nil, compileOptions: CompileOptions = CompileOptions()
    ) {
        self.seed = seed
        self.tolerance = tolerance
        self.compileOptions = compileOptions
    }

    /// Runs `definition` on `reference` and on `candidate` and compares the results.
    public func validate(
        _ definition: KernelDefinition, reference: Device, candidate: Device, launch: ValidationLaunch
    ) async throws(GPUBridgeError) -> ValidationReport {
        try await validate(reference: definition, on: reference, candidate: definition, on: candidate, launch: launch)
    }

    /// Runs `referenceDefinition` on `referenceDevice` and `candidateDefinition` on `candidateDevice` and compares
    /// the results. The two definitions must declare the same parameters (kinds, element sizes, scalar types; names
    /// may differ).
    public func validate(
        reference referenceDefinition: KernelDefinition, on referenceDevice: Device,
        candidate candidateDefinition: KernelDefinition, on candidateDevice: Device, launch: ValidationLaunch
    ) async throws(GPUBridgeError) -> ValidationReport {
        try tolerance?.check("tolerance")
        try Self.checkSameSignature(referenceDefinition, candidateDefinition)
        let limit = min(referenceDevice.pool.limit, candidateDevice.pool.limit)
        let buffers = try Self.checkArguments(launch, for: referenceDefinition, byteLimit: limit)
        let writable = zip(WritableParameters.of(referenceDefinition), WritableParameters.of(candidateDefinition))
            .map { $0 || $1 }
        let compared = buffers.filter { index, buffer in
            switch buffer.comparison {
            case .always: return true
            case .never: return false
            case .ifWritable: return writable[index]
            }
        }.map(\.index)
        // Compile both before allocating anything.
        let referenceKernel = try referenceDevice.compile(
            try referenceDefinition.source(for: referenceDevice.id.backend),
            options: KernelCatalog.options(compileOptions, for: referenceDevice))
        let candidateKernel = try candidateDevice.compile(
            try candidateDefinition.source(for: candidateDevice.id.backend),
            options: KernelCatalog.options(compileOptions, for: candidateDevice))
        let contents = try launch.initialContents(seed: seed)
        let referenceResults = try await Self.run(referenceKernel, launch, contents, compared)
        let candidateResults = try await Self.run(candidateKernel, launch, contents, compared)
        var comparisons: [BufferComparison] = []
        for (position, index) in compared.enumerated() {
            guard case let .buffer(buffer) = launch.arguments[index] else { continue }
            comparisons.append(
                BufferComparator.compare(
                    name: referenceDefinition.parameters[index].name, argument: index, type: buffer.type,
                    count: buffer.count,
                    tolerance: buffer.tolerance ?? tolerance ?? .defaultFor(buffer.type),
                    reference: referenceResults[position], candidate: candidateResults[position]))
        }
        return ValidationReport(
            referenceKernel: referenceDefinition.id, referenceDevice: referenceDevice.description,
            candidateKernel: candidateDefinition.id, candidateDevice: candidateDevice.description,
            launch: launch.launch, seed: seed, buffers: comparisons)
    }

    /// Uploads `contents`, launches, and reads back the buffers at `compared` (in that order). The buffers are
    /// local: they return to the pool when this returns or throws (a launch that was enqueued has completed by then).
    private static func run(
        _ kernel: Kernel, _ launch: ValidationLaunch, _ contents: [[UInt8]?], _ compared: [Int]
    ) async throws(GPUBridgeError) -> [[UInt8]] {
        let device = kernel.device
        var buffers: [Int: Buffer<UInt8>] = [:]
        var arguments: [KernelArgument] = []
        for (index, argument) in launch.arguments.enumerated() {
            switch argument {
            case let .scalar(value): arguments.append(.scalar(value))
            case .buffer:
                let buffer = try device.makeBuffer(copying: contents[index] ?? [])
                buffers[index] = buffer
                arguments.append(.buffer(buffer))
            }
        }
        try await device.launch(kernel, launch.launch, arguments: arguments)
        var results: [[UInt8]] = []
        for index in compared {
            guard let buffer = buffers[index] else { continue }
            results.append(try buffer.toArray())
        }
        return results
    }

    /// The candidate's parameters must match the reference's in count, kind, element size and scalar type.
    static func checkSameSignature(_ reference: KernelDefinition, _ candidate: KernelDefinition)
        throws(GPUBridgeError)
    {
        guard reference.parameters.count == candidate.parameters.count else {
            throw .invalidArgument(
                name: "candidate '\(candidate.id)' parameters", value: "\(candidate.parameters.count) parameters",
                limit: "\(reference.parameters.count), as the reference '\(reference.id)' declares")
        }
        for (i, (r, c)) in zip(reference.parameters, candidate.parameters).enumerated() {
            let same: Bool
            switch (r, c) {
            case let (.buffer(_, a, _, _), .buffer(_, b, _, _)): same = a == b
            case let (.scalar(_, a), .scalar(_, b)): same = a == b
            default: same = false
            }
            guard same else {
                throw .invalidArgument(
                    name: "candidate '\(candidate.id)' parameter \(i) (\(c.name))", value: describe(c),
                    limit: "\(describe(r)), as the reference '\(reference.id)' declares")
            }
        }
    }

    /// Checks `launch.arguments` against `definition`'s parameters; returns the buffers with their positions.
    static func checkArguments(_ launch: ValidationLaunch, for definition: KernelDefinition, byteLimit: Int)
        throws(GPUBridgeError) -> [(index: Int, buffer: ValidationBuffer)]
    {
        let parameters = definition.parameters
        guard launch.arguments.count == parameters.count else {
            throw .invalidArgument(
                name: "arguments", value: "\(launch.arguments.count) arguments",
                limit:
                    "\(parameters.count), the parameters of '\(definition.id)' (\(parameters.map(\.name).joined(separator: ", ")))"
            )
        }
        var buffers: [(index: Int, buffer: ValidationBuffer)] = []
        for (index, (argument, parameter)) in zip(launch.arguments, parameters).enumerated() {
            let name = "arguments[\(index)] (\(parameter.name))"
            switch (argument, parameter) {
            case let (.buffer(buffer), .buffer(_, elementSize, _, _)):
                guard buffer.type.byteSize == elementSize else {
                    throw .invalidArgument(
                        name: "\(name) type", value: "\(buffer.type.rawValue) (\(buffer.type.byteSize)-byte elements)",
                        limit: "\(elementSize)-byte elements, as declared")
                }
                _ = try ValidationLaunch.byteCount(of: buffer, name: name, limit: byteLimit)
                try buffer.tolerance?.check("\(name) tolerance")
                buffers.append((index, buffer))
            case let (.scalar(value), .scalar(_, type)):
                guard value.type == type else {
                    throw .invalidArgument(
                        name: name, value: value.description, limit: "a scalar of type \(type.rawValue)")
                }
            case let (.scalar(value), .buffer(_, elementSize, _, _)):
                throw .invalidArgument(
                    name: name, value: "scalar \(value)", limit: "a buffer of \(elementSize)-byte elements")
            case let (.buffer(buffer), .scalar(_, type)):
                throw .invalidArgument(
                    name: name, value: "a buffer of \(buffer.count) \(buffer.type.rawValue)",
                    limit: "a scalar of type \(type.rawValue)")
            }
        }
        return buffers
    }

    static func describe(_ parameter: KernelParameter) -> String {
        switch parameter {
        case let .buffer(_, size, _, access): return "a \(access.rawValue) buffer of \(size)-byte elements"
        case let .scalar(_, type): return "a scalar of type \(type.rawValue)"
        }
    }
}
