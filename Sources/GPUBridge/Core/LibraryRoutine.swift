/// A standard routine that a kernel computes, declared so that a backend with a vendor library may run the library's
/// routine in the kernel's place.
///
/// A kernel carries one in `KernelSource.routine`. The declaration is a promise about the kernel's arguments and what
/// it writes; a backend that substitutes the library must give the same results (within floating-point reordering)
/// wherever the substitution applies, and launch the compiled kernel everywhere else. The built-in `matmul` declares
/// `.sgemm`: OpenCL runs CLBlast's `CLBlastSgemm` and CUDA runs cuBLAS's `cublasSgemm_v2` when the library is found
/// (`gpubridge devices` says which), and the CPU backend calls a CBLAS from inside its Swift kernel.
public enum LibraryRoutine: String, Sendable, Hashable, Codable {
    /// `C[MxN] = A[MxK] * B[KxN]`, float32, row-major, dense (leading dimensions K, N and N).
    ///
    /// Arguments, in order: buffers `A`, `B`, `C` (float32), then scalars `M`, `N`, `K` (int32). The kernel's launch
    /// covers C with 16x16 tiles: `groupSize` 16x16, `groups.x * 16 >= N`, `groups.y * 16 >= M`. A library runs in the
    /// kernel's place only for a launch of that shape with M, N, K all positive; any other launch runs the kernel.
    case sgemm

    /// The tile edge the `.sgemm` launch shape is stated in.
    public static let sgemmTile = 16
}

/// The arguments of a `.sgemm` launch, read from resolved arguments, and whether a library may run in the kernel's
/// place (see `LibraryRoutine.sgemm`). Used by the backends that substitute a library; not by applications.
package struct SGEMMArguments: Sendable {
    package let a: DeviceRegion
    package let b: DeviceRegion
    package let c: DeviceRegion
    package let m: Int
    package let n: Int
    package let k: Int

    /// The arguments when `arguments` and `launch` have the routine's shape, with positive sizes; nil otherwise (the
    /// caller then launches the kernel, which reports its own errors).
    package init?(_ launch: Launch, _ arguments: [ResolvedArgument]) {
        guard arguments.count == 6,
            case let .memory(a) = arguments[0], case let .memory(b) = arguments[1],
            case let .memory(c) = arguments[2],
            case let .scalar(.int32(m)) = arguments[3], case let .scalar(.int32(n)) = arguments[4],
            case let .scalar(.int32(k)) = arguments[5],
            m > 0, n > 0, k > 0
        else { return nil }
        let tile = LibraryRoutine.sgemmTile
        guard launch.groupSize.x == tile, launch.groupSize.y == tile, launch.groupSize.z == 1,
            launch.groups.x >= (Int(n) + tile - 1) / tile, launch.groups.y >= (Int(m) + tile - 1) / tile,
            launch.groups.z == 1,
            launch.sharedMemoryBytes == 0
        else { return nil }
        self.a = a
        self.b = b
        self.c = c
        self.m = Int(m)
        self.n = Int(n)
        self.k = Int(k)
    }

    /// Throws `argumentMismatch` naming the first matrix whose region holds fewer than its `rows x columns` floats.
    package func checkSizes(kernel: String) throws(GPUBridgeError) {
        let float = MemoryLayout<Float>.size
        for (name, region, needed) in [("A", a, m * k), ("B", b, k * n), ("C", c, m * n)]
        where region.byteCount / float < needed {
            throw .argumentMismatch(
                kernel: kernel,
                detail:
                    "\(name) holds \(region.byteCount / float) floats, M, N, K = \(m), \(n), \(k) need \(needed)")
        }
    }
}
