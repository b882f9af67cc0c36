import Synchronization

/// The buffer elements Swift kernels update atomically: Int32 and UInt32, the widths every backend has atomics for
/// (CUDA's `atomicAdd`/`atomicMin`/`atomicMax`, OpenCL 1.1's `atomic_add`/`atomic_min`/`atomic_max`).
///
/// Conformances are the library's; the macro accepts exactly these two types for `atomicAdd`, `atomicMin` and
/// `atomicMax`. Each operation is one hardware atomic (add) or compare-and-swap loop (min, max) on the element, with
/// relaxed ordering, as on the devices: it orders nothing else.
public protocol KernelAtomicElement: KernelElement, AtomicRepresentable, FixedWidthInteger {
    /// Adds `value` (wrapping) and returns the value before.
    static func atomicAdd(_ cell: UnsafeMutablePointer<Atomic<Self>>, _ value: Self) -> Self
    /// Stores the smaller of the element and `value`; returns the value before.
    static func atomicMin(_ cell: UnsafeMutablePointer<Atomic<Self>>, _ value: Self) -> Self
    /// Stores the larger of the element and `value`; returns the value before.
    static func atomicMax(_ cell: UnsafeMutablePointer<Atomic<Self>>, _ value: Self) -> Self
}

extension Int32: KernelAtomicElement {
    @inlinable public static func atomicAdd(_ cell: UnsafeMutablePointer<Atomic<Int32>>, _ value: Int32) -> Int32 {
        cell.pointee.wrappingAdd(value, ordering: .relaxed).oldValue
    }
    @inlinable public static func atomicMin(_ cell: UnsafeMutablePointer<Atomic<Int32>>, _ value: Int32) -> Int32 {
        cell.pointee.min(value, ordering: .relaxed).oldValue
    }
    @inlinable public static func atomicMax(_ cell: UnsafeMutablePointer<Atomic<Int32>>, _ value: Int32) -> Int32 {
        cell.pointee.max(value, ordering: .relaxed).oldValue
    }
}

extension UInt32: KernelAtomicElement {
    @inlinable public static func atomicAdd(_ cell: UnsafeMutablePointer<Atomic<UInt32>>, _ value: UInt32) -> UInt32 {
        cell.pointee.wrappingAdd(value, ordering: .relaxed).oldValue
    }
    // Not `Atomic<UInt32>.min`/`.max`: with Swift 6.3.1 on x86-64 they compare as signed (`min` of 0xFFFFFFFF and 17
    // keeps 0xFFFFFFFF), so the unsigned ones are compare-and-swap loops.
    @inlinable public static func atomicMin(_ cell: UnsafeMutablePointer<Atomic<UInt32>>, _ value: UInt32) -> UInt32 {
        var current = cell.pointee.load(ordering: .relaxed)
        while value < current {
            let (exchanged, original) = cell.pointee.weakCompareExchange(
                expected: current, desired: value, ordering: .relaxed)
            if exchanged { break }
            current = original
        }
        return current
    }
    @inlinable public static func atomicMax(_ cell: UnsafeMutablePointer<Atomic<UInt32>>, _ value: UInt32) -> UInt32 {
        var current = cell.pointee.load(ordering: .relaxed)
        while value > current {
            let (exchanged, original) = cell.pointee.weakCompareExchange(
                expected: current, desired: value, ordering: .relaxed)
            if exchanged { break }
            current = original
        }
        return current
    }
}

extension MutableDeviceArray where Element: KernelAtomicElement {
    /// The element at `index` as an atomic cell (an `Atomic` has the layout of its value). Out of range stops the
    /// process, as the subscript does.
    @inlinable func cell(_ index: Int) -> UnsafeMutablePointer<Atomic<Element>> {
        precondition(
            index >= 0 && index < base.count, "atomic access at index \(index) of a buffer of \(base.count) elements")
        return UnsafeMutableRawPointer(base.baseAddress! + index).assumingMemoryBound(to: Atomic<Element>.self)
    }

    /// Adds `value` to the element at `index` as one indivisible step (wrapping, as a GPU's atomic add does) and
    /// returns the element's value before it (`GB_ATOMIC_ADD_INT`/`_UINT` on CUDA and OpenCL).
    @inlinable @discardableResult
    public func atomicAdd(_ index: some BinaryInteger, _ value: Element) -> Element {
        Element.atomicAdd(cell(Int(index)), value)
    }

    /// Stores the smaller of the element at `index` and `value` as one indivisible step and returns the element's
    /// value before it.
    @inlinable @discardableResult
    public func atomicMin(_ index: some BinaryInteger, _ value: Element) -> Element {
        Element.atomicMin(cell(Int(index)), value)
    }

    /// Stores the larger of the element at `index` and `value` as one indivisible step and returns the element's
    /// value before it.
    @inlinable @discardableResult
    public func atomicMax(_ index: some BinaryInteger, _ value: Element) -> Element {
        Element.atomicMax(cell(Int(index)), value)
    }
}

extension MutableDeviceArray where Element == Float {
    /// The element at `index` as an atomic cell of its bits. Out of range stops the process, as the subscript does.
    @inlinable func bitsCell(_ index: Int) -> UnsafeMutablePointer<Atomic<UInt32>> {
        precondition(
            index >= 0 && index < base.count, "atomic access at index \(index) of a buffer of \(base.count) elements")
        return UnsafeMutableRawPointer(base.baseAddress! + index).assumingMemoryBound(to: Atomic<UInt32>.self)
    }

    /// Replaces the element at `index` by `update(element)` while `update` returns a value, as one indivisible step
    /// per attempt (compare-and-swap on the bits, relaxed); returns the element's value before.
    @inlinable func exchange(_ index: Int, _ update: (Float) -> Float?) -> Float {
        let cell = bitsCell(index)
        var current = cell.pointee.load(ordering: .relaxed)
        while let next = update(Float(bitPattern: current)) {
            let (exchanged, original) = cell.pointee.weakCompareExchange(
                expected: current, desired: next.bitPattern, ordering: .relaxed)
            if exchanged { break }
            current = original
        }
        return Float(bitPattern: current)
    }

    /// Adds `value` to the element at `index` as one indivisible step and returns the element's value before it
    /// (`GB_ATOMIC_ADD_FLOAT`: CUDA's `atomicAdd`, a compare-and-swap loop on OpenCL and here). Concurrent adds
    /// land in an unspecified order, so a float sum may differ between runs in its last bits, as on a GPU.
    @inlinable @discardableResult
    public func atomicAdd(_ index: some BinaryInteger, _ value: Float) -> Float {
        exchange(Int(index)) { $0 + value }
    }

    /// Stores `value` in the element at `index` when it compares below the element (so a NaN is never stored), as
    /// one indivisible step, and returns the element's value before it (`GB_ATOMIC_MIN_FLOAT`).
    @inlinable @discardableResult
    public func atomicMin(_ index: some BinaryInteger, _ value: Float) -> Float {
        exchange(Int(index)) { value < $0 ? value : nil }
    }

    /// Stores `value` in the element at `index` when it compares above the element (so a NaN is never stored), as
    /// one indivisible step, and returns the element's value before it (`GB_ATOMIC_MAX_FLOAT`).
    @inlinable @discardableResult
    public func atomicMax(_ index: some BinaryInteger, _ value: Float) -> Float {
        exchange(Int(index)) { value > $0 ? value : nil }
    }
}
