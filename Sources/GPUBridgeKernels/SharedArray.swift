/// A work-group's shared array in a Swift kernel: `let tile = SharedArray<Float>(count: 256)` at the top level of a
/// `@GPUKernel` body becomes `GB_SHARED float tile[256];` (`__shared__` on CUDA, `__local` on OpenCL), one per group,
/// visible to all its work-items; its size is an integer literal and a kernel's shared arrays take at most 48 KiB.
///
/// On the CPU backend the split body makes one per group, zero-filled (on a device its contents start undefined), and
/// the work-items of that group read and write it in turn. Not `Sendable`: it lives within one group's run. Costs one
/// allocation of `count` elements.
public struct SharedArray<Element: KernelElement> {
    @usableFromInline let storage: UnsafeMutableBufferPointer<Element>
    let owner: SharedArrayStorage

    /// `count` zero-filled elements. A count of zero or less stops the process (the macro accepts only a positive
    /// literal).
    public init(count: Int) {
        precondition(count > 0, "SharedArray count \(count): must be at least 1")
        let raw = UnsafeMutableRawBufferPointer.allocate(
            byteCount: count * MemoryLayout<Element>.stride, alignment: MemoryLayout<Element>.alignment)
        raw.initializeMemory(as: UInt8.self, repeating: 0)
        storage = raw.bindMemory(to: Element.self)
        owner = SharedArrayStorage(raw)
    }

    /// The number of elements.
    public var count: Int { storage.count }

    @inlinable public subscript(index: Int32) -> Element {
        get { storage[Int(index)] }
        nonmutating set { storage[Int(index)] = newValue }
    }
    @inlinable public subscript(index: Int) -> Element {
        get { storage[index] }
        nonmutating set { storage[index] = newValue }
    }
    @inlinable public subscript(index: UInt32) -> Element {
        get { storage[Int(index)] }
        nonmutating set { storage[Int(index)] = newValue }
    }
    @inlinable public subscript(index: Int64) -> Element {
        get { storage[Int(index)] }
        nonmutating set { storage[Int(index)] = newValue }
    }
}

/// Owns a `SharedArray`'s memory and frees it with the last copy of the array.
final class SharedArrayStorage {
    let memory: UnsafeMutableRawBufferPointer
    init(_ memory: UnsafeMutableRawBufferPointer) { self.memory = memory }
    deinit { memory.deallocate() }
}

extension SharedArray where Element: KernelAtomicElement {
    // On the CPU backend a group's work-items run in turn on one thread (`WorkItem.forEachGroup`), and each run of a
    // group makes its own shared arrays, so no other thread can touch this memory during the update: a plain
    // read-modify-write is the atomic operation there. On devices the macro writes the prelude's atomics.

    /// Adds `value` (wrapping) to the element at `index` and returns the value before (`GB_ATOMIC_ADD_INT`/`_UINT`
    /// on group-shared memory).
    @inlinable @discardableResult
    public func atomicAdd(_ index: some BinaryInteger, _ value: Element) -> Element {
        let before = storage[Int(index)]
        storage[Int(index)] = before &+ value
        return before
    }

    /// Stores the smaller of the element at `index` and `value`; returns the value before.
    @inlinable @discardableResult
    public func atomicMin(_ index: some BinaryInteger, _ value: Element) -> Element {
        let before = storage[Int(index)]
        if value < before { storage[Int(index)] = value }
        return before
    }

    /// Stores the larger of the element at `index` and `value`; returns the value before.
    @inlinable @discardableResult
    public func atomicMax(_ index: some BinaryInteger, _ value: Element) -> Element {
        let before = storage[Int(index)]
        if value > before { storage[Int(index)] = value }
        return before
    }
}
