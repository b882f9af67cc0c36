// Importing GPUBridgeKernels imports GPUBridge too: the expansion of `@GPUKernel` names its types (KernelDefinition,
// CPUKernelContext), and a kernel is compiled and launched with them.
@_exported import GPUBridge

#if SwiftKernels
    /// Makes a kernel of a Swift function: adds a `KernelDefinition` named after the function with `Kernel` appended
    /// (`saxpy` gives `saxpyKernel`) that holds, from the one body, the portable kernel text for CUDA and OpenCL, the
    /// CPU backend's Swift kernel (which calls the function once per work-item) and the declared parameters.
    ///
    /// ```swift
    /// @GPUKernel
    /// func saxpy(_ item: WorkItem, a: Float, x: DeviceArray<Float>, y: MutableDeviceArray<Float>, n: Int32) {
    ///     let i = item.globalID(0)
    ///     if i < n { y[i] = a * x[i] + y[i] }
    /// }
    /// let kernel = try device.compile(try saxpyKernel.source(for: device.id.backend))
    /// ```
    ///
    /// The first parameter is the `WorkItem`; the others are buffers (`DeviceArray<T>`, `MutableDeviceArray<T>`) and
    /// scalars of Float, Double, Int32, UInt32, Int64, UInt64 or Int. The body is the subset docs/SWIFT-KERNELS.md
    /// lists; anything else is a compile-time error at the offending syntax.
    @attached(peer, names: suffixed(Kernel))
    public macro GPUKernel() = #externalMacro(module: "GPUBridgeKernelMacros", type: "GPUKernelMacro")
#endif
