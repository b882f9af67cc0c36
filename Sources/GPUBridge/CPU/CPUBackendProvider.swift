/// Finds the CPU device. Always available.
///
/// Its report says which `matmul` the device runs: a `blas` line naming the CBLAS found at run time
/// (`BLASLibrary.shared`), or why none was found and that the built-in tiled kernel is used; and a `vector loops`
/// line naming the instruction set the C loops of softmax run with (`CPUVectorMath.variant`).
public struct CPUBackendProvider: BackendProvider {
    public init() {}
    public var backend: BackendKind { .cpu }
    public func discover() -> BackendReport {
        let device = CPUBackend()
        return BackendReport(
            backend: .cpu, devices: [device],
            details: [
                ("cores", String(device.cores)), ("alignment", "\(CPUBackend.alignment) bytes"),
                ("blas", Self.blasSummary(BLASLibrary.shared)),
                ("vector loops", "\(CPUVectorMath.variant) (softmax: maximum, exp, scale)"),
            ])
    }

    /// The `blas` line: the library in use, or every place tried and the fallback.
    static func blasSummary(_ blas: Result<BLASLibrary, BLASUnavailable>) -> String {
        switch blas {
        case let .success(library): library.summary
        case let .failure(reason): "not found (\(reason)); matmul uses the built-in kernel"
        }
    }
}
