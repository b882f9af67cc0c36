import GPUBridge

/// A read-only buffer parameter of a Swift kernel (`@GPUKernel`): `const T*` on CUDA and OpenCL, the argument's memory
/// on the CPU backend. Indexing is not bounds-checked on devices; on the CPU it is checked and an index out of range
/// stops the process, as an array's would.
///
/// Made by the CPU launch for the duration of one call (not `Sendable`: it must not outlive the call); any work-item
/// of that call may read it. Costs a pointer.
public struct DeviceArray<Element: KernelElement> {
    @usableFromInline let base: UnsafeMutableBufferPointer<Element>

    public init(_ base: UnsafeMutableBufferPointer<Element>) { self.base = base }

    @inlinable public subscript(index: Int32) -> Element { base[Int(index)] }
    @inlinable public subscript(index: Int) -> Element { base[index] }
    @inlinable public subscript(index: UInt32) -> Element { base[Int(index)] }
    @inlinable public subscript(index: Int64) -> Element { base[Int(index)] }
}

/// A read-write buffer parameter of a Swift kernel: `T*` on CUDA and OpenCL. Work-items of one launch must write
/// disjoint elements (or use atomics), as on a GPU.
///
/// Made by the CPU launch for the duration of one call; work-items run on several threads and each writes only its
/// own elements. Costs a pointer.
public struct MutableDeviceArray<Element: KernelElement> {
    @usableFromInline let base: UnsafeMutableBufferPointer<Element>

    public init(_ base: UnsafeMutableBufferPointer<Element>) { self.base = base }

    @inlinable public subscript(index: Int32) -> Element {
        get { base[Int(index)] }
        nonmutating set { base[Int(index)] = newValue }
    }
    @inlinable public subscript(index: Int) -> Element {
        get { base[index] }
        nonmutating set { base[index] = newValue }
    }
    @inlinable public subscript(index: UInt32) -> Element {
        get { base[Int(index)] }
        nonmutating set { base[Int(index)] = newValue }
    }
    @inlinable public subscript(index: Int64) -> Element {
        get { base[Int(index)] }
        nonmutating set { base[Int(index)] = newValue }
    }
}

/// The element and scalar types a Swift kernel may use: Float, Double, Int32, UInt32, Int64, UInt64 (and Int, which
/// is 64-bit). Each knows how the CPU launch reads it from an argument list.
///
/// Conformances are the library's (the macro accepts exactly these types); `scalar` is called by the CPU launch once
/// per call, on the thread running that call, and costs one argument lookup.
public protocol KernelElement: BitwiseCopyable, Sendable {
    /// The scalar argument `index` of `context`, as this type.
    static func scalar(_ context: CPUKernelContext, _ index: Int) throws -> Self
}

private func mismatch(_ context: CPUKernelContext, _ index: Int, _ type: String) -> GPUBridgeError {
    .argumentMismatch(kernel: context.kernel, detail: "argument \(index) must be a \(type) scalar")
}

extension Float: KernelElement {
    public static func scalar(_ context: CPUKernelContext, _ index: Int) throws -> Float { try context.float(index) }
}
extension Double: KernelElement {
    public static func scalar(_ context: CPUKernelContext, _ index: Int) throws -> Double { try context.double(index) }
}
extension Int32: KernelElement {
    public static func scalar(_ context: CPUKernelContext, _ index: Int) throws -> Int32 { try context.int32(index) }
}
extension UInt32: KernelElement {
    public static func scalar(_ context: CPUKernelContext, _ index: Int) throws -> UInt32 { try context.uint32(index) }
}
extension Int64: KernelElement {
    public static func scalar(_ context: CPUKernelContext, _ index: Int) throws -> Int64 { try context.int64(index) }
}
extension Int: KernelElement {
    public static func scalar(_ context: CPUKernelContext, _ index: Int) throws -> Int { Int(try context.int64(index)) }
}
extension UInt64: KernelElement {
    public static func scalar(_ context: CPUKernelContext, _ index: Int) throws -> UInt64 {
        guard case let .uint64(v) = try context.scalar(index) else { throw mismatch(context, index, "uint64") }
        return v
    }
}
