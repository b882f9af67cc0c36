import Synchronization

/// One named kernel with its signature and an implementation per backend: portable text for CUDA and OpenCL, a Swift
/// function for the CPU backend.
public struct KernelDefinition: Sendable {
    /// The catalog id (`vector_add`, `matmul`...).
    public var id: String
    /// One line on what it computes.
    public var summary: String
    /// The declared parameters (checked before every launch).
    public var parameters: [KernelParameter]
    /// The portable text (see `PortablePrelude`), or nil when the kernel has no device implementation.
    public var portable: PortableKernel?
    /// The CPU implementation, or nil when the kernel has none.
    public var swift: SwiftKernel?
    /// The standard routine the kernel computes, when it computes one (`KernelSource.routine`): set on the sources
    /// made for CUDA and OpenCL, where a vendor library may run in the kernel's place.
    public var routine: LibraryRoutine?
    /// The group shape and scalar ranges its launches must keep to, on every backend (`KernelSource.limits`).
    public var limits: LaunchLimits?

    public init(
        id: String, summary: String, parameters: [KernelParameter], portableText: String?, entryPoint: String,
        scheduling: SwiftKernel.Scheduling = .perItem, swift: SwiftKernel.Body?
    ) {
        self.id = id
        self.summary = summary
        self.parameters = parameters
        self.portable = portableText.map {
            PortableKernel(name: id, text: $0, entryPoint: entryPoint, parameters: parameters)
        }
        self.swift = swift.map { SwiftKernel(scheduling: scheduling, $0) }
    }

    /// This definition declaring that its kernel computes `routine` (see `LibraryRoutine`).
    public func computing(_ routine: LibraryRoutine) -> KernelDefinition {
        var copy = self
        copy.routine = routine
        return copy
    }

    /// This definition with launch limits (see `LaunchLimits`).
    public func limited(_ limits: LaunchLimits) -> KernelDefinition {
        var copy = self
        copy.limits = limits
        return copy
    }

    /// The backends this kernel has an implementation for.
    public var backends: [BackendKind] {
        (portable != nil ? [BackendKind.cuda, .opencl] : []) + (swift != nil ? [.cpu] : [])
    }

    /// The source to compile on a device of `backend`; `.unsupported` when this kernel has no implementation there.
    public func source(for backend: BackendKind) throws(GPUBridgeError) -> KernelSource {
        switch backend {
        case .cpu:
            guard let swift else { throw .unsupported(feature: "kernel '\(id)'", backend: backend.rawValue) }
            var source = KernelSource(name: id, parameters: parameters) { _ in }
            source.body = .swift(swift)
            source.limits = limits
            return source
        case .cuda, .opencl:
            guard let portable else { throw .unsupported(feature: "kernel '\(id)'", backend: backend.rawValue) }
            var source = try portable.source(for: backend == .cuda ? .cuda : .openCLC)
            source.routine = routine
            source.limits = limits
            return source
        }
    }
}

/// The named kernels an application can run: the built-in library plus its own registrations.
///
/// Thread safety: any task may read or register concurrently. An unknown id is an error (`.notFound`), never a
/// passthrough. Cost: lookups are a dictionary read under a lock.
public final class KernelCatalog: Sendable {
    private let definitions = Mutex<[String: KernelDefinition]>([:])

    /// A catalog holding the built-in kernels (`BuiltinKernels.all`).
    public init(builtins: Bool = true) {
        if builtins {
            definitions.withLock { all in for d in BuiltinKernels.all { all[d.id] = d } }
        }
    }

    /// Registers (or replaces) a kernel. The id must be non-empty and the definition must implement at least one backend.
    public func register(_ definition: KernelDefinition) throws(GPUBridgeError) {
        guard !definition.id.isEmpty else {
            throw .invalidArgument(name: "id", value: "\"\"", limit: "a non-empty kernel id")
        }
        guard !definition.backends.isEmpty else {
            throw .invalidArgument(
                name: "definition '\(definition.id)'", value: "no implementation",
                limit: "portable text and/or a Swift function")
        }
        definitions.withLock { $0[definition.id] = definition }
    }

    /// The kernel registered under `id`.
    public func definition(_ id: String) throws(GPUBridgeError) -> KernelDefinition {
        guard let found = definitions.withLock({ $0[id] }) else {
            throw .notFound(kind: "kernel", name: id)
        }
        return found
    }

    /// Every registered kernel, sorted by id.
    public var all: [KernelDefinition] {
        definitions.withLock { Array($0.values) }.sorted { $0.id < $1.id }
    }

    /// Compiles (or finds cached) kernel `id` for `device`. On a device that shares host memory (a CPU OpenCL
    /// device) `GB_CONTIGUOUS_ITEMS` is defined, so `GB_FOR_EACH_ITEM` loops give each work-item one contiguous chunk.
    public func kernel(_ id: String, on device: Device, options: CompileOptions = CompileOptions())
        throws(GPUBridgeError) -> Kernel
    {
        try device.compile(
            try definition(id).source(for: device.id.backend), options: Self.options(options, for: device))
    }

    /// `options` as the catalog compiles its kernels for `device`: with `GB_CONTIGUOUS_ITEMS` defined on a device
    /// that shares host memory and is not the CPU backend.
    static func options(_ options: CompileOptions, for device: Device) -> CompileOptions {
        var options = options
        if device.info.capabilities.unifiedMemory, device.id.backend != .cpu {
            options.defines["GB_CONTIGUOUS_ITEMS"] = "1"
        }
        return options
    }
}
