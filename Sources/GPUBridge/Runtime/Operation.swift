/// What an operation's body gets: the device the broker chose and the catalog to take kernels from.
public struct ExecutionContext: Sendable {
    /// The device this attempt runs on.
    public let device: Device
    /// The catalog kernels come from.
    public let catalog: KernelCatalog

    public init(device: Device, catalog: KernelCatalog) {
        self.device = device
        self.catalog = catalog
    }

    /// Kernel `id` from the catalog, compiled for this device (cached after the first time).
    public func kernel(_ id: String) throws(GPUBridgeError) -> Kernel {
        try catalog.kernel(id, on: device)
    }
}

/// A typed unit of work a `Bridge` runs on whichever device its broker picks: upload `Input`, launch catalog kernels,
/// download `Output`. The same body runs on every backend; only the kernels' implementations differ.
///
/// The body must be safe to run again on another device after a failure: it allocates what it needs itself and
/// changes nothing outside what it returns.
public struct Operation<Input: Sendable, Output: Sendable>: Sendable {
    /// A readable name (logs, spans, errors).
    public let name: String
    /// The catalog kernels the body launches (for `gpubridge kernels` and for checks before running).
    public let kernels: [String]
    /// Bytes of device memory the operation needs for `Input` (used to place it on a device with room).
    let footprint: @Sendable (Input) -> Int
    let body: @Sendable (ExecutionContext, Input) async throws(GPUBridgeError) -> Output

    public init(
        name: String, kernels: [String], footprint: @escaping @Sendable (Input) -> Int = { _ in 0 },
        body: @escaping @Sendable (ExecutionContext, Input) async throws(GPUBridgeError) -> Output
    ) {
        self.name = name
        self.kernels = kernels
        self.footprint = footprint
        self.body = body
    }

    /// Runs the body on one device directly, without broker, retries or fallback.
    public func run(_ input: Input, on device: Device, catalog: KernelCatalog) async throws(GPUBridgeError) -> Output {
        try await body(ExecutionContext(device: device, catalog: catalog), input)
    }
}
