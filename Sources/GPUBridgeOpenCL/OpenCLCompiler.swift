import GPUBridge
import Glibc

// The compiler role: OpenCL C text -> program binary for this device (CL_PROGRAM_BINARIES), and binary -> kernel.
extension OpenCLBackend {
    public var languages: Set<KernelLanguage> { [.openCLC] }

    /// The platform, its version, the driver version and the OpenCL C version: a new driver gets new cache keys.
    public var compilerVersion: String {
        "\(platformName) \(platformVersion); driver \(info.driverVersion); \(openCLCVersion)"
    }

    /// `-D` flags (sorted), `-cl-fast-relaxed-math` for `fastMath`, `-cl-opt-disable` when `optimize` is off, then
    /// `extraFlags` unchanged. `target`, `maxRegisters` and `lineInfo` have no OpenCL build option: the device is the
    /// target, and `compile` rejects the first two.
    public func compilerFlags(for options: CompileOptions) -> [String] {
        var flags = options.defineFlags
        if options.fastMath { flags.append("-cl-fast-relaxed-math") }
        if !options.optimize { flags.append("-cl-opt-disable") }
        flags += options.extraFlags
        return flags
    }

    /// Builds `source` with `clCreateProgramWithSource` + `clBuildProgram` and returns the device binary.
    ///
    /// Blocks the calling thread while the driver compiles (like NVRTC). A rejected source throws
    /// `compilationFailed` with the driver's full build log (file, line and column of each diagnostic); an entry point
    /// the program does not define throws `notFound` before anything is cached.
    public func compile(_ source: KernelSource, options: CompileOptions) throws(GPUBridgeError) -> KernelBinary {
        guard let text = source.text, source.language == .openCLC else {
            throw .unsupported(
                feature: "compiling \(source.language.rawValue) kernels ('\(source.name)')", backend: "opencl")
        }
        if let target = options.target {
            throw .unsupported(
                feature: "CompileOptions.target '\(target)' (OpenCL compiles for the device it runs on)",
                backend: "opencl")
        }
        if let registers = options.maxRegisters {
            throw .unsupported(feature: "CompileOptions.maxRegisters \(registers)", backend: "opencl")
        }
        for (name, value) in options.defines
        where (name + value).contains(where: { $0 == " " || $0 == "\t" || $0 == "\n" }) {
            throw .invalidArgument(
                name: "defines[\(name)]", value: "\"\(value)\"",
                limit: "names and values without whitespace (OpenCL splits build options at spaces)")
        }
        let flags = compilerFlags(for: options).joined(separator: " ")
        counters.recordCompile()
        let library = library
        var createStatus: Int32 = CL.success
        let created = text.withCString { pointer -> OpaquePointer? in
            var strings: UnsafePointer<CChar>? = pointer
            var length = strlen(pointer)
            return library.createProgramWithSource(context.pointer, 1, &strings, &length, &createStatus)
        }
        let program = try clCreated("clCreateProgramWithSource", created, createStatus)
        defer { _ = library.releaseProgram(program) }
        var deviceList: OpaquePointer? = device.pointer
        let status = flags.withCString { library.buildProgram(program, 1, &deviceList, $0, nil, nil) }
        let log = buildLog(program)
        guard status == CL.success else {
            switch status {
            case CL.buildProgramFailure, CL.invalidBuildOptions, CL.compilerNotAvailable:
                let header =
                    "clBuildProgram returned \(openCLStatusName(status)) for '\(source.name)' on \(info.id) (\(info.name)), options: \"\(flags)\""
                throw .compilationFailed(
                    kernel: source.name, backend: "opencl", log: log.isEmpty ? header : header + "\n" + log)
            default:
                throw .openCL("clBuildProgram", status)
            }
        }
        let names = try library.infoString("clGetProgramInfo") {
            library.getProgramInfo(program, CL.programKernelNames, $0, $1, $2)
        }
        let kernels = names.split(separator: ";").map { String($0) }
        guard kernels.contains(source.entryPoint) else {
            throw .notFound(
                kind: "kernel function in '\(source.name)' (it defines: \(kernels.joined(separator: ", ")))",
                name: source.entryPoint)
        }
        var size = 0
        try clCheck(
            "clGetProgramInfo",
            library.getProgramInfo(program, CL.programBinarySizes, MemoryLayout<Int>.size, &size, nil))
        guard size > 0 else {
            throw .backendFailure(
                backend: "opencl", call: "clGetProgramInfo", code: 0,
                message: "CL_PROGRAM_BINARY_SIZES is 0 for '\(source.name)'")
        }
        var bytes = [UInt8](repeating: 0, count: size)
        let binaryStatus = bytes.withUnsafeMutableBufferPointer { buffer in
            var pointer: UnsafeMutablePointer<UInt8>? = buffer.baseAddress
            return library.getProgramInfo(
                program, CL.programBinaries, MemoryLayout<UnsafeMutablePointer<UInt8>?>.size, &pointer, nil)
        }
        try clCheck("clGetProgramInfo", binaryStatus)
        return KernelBinary(format: Self.binaryFormat, bytes: bytes, log: log)
    }

    /// The `KernelBinary.format` of binaries this backend makes and loads.
    public static var binaryFormat: String { "opencl-binary" }

    /// Makes a program from a binary `compile` produced (in this process or an earlier one) and finds its kernel. A
    /// source declaring `LibraryRoutine.sgemm` loads as an `OpenCLLibraryGEMM` when CLBlast was found.
    public func load(_ binary: KernelBinary, source: KernelSource) throws(GPUBridgeError) -> any KernelProgram {
        guard binary.format == Self.binaryFormat else {
            throw .unsupported(feature: "loading \(binary.format) binaries", backend: "opencl")
        }
        guard !binary.bytes.isEmpty else {
            throw .invalidArgument(name: "binary.bytes", value: "0 bytes", limit: "a non-empty OpenCL program binary")
        }
        let library = library
        var deviceList: OpaquePointer? = device.pointer
        var binaryStatus: Int32 = CL.success
        var createStatus: Int32 = CL.success
        let created = binary.bytes.withUnsafeBufferPointer { buffer -> OpaquePointer? in
            var pointer: UnsafePointer<UInt8>? = buffer.baseAddress
            var length = buffer.count
            return library.createProgramWithBinary(
                context.pointer, 1, &deviceList, &length, &pointer, &binaryStatus, &createStatus)
        }
        let program = try clCreated("clCreateProgramWithBinary", created, createStatus)
        do throws(GPUBridgeError) {
            try clCheck("clCreateProgramWithBinary", binaryStatus)
            let status = library.buildProgram(program, 1, &deviceList, "", nil, nil)
            guard status == CL.success else {
                throw GPUBridgeError.compilationFailed(
                    kernel: source.name, backend: "opencl",
                    log: "clBuildProgram of the cached binary returned \(openCLStatusName(status)) on \(info.id)\n"
                        + buildLog(program))
            }
            var kernelStatus: Int32 = CL.success
            let createdKernel = source.entryPoint.withCString { library.createKernel(program, $0, &kernelStatus) }
            if kernelStatus == CL.invalidKernelName {
                throw .notFound(kind: "kernel function in '\(source.name)'", name: source.entryPoint)
            }
            let kernel = try clCreated("clCreateKernel", createdKernel, kernelStatus)
            do throws(GPUBridgeError) {
                let arguments = try library.infoValue("clGetKernelInfo", UInt32(0)) {
                    library.getKernelInfo(kernel, CL.kernelNumArgs, $0, $1, $2)
                }
                let groupItems = try library.infoValue("clGetKernelWorkGroupInfo", 0 as Int) {
                    library.getKernelWorkGroupInfo(kernel, device.pointer, CL.kernelWorkGroupSize, $0, $1, $2)
                }
                let compiled = OpenCLProgram(
                    backend: self, program: CLObject(program), kernel: kernel, name: source.name,
                    entryPoint: source.entryPoint, parameterCount: Int(arguments), maxGroupItems: groupItems)
                // A kernel declaring SGEMM runs CLBlast in its place where CLBlast was found.
                if source.routine == .sgemm, case let .success(clblast) = CLBlastLibrary.shared {
                    return OpenCLLibraryGEMM(kernel: compiled, library: clblast)
                }
                return compiled
            } catch {
                _ = library.releaseKernel(kernel)
                throw error
            }
        } catch {
            _ = library.releaseProgram(program)
            throw error
        }
    }

    /// The build log of `program` on this device; empty where the driver gives none.
    func buildLog(_ program: OpaquePointer) -> String {
        let library = library
        let log = try? library.infoString("clGetProgramBuildInfo") {
            library.getProgramBuildInfo(program, device.pointer, CL.programBuildLog, $0, $1, $2)
        }
        return log ?? ""
    }
}
