#if SwiftKernels
    /// Makes a helper function of a Swift function, callable from `@GPUKernel` kernels and other helpers: adds a
    /// `KernelHelper` named after the function with `GPUFunction` appended (`softplus` gives `softplusGPUFunction`)
    /// holding its portable text (`GB_DEVICE float softplus(float x) { ... }`).
    ///
    /// ```swift
    /// @GPUFunction
    /// func softplus(_ x: Float) -> Float { log(1 + exp(x)) }
    ///
    /// @GPUKernel
    /// func activate(_ item: WorkItem, v: MutableDeviceArray<Float>, n: Int32) {
    ///     let i = item.globalID(0)
    ///     if i < n { v[i] = softplus(v[i]) }
    /// }
    /// ```
    ///
    /// A helper takes scalars and returns one (Float, Double, Int32, UInt32, Int64, UInt64, Int or Bool); its body is
    /// the kernel subset plus `return value`. On the CPU backend the kernel calls the Swift function itself. A kernel
    /// that calls `f` refers to `fGPUFunction`: "cannot find 'fGPUFunction' in scope" means `f` is not marked
    /// `@GPUFunction`. Where a call's result type is not fixed by its context (`let v = f(x)`), write it
    /// (`let v: Float = f(x)`).
    @attached(peer, names: suffixed(GPUFunction))
    public macro GPUFunction() = #externalMacro(module: "GPUBridgeKernelMacros", type: "GPUFunctionMacro")
#endif
