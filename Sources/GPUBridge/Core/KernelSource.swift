/// The language a kernel's text is written in.
public enum KernelLanguage: String, Sendable, Hashable, Codable {
    /// OpenCL C, compiled by the OpenCL driver.
    case openCLC = "opencl-c"
    /// CUDA C++, compiled by NVRTC.
    case cuda
    /// A Swift function, run by the CPU backend.
    case swift
}

/// How many elements a buffer parameter must hold for a launch to be safe, where the runtime can know it.
public enum BufferExtent: Sendable, Hashable {
    /// Nothing is known; any length is accepted.
    case any
    /// At least this many elements.
    case elements(Int)
    /// At least as many elements as the launch has work-items in total.
    case globalSize
    /// At least as many elements as the integer scalar argument at this index says.
    case argument(Int)
    /// At least as many elements as the launch has groups in total (one result per group).
    case groupCount
    /// At least the product of the integer scalar arguments at these indices (a matrix of rows x columns, say); each
    /// of them must be at least 0, and a product that overflows is refused.
    case product([Int])
}

/// Whether a kernel may write a buffer parameter. A value type, part of a kernel's declared parameters: any thread
/// may read it; it costs nothing at launch (the validator reads it to choose which buffers to compare).
public enum BufferAccess: String, Sendable, Hashable, Codable {
    /// The kernel only reads the buffer (`GB_GLOBAL const T*` in the portable text, `DeviceArray` in a Swift kernel).
    case readOnly = "read-only"
    /// The kernel may write the buffer (the default where nothing is declared).
    case readWrite = "read-write"
}

/// A declared kernel parameter, used to check an argument list before launch.
public enum KernelParameter: Sendable, Hashable {
    /// A buffer whose elements have `elementSize` bytes and whose length must satisfy `extent`; `access` says
    /// whether the kernel may write it (`KernelValidator` compares only the buffers a kernel may write).
    case buffer(name: String, elementSize: Int, extent: BufferExtent, access: BufferAccess = .readWrite)
    /// A scalar of this type.
    case scalar(name: String, type: ScalarType)

    /// A buffer of `Element`.
    public static func buffer<Element: BitwiseCopyable>(
        _ name: String, _ element: Element.Type, extent: BufferExtent = .any, access: BufferAccess = .readWrite
    ) -> KernelParameter {
        .buffer(name: name, elementSize: MemoryLayout<Element>.stride, extent: extent, access: access)
    }

    public var name: String {
        switch self {
        case let .buffer(name, _, _, _), let .scalar(name, _): return name
        }
    }

    /// The buffer's declared access, or nil for a scalar.
    public var access: BufferAccess? {
        if case let .buffer(_, _, _, access) = self { return access }
        return nil
    }
}

/// A Swift function that the CPU backend runs as a kernel, over a range of work-groups at a time.
///
/// The function is called concurrently from several threads with disjoint group ranges; it must only write the
/// elements its work-items own.
public final class SwiftKernel: Sendable {
    public typealias Body = @Sendable (CPUKernelContext) throws -> Void

    /// How the CPU backend spreads a launch over its cores.
    public enum Scheduling: Sendable, Hashable {
        /// Work grows with the number of work-items: small launches run on the calling thread, large ones are split.
        case perItem
        /// Each group may do unbounded work (grid-stride loops, reductions): any launch of two or more groups is
        /// split across the cores, in up to four chunks per core so that uneven groups balance.
        case perGroup
        /// Small launches run on the calling thread, as `perItem`; larger ones are split into one chunk per core and
        /// no more: for a body whose every call has a cost of its own beyond its groups (a library call that packs
        /// its operands, as `matmul`'s `cblas_sgemm` does). The groups should cost the same, since no chunk can take
        /// over another's.
        case perCore
        /// Work grows with the bytes of the launch's buffer arguments: one pass over them (reductions, one row per
        /// group, histograms). When the buffers hold at most `CPUBackend.inlinePassBytes` and the queue is idle, the
        /// launch runs in one chunk on the calling thread, since such a pass takes less than handing it to the
        /// workers; larger ones are split as `perGroup`.
        case perByte
        /// The body threads itself (a library call that runs on threads of its own, as `matmul`'s `cblas_sgemm` does
        /// on a multi-threaded OpenBLAS): every launch is one call of the body over all its groups. A launch runs on
        /// the calling thread when the queue is idle (whatever its size: the caller takes part in the call as the
        /// library's first thread, and `enqueue` returns once the call has run), otherwise on the queue's worker in
        /// turn; the queue runs one launch at a time, so the library's threads have the cores to themselves.
        case threaded
    }

    public let body: Body
    public let scheduling: Scheduling

    public init(scheduling: Scheduling = .perItem, _ body: @escaping Body) {
        self.body = body
        self.scheduling = scheduling
    }
}

/// A kernel: its name, the language and text it is written in, and the function to enter.
public struct KernelSource: Sendable {
    /// The kernel's body: text for a device compiler, or a Swift function for the CPU backend.
    public enum Body: Sendable {
        case text(String)
        case swift(SwiftKernel)
    }

    /// A readable name (used in logs, errors and cache keys).
    public var name: String
    public var language: KernelLanguage
    public var body: Body
    /// The function the launch enters (`__global__` / `__kernel` name).
    public var entryPoint: String
    /// Declared parameters, where known: the runtime checks count, kinds, types and buffer extents before launch.
    public var parameters: [KernelParameter]?
    /// The standard routine this kernel computes, when it computes one: a backend with a vendor library for it may
    /// run the library in the kernel's place (see `LibraryRoutine`). Nil (the default) for a kernel that is always
    /// launched as written.
    public var routine: LibraryRoutine?
    /// The group shape and scalar ranges a launch must keep to, where the kernel has any (`LaunchLimits`); checked
    /// before launch like the parameters. Nil (the default): none beyond the device's own.
    public var limits: LaunchLimits?

    /// A kernel written as text for a device compiler.
    public init(
        name: String, language: KernelLanguage, text: String, entryPoint: String, parameters: [KernelParameter]? = nil
    ) {
        self.name = name
        self.language = language
        self.body = .text(text)
        self.entryPoint = entryPoint
        self.parameters = parameters
    }

    /// A kernel written as a Swift function for the CPU backend.
    public init(
        name: String, parameters: [KernelParameter]? = nil, scheduling: SwiftKernel.Scheduling = .perItem,
        swift body: @escaping SwiftKernel.Body
    ) {
        self.name = name
        self.language = .swift
        self.body = .swift(SwiftKernel(scheduling: scheduling, body))
        self.entryPoint = name
        self.parameters = parameters
    }

    /// The source text, or nil for a Swift kernel.
    public var text: String? {
        if case let .text(text) = body { return text }
        return nil
    }
}

/// Options for a kernel compilation. Part of the cache key.
public struct CompileOptions: Sendable, Hashable, Codable {
    /// Preprocessor macros, `-D NAME=VALUE` (or `-D NAME` for an empty value).
    public var defines: [String: String]
    /// Optimisation on (the default) or off (`-cl-opt-disable`, `-G`/`-O0`-like where available).
    public var optimize: Bool
    /// Fast, less exact math (`-use_fast_math`, `-cl-fast-relaxed-math`).
    public var fastMath: Bool
    /// Target override, for example `sm_80` or `compute_90` for CUDA (PTX). Nil: the device's own architecture.
    public var target: String?
    /// Emit line information for profilers (`-lineinfo`).
    public var lineInfo: Bool
    /// Register cap per thread (CUDA `-maxrregcount`).
    public var maxRegisters: Int?
    /// Extra flags passed through unchanged.
    public var extraFlags: [String]

    public init(
        defines: [String: String] = [:], optimize: Bool = true, fastMath: Bool = false, target: String? = nil,
        lineInfo: Bool = false, maxRegisters: Int? = nil, extraFlags: [String] = []
    ) {
        self.defines = defines
        self.optimize = optimize
        self.fastMath = fastMath
        self.target = target
        self.lineInfo = lineInfo
        self.maxRegisters = maxRegisters
        self.extraFlags = extraFlags
    }

    /// `-D` flags in a stable (sorted) order.
    public var defineFlags: [String] {
        defines.keys.sorted().map { key in
            let value = defines[key] ?? ""
            return value.isEmpty ? "-D\(key)" : "-D\(key)=\(value)"
        }
    }
}

/// What a compiler produced: the binary a backend can load, its format and the compiler's log.
public struct KernelBinary: Sendable, Hashable {
    /// Format tag, for example `cubin`, `ptx`, `opencl-binary`.
    public var format: String
    public var bytes: [UInt8]
    /// The compiler's log (warnings); may be empty.
    public var log: String

    public init(format: String, bytes: [UInt8], log: String = "") {
        self.format = format
        self.bytes = bytes
        self.log = log
    }
}
