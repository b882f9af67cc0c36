#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

// The math a Swift kernel may call, for Float and Double. Each has the name and meaning of the C function the kernel
// text calls on CUDA and OpenCL (`sqrt`, `exp`, ... overloaded for float and double there), so one body means the same
// on every backend. `abs`, `min` and `max` are the standard library's.

@inlinable public func sqrt(_ x: Float) -> Float { sqrtf(x) }
@inlinable public func sqrt(_ x: Double) -> Double { Glibc.sqrt(x) }
@inlinable public func exp(_ x: Float) -> Float { expf(x) }
@inlinable public func exp(_ x: Double) -> Double { Glibc.exp(x) }
@inlinable public func log(_ x: Float) -> Float { logf(x) }
@inlinable public func log(_ x: Double) -> Double { Glibc.log(x) }
@inlinable public func pow(_ x: Float, _ y: Float) -> Float { powf(x, y) }
@inlinable public func pow(_ x: Double, _ y: Double) -> Double { Glibc.pow(x, y) }
@inlinable public func sin(_ x: Float) -> Float { sinf(x) }
@inlinable public func sin(_ x: Double) -> Double { Glibc.sin(x) }
@inlinable public func cos(_ x: Float) -> Float { cosf(x) }
@inlinable public func cos(_ x: Double) -> Double { Glibc.cos(x) }
@inlinable public func tanh(_ x: Float) -> Float { tanhf(x) }
@inlinable public func tanh(_ x: Double) -> Double { Glibc.tanh(x) }
@inlinable public func floor(_ x: Float) -> Float { floorf(x) }
@inlinable public func floor(_ x: Double) -> Double { Glibc.floor(x) }
@inlinable public func ceil(_ x: Float) -> Float { ceilf(x) }
@inlinable public func ceil(_ x: Double) -> Double { Glibc.ceil(x) }
@inlinable public func fma(_ a: Float, _ b: Float, _ c: Float) -> Float { fmaf(a, b, c) }
@inlinable public func fma(_ a: Double, _ b: Double, _ c: Double) -> Double { Glibc.fma(a, b, c) }
