import Glibc
import GPUBridge

/// CUDA C++ to cubin (or PTX) with NVRTC, loaded at run time. Needs no GPU and no driver, so CI can test it.
///
/// - Default target: a **cubin** for the device's exact `sm_XY` (`--gpu-architecture=sm_XY`, `nvrtcGetCUBIN`). A
///   cubin made by a newer NVRTC loads on an older driver of the same major version, which PTX does not
///   (`CUDA_ERROR_UNSUPPORTED_PTX_VERSION`). When this NVRTC does not know the device (a device newer than the
///   compiler), the default is **PTX** for the newest `compute_XY` it supports below the device, which the driver
///   JIT-compiles.
/// - `CompileOptions.target` overrides: `sm_XY` (also `sm_90a`...) gives a cubin, `compute_XY` gives PTX
///   (`nvrtcGetPTX`, stored without its terminating NUL).
/// - Options: `defines` -> `-DNAME=VALUE`; `optimize == false` -> `--device-debug` (`-G`: NVRTC turns device
///   optimisation off with it); `fastMath` -> `--use_fast_math`; `lineInfo` -> `--generate-line-info`;
///   `maxRegisters` -> `--maxrregcount=N`; `extraFlags` appended unchanged. `flags(for:architecture:)` is that exact
///   list, so every option is part of the kernel cache key.
/// - Kernels are looked up by name after loading: declare them `extern "C" __global__`.
///
/// Ownership: shared; the library stays loaded for the process. Thread safety: immutable; each compilation uses its
/// own NVRTC program, which NVRTC allows from several threads. Cost: a compilation takes NVRTC's time (tens to
/// hundreds of milliseconds); the kernel cache makes it a one-time cost per source, options and architecture.
public final class NVRTCCompiler: Sendable {
    /// The file the library was loaded from.
    public let path: String
    /// How it was found: `explicit path`, `GPUBRIDGE_NVRTC`, `CUDA_HOME`, `CUDA_PATH`, `/usr/local/cuda`,
    /// `python wheel` or `loader path`.
    public let origin: String
    /// `nvrtcVersion`.
    public let major: Int
    public let minor: Int
    /// The real architectures NVRTC can compile for (`nvrtcGetSupportedArchs`: 75, 80, 86, 89, 90, ...), ascending.
    public let supportedArchitectures: [Int]

    private let library: DynamicLibrary
    private let api: NVRTCFunctions

    /// The NVRTC found by the default search (`NVRTCLocator`), loaded once per process.
    public static let shared: Result<NVRTCCompiler, NVRTCUnavailable> = locate()

    /// Searches for NVRTC (an explicit file path first when given) and loads the first that works.
    public static func locate(explicitPath: String? = nil) -> Result<NVRTCCompiler, NVRTCUnavailable> {
        let (candidates, notes) = NVRTCLocator.candidates(explicitPath: explicitPath)
        var attempts = notes
        for candidate in candidates {
            if candidate.isFile, !FileSearch.exists(candidate.path) {
                attempts.append("\(candidate.path) (\(candidate.origin)): no such file")
                continue
            }
            switch load(candidate) {
            case let .success(compiler): return .success(compiler)
            case let .failure(reason): attempts.append("\(candidate.path) (\(candidate.origin)): \(reason)")
            }
        }
        return .failure(NVRTCUnavailable(attempts: attempts))
    }

    private static func load(_ candidate: NVRTCLocator.Candidate) -> Result<NVRTCCompiler, LoadFailure> {
        let library: DynamicLibrary
        switch DynamicLibrary.open(candidate.path) {
        case let .success(opened): library = opened
        case let .failure(error): return .failure(LoadFailure(error.message))
        }
        guard let api = NVRTCFunctions(library) else {
            return .failure(LoadFailure("not a usable NVRTC (a required nvrtc* function is missing)"))
        }
        var major: Int32 = 0
        var minor: Int32 = 0
        guard api.version(&major, &minor) == 0 else { return .failure(LoadFailure("nvrtcVersion failed")) }
        let path = library.path(containing: "nvrtcVersion") ?? candidate.path
        // NVRTC dlopens libnvrtc-builtins.so.MAJOR.MINOR by name when it first compiles. The wheels and the toolkit
        // set RPATH $ORIGIN, so it is found next to libnvrtc; loading it here by full path makes that independent of
        // RPATH and LD_LIBRARY_PATH (the loader matches the later request by its soname).
        if let slash = path.lastIndex(of: "/") {
            let builtins = "\(path[..<slash])/libnvrtc-builtins.so.\(major).\(minor)"
            if FileSearch.exists(builtins) { _ = DynamicLibrary.open(builtins) }
        }
        var architectures: [Int] = []
        if let count = api.getNumSupportedArchs, let get = api.getSupportedArchs {
            var n: Int32 = 0
            if count(&n) == 0, n > 0 {
                var values = [Int32](repeating: 0, count: Int(n))
                if get(&values) == 0 { architectures = values.map(Int.init).sorted() }
            }
        }
        return .success(
            NVRTCCompiler(
                path: path, origin: candidate.origin, major: Int(major), minor: Int(minor),
                supportedArchitectures: architectures, library: library, api: api))
    }

    private struct LoadFailure: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }

    private init(
        path: String, origin: String, major: Int, minor: Int, supportedArchitectures: [Int],
        library: DynamicLibrary, api: NVRTCFunctions
    ) {
        self.path = path
        self.origin = origin
        self.major = major
        self.minor = minor
        self.supportedArchitectures = supportedArchitectures
        self.library = library
        self.api = api
    }

    /// `NVRTC major.minor`: the compiler part of kernel cache keys.
    public var version: String { "NVRTC \(major).\(minor)" }

    /// Whether this NVRTC can emit cubins (`nvrtcGetCUBIN`, CUDA 11.1+); without it every target becomes PTX.
    public var emitsCubin: Bool { api.getCUBINSize != nil && api.getCUBIN != nil }

    /// The `--gpu-architecture` value a compilation uses: `options.target` when set, else the device's
    /// `architecture` (`sm_XY`), else (when NVRTC does not know the device) PTX for the newest older `compute_XY`.
    public func target(for options: CompileOptions, architecture: String) -> String {
        if let target = options.target { return target }
        guard let number = Self.architectureNumber(architecture) else { return architecture }
        if supportedArchitectures.isEmpty || supportedArchitectures.contains(number) {
            return emitsCubin ? "sm_\(number)" : "compute_\(number)"
        }
        if let newest = supportedArchitectures.last, number > newest,
            let best = supportedArchitectures.last(where: { $0 <= number })
        {
            return "compute_\(best)"
        }
        return architecture  // older than anything NVRTC supports: NVRTC reports it
    }

    /// The exact NVRTC options a compilation passes, in order.
    public func flags(for options: CompileOptions, architecture: String) -> [String] {
        Self.flags(target: target(for: options, architecture: architecture), options: options)
    }

    /// The NVRTC options for `options` with the architecture already resolved to `target`.
    public static func flags(target: String, options: CompileOptions) -> [String] {
        var flags = ["--gpu-architecture=\(target)"]
        flags += options.defineFlags
        if !options.optimize { flags.append("--device-debug") }
        if options.fastMath { flags.append("--use_fast_math") }
        if options.lineInfo { flags.append("--generate-line-info") }
        if let registers = options.maxRegisters { flags.append("--maxrregcount=\(registers)") }
        flags += options.extraFlags
        return flags
    }

    /// Compiles `source` (CUDA C++) for a device of `architecture` (`sm_XY`), honouring `options.target`.
    /// Returns a `cubin` or `ptx` binary with NVRTC's log (warnings). Throws `compilationFailed` with NVRTC's log when
    /// the source (or an option) is rejected.
    public func compile(_ source: KernelSource, options: CompileOptions = CompileOptions(), architecture: String)
        throws(GPUBridgeError) -> KernelBinary
    {
        guard source.language == .cuda, let text = source.text else {
            throw .unsupported(
                feature: "compiling \(source.language.rawValue) kernels with NVRTC ('\(source.name)')", backend: "cuda")
        }
        let target = target(for: options, architecture: architecture)
        guard let kind = Self.targetKind(target) else {
            throw .invalidArgument(
                name: "CompileOptions.target", value: target,
                limit: "sm_XY or compute_XY (for example sm_90, sm_90a, compute_90)")
        }
        if let registers = options.maxRegisters, registers <= 0 {
            throw .invalidArgument(name: "CompileOptions.maxRegisters", value: String(registers), limit: "1...255")
        }
        let wantsCubin = kind == .real
        guard !wantsCubin || emitsCubin else {
            throw .unsupported(
                feature: "cubin output (\(target)) with \(version); use a compute_XY target", backend: "cuda")
        }
        let flags = flags(for: options, architecture: architecture)

        var program: OpaquePointer?
        let created = api.createProgram(&program, text, source.name + ".cu", 0, nil, nil)
        guard created == 0, program != nil else {
            throw failure(created, "nvrtcCreateProgram", detail: "kernel '\(source.name)'")
        }
        defer { _ = api.destroyProgram(&program) }

        let status = withCStrings(flags) { api.compileProgram(program, Int32(flags.count), $0) }
        let log = programLog(program)
        switch status {
        case 0:
            break
        case NVRTCFunctions.errorCompilation:
            throw .compilationFailed(kernel: source.name, backend: "cuda", log: log)
        case NVRTCFunctions.errorInvalidOption:
            let known = supportedArchitectures.map { "sm_\($0)" }.joined(separator: ", ")
            throw .compilationFailed(
                kernel: source.name, backend: "cuda",
                log:
                    "\(version) rejected an option in \(flags)\(known.isEmpty ? "" : " (architectures it supports: \(known))")\n\(log)"
            )
        default:
            throw failure(status, "nvrtcCompileProgram", detail: log.isEmpty ? "kernel '\(source.name)'" : log)
        }

        if wantsCubin, let getSize = api.getCUBINSize, let get = api.getCUBIN {
            var size = 0
            try check(getSize(program, &size), "nvrtcGetCUBINSize")
            var bytes = [UInt8](repeating: 0, count: size)
            let result = bytes.withUnsafeMutableBytes {
                get(program, $0.baseAddress?.assumingMemoryBound(to: CChar.self))
            }
            try check(result, "nvrtcGetCUBIN")
            return KernelBinary(format: "cubin", bytes: bytes, log: log)
        }
        var size = 0
        try check(api.getPTXSize(program, &size), "nvrtcGetPTXSize")
        var bytes = [UInt8](repeating: 0, count: size)
        let result = bytes.withUnsafeMutableBytes {
            api.getPTX(program, $0.baseAddress?.assumingMemoryBound(to: CChar.self))
        }
        try check(result, "nvrtcGetPTX")
        while bytes.last == 0 { bytes.removeLast() }  // the size counts the terminating NUL
        return KernelBinary(format: "ptx", bytes: bytes, log: log)
    }

    // MARK: Helpers

    enum TargetKind { case real, virtual }

    /// `sm_XY[a|f]` is a real architecture (cubin), `compute_XY[a|f]` a virtual one (PTX); anything else is nil.
    static func targetKind(_ target: String) -> TargetKind? {
        let (kind, rest): (TargetKind, Substring)
        if target.hasPrefix("sm_") {
            (kind, rest) = (.real, target.dropFirst(3))
        } else if target.hasPrefix("compute_") {
            (kind, rest) = (.virtual, target.dropFirst(8))
        } else {
            return nil
        }
        let digits = rest.prefix(while: \.isNumber)
        let suffix = rest.dropFirst(digits.count)
        guard !digits.isEmpty, suffix.isEmpty || suffix == "a" || suffix == "f" else { return nil }
        return kind
    }

    /// The number in `sm_XY` / `compute_XY` (90 for `sm_90a`), or nil.
    static func architectureNumber(_ architecture: String) -> Int? {
        let rest: Substring
        if architecture.hasPrefix("sm_") {
            rest = architecture.dropFirst(3)
        } else if architecture.hasPrefix("compute_") {
            rest = architecture.dropFirst(8)
        } else {
            return nil
        }
        return Int(rest.prefix(while: \.isNumber))
    }

    private func programLog(_ program: OpaquePointer?) -> String {
        var size = 0
        guard api.getProgramLogSize(program, &size) == 0, size > 1 else { return "" }
        var bytes = [UInt8](repeating: 0, count: size)
        let status = bytes.withUnsafeMutableBytes {
            api.getProgramLog(program, $0.baseAddress?.assumingMemoryBound(to: CChar.self))
        }
        guard status == 0 else { return "" }
        while bytes.last == 0 { bytes.removeLast() }
        return String(decoding: bytes, as: UTF8.self)
    }

    private func errorString(_ status: Int32) -> String {
        guard let text = api.getErrorString(status) else { return "nvrtcResult \(status)" }
        return String(cString: text)
    }

    private func failure(_ status: Int32, _ call: String, detail: String) -> GPUBridgeError {
        .backendFailure(backend: "cuda", call: call, code: Int(status), message: "\(errorString(status)): \(detail)")
    }

    private func check(_ status: Int32, _ call: String) throws(GPUBridgeError) {
        guard status == 0 else { throw failure(status, call, detail: "after a successful compilation") }
    }
}

/// Calls `body` with a C array of C strings (`const char * const *`) copied from `strings`.
func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafePointer<CChar>?>?) -> R) -> R {
    let copies = strings.map { strdup($0) }
    defer { for copy in copies { free(copy) } }
    let pointers: [UnsafePointer<CChar>?] = copies.map { $0.map { UnsafePointer($0) } }
    return pointers.withUnsafeBufferPointer { body($0.baseAddress) }
}

/// NVRTC's C functions, transcribed from `nvrtc.h` (CUDA 13.x; unchanged since CUDA 11 for those used here).
/// `nvrtcResult` is a C enum (`int`); `nvrtcProgram` an opaque pointer.
struct NVRTCFunctions: Sendable {
    static let errorInvalidOption: Int32 = 5  // NVRTC_ERROR_INVALID_OPTION
    static let errorCompilation: Int32 = 6  // NVRTC_ERROR_COMPILATION

    typealias GetErrorString = @convention(c) (Int32) -> UnsafePointer<CChar>?
    typealias Version = @convention(c) (UnsafeMutablePointer<Int32>?, UnsafeMutablePointer<Int32>?) -> Int32
    typealias GetNumSupportedArchs = @convention(c) (UnsafeMutablePointer<Int32>?) -> Int32
    typealias GetSupportedArchs = @convention(c) (UnsafeMutablePointer<Int32>?) -> Int32
    /// `nvrtcCreateProgram(prog, src, name, numHeaders, headers, includeNames)`.
    typealias CreateProgram =
        @convention(c) (
            UnsafeMutablePointer<OpaquePointer?>?, UnsafePointer<CChar>?, UnsafePointer<CChar>?, Int32,
            UnsafePointer<UnsafePointer<CChar>?>?, UnsafePointer<UnsafePointer<CChar>?>?
        ) -> Int32
    typealias DestroyProgram = @convention(c) (UnsafeMutablePointer<OpaquePointer?>?) -> Int32
    typealias CompileProgram = @convention(c) (OpaquePointer?, Int32, UnsafePointer<UnsafePointer<CChar>?>?) -> Int32
    typealias GetSize = @convention(c) (OpaquePointer?, UnsafeMutablePointer<Int>?) -> Int32
    typealias GetBytes = @convention(c) (OpaquePointer?, UnsafeMutablePointer<CChar>?) -> Int32

    let getErrorString: GetErrorString
    let version: Version
    let getNumSupportedArchs: GetNumSupportedArchs?
    let getSupportedArchs: GetSupportedArchs?
    let createProgram: CreateProgram
    let destroyProgram: DestroyProgram
    let compileProgram: CompileProgram
    let getPTXSize: GetSize
    let getPTX: GetBytes
    let getCUBINSize: GetSize?
    let getCUBIN: GetBytes?
    let getProgramLogSize: GetSize
    let getProgramLog: GetBytes

    init?(_ library: DynamicLibrary) {
        guard let getErrorString = library.function("nvrtcGetErrorString", as: GetErrorString.self),
            let version = library.function("nvrtcVersion", as: Version.self),
            let createProgram = library.function("nvrtcCreateProgram", as: CreateProgram.self),
            let destroyProgram = library.function("nvrtcDestroyProgram", as: DestroyProgram.self),
            let compileProgram = library.function("nvrtcCompileProgram", as: CompileProgram.self),
            let getPTXSize = library.function("nvrtcGetPTXSize", as: GetSize.self),
            let getPTX = library.function("nvrtcGetPTX", as: GetBytes.self),
            let getProgramLogSize = library.function("nvrtcGetProgramLogSize", as: GetSize.self),
            let getProgramLog = library.function("nvrtcGetProgramLog", as: GetBytes.self)
        else { return nil }
        self.getErrorString = getErrorString
        self.version = version
        self.createProgram = createProgram
        self.destroyProgram = destroyProgram
        self.compileProgram = compileProgram
        self.getPTXSize = getPTXSize
        self.getPTX = getPTX
        self.getProgramLogSize = getProgramLogSize
        self.getProgramLog = getProgramLog
        getNumSupportedArchs = library.function("nvrtcGetNumSupportedArchs", as: GetNumSupportedArchs.self)
        getSupportedArchs = library.function("nvrtcGetSupportedArchs", as: GetSupportedArchs.self)
        getCUBINSize = library.function("nvrtcGetCUBINSize", as: GetSize.self)
        getCUBIN = library.function("nvrtcGetCUBIN", as: GetBytes.self)
    }
}
