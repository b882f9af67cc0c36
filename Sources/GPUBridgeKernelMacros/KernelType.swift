#if SwiftKernels
    /// The types of the kernel subset and their C spelling in the portable dialect.
    enum KernelType: Equatable, Sendable, CustomStringConvertible {
        case float, double, int32, uint32, int64, uint64, int, bool
        /// A buffer parameter: its element type and whether the kernel may write it.
        indirect case buffer(KernelType, mutable: Bool)

        /// The scalar types, by their Swift name.
        static let scalars: [String: KernelType] = [
            "Float": .float, "Double": .double, "Int32": .int32, "UInt32": .uint32, "Int64": .int64, "UInt64": .uint64,
            "Int": .int, "Bool": .bool,
        ]

        var description: String {
            switch self {
            case .float: return "Float"
            case .double: return "Double"
            case .int32: return "Int32"
            case .uint32: return "UInt32"
            case .int64: return "Int64"
            case .uint64: return "UInt64"
            case .int: return "Int"
            case .bool: return "Bool"
            case let .buffer(element, mutable): return "\(mutable ? "MutableDeviceArray" : "DeviceArray")<\(element)>"
            }
        }

        /// The C type (the prelude defines `uint`, `gb_long` and `gb_ulong` for both compilers).
        var c: String {
            switch self {
            case .float: return "float"
            case .double: return "double"
            case .int32: return "int"
            case .uint32: return "uint"
            case .int64, .int: return "gb_long"
            case .uint64: return "gb_ulong"
            case .bool: return "bool"
            case let .buffer(element, mutable): return "GB_GLOBAL \(mutable ? "" : "const ")\(element.c)*"
            }
        }

        /// The `ScalarType` case of a scalar parameter (nil for Bool and buffers).
        var scalarCase: String? {
            switch self {
            case .float: return "float32"
            case .double: return "float64"
            case .int32: return "int32"
            case .uint32: return "uint32"
            case .int64, .int: return "int64"
            case .uint64: return "uint64"
            case .bool, .buffer: return nil
            }
        }

        /// Bytes per value in the kernel text.
        var byteSize: Int {
            switch self {
            case .float, .int32, .uint32: return 4
            case .double, .int64, .uint64, .int: return 8
            case .bool: return 1
            case .buffer: return 8
            }
        }

        var isFloating: Bool { self == .float || self == .double }
        var isInteger: Bool { [.int32, .uint32, .int64, .uint64, .int].contains(self) }
        var isNumeric: Bool { isFloating || isInteger }
    }
#endif
