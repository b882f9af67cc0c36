#if SwiftKernels
    import SwiftCompilerPlugin
    import SwiftDiagnostics
    import SwiftOperators
    import SwiftSyntax
    import SwiftSyntaxBuilder
    import SwiftSyntaxMacros

    /// `@GPUKernel`: a peer `KernelDefinition` named `<function>Kernel` with the portable text, the CPU kernel and the
    /// declared parameters of one Swift function (see `GPUKernel` in GPUBridgeKernels).
    ///
    /// Run by the compiler's plugin host, one expansion per annotated function; it holds no state. Its cost is compile
    /// time: one pass over the function's syntax.
    public struct GPUKernelMacro: PeerMacro {
        public static func expansion(
            of node: AttributeSyntax, providingPeersOf declaration: some DeclSyntaxProtocol,
            in context: some MacroExpansionContext
        ) throws -> [DeclSyntax] {
            try KernelDiagnostic.reporting(in: context) { try expand(declaration) }
        }

        struct Parameter {
            var label: String?
            var name: String
            var type: KernelType
        }

        static func expand(_ declaration: some DeclSyntaxProtocol) throws -> DeclSyntax {
            guard let function = declaration.as(FunctionDeclSyntax.self) else {
                throw KernelDiagnostic(declaration, "@GPUKernel applies to a function")
            }
            let name = function.name.text
            try KernelTranslator.checkName(name, at: function.name)
            if let generics = function.genericParameterClause {
                throw KernelDiagnostic(generics, "a kernel is not generic; write one per element type")
            }
            if let effects = function.signature.effectSpecifiers {
                throw KernelDiagnostic(effects, "a kernel neither throws nor awaits")
            }
            if let result = function.signature.returnClause {
                throw KernelDiagnostic(result, "a kernel returns nothing; write results to a MutableDeviceArray")
            }
            guard let body = function.body else { throw KernelDiagnostic(function, "a kernel needs a body") }
            let isStatic = function.modifiers.contains { $0.name.tokenKind == .keyword(.static) }

            // Parameters: the work-item first, then buffers and scalars.
            let list = Array(function.signature.parameterClause.parameters)
            guard let first = list.first,
                first.type.as(IdentifierTypeSyntax.self)?.name.text == "WorkItem"
            else {
                throw KernelDiagnostic(
                    function.signature.parameterClause,
                    "the first parameter of a kernel is its WorkItem (_ item: WorkItem)"
                )
            }
            let itemName = (first.secondName ?? first.firstName).text
            let parameters = try Self.parameters(of: function, dropping: 1)

            var translator = KernelTranslator(
                item: itemName, parameters: Dictionary(uniqueKeysWithValues: parameters.map { ($0.name, $0.type) }),
                function: name)
            let lines = try translator.translate(body)
            // Barriers or shared arrays: the CPU runs the body split at its barriers, a group at a time.
            var schedule: (lines: [String], carried: [String: KernelType], uses: Set<String>)?
            if translator.usesBarrier || !translator.sharedArrays.isEmpty, let folded = translator.foldedBody {
                let grouped = GroupSchedule(
                    item: itemName,
                    parameters: Dictionary(uniqueKeysWithValues: parameters.map { ($0.name, $0.type) }),
                    localTypes: translator.localTypes, sharedArrays: translator.sharedArrays)
                do {
                    schedule = try grouped.emit(folded)
                } catch let diagnostic as KernelDiagnostic {
                    throw diagnostic.anchored(from: Syntax(folded), to: Syntax(body))
                }
            }
            let cParameters = parameters.map { "\($0.type.c) \($0.name)" }.joined(separator: ", ")
            let text = (["GB_KERNEL \(name)(\(cParameters)) {"] + lines + ["}", ""]).joined(separator: "\n")
            // With helper functions, the text is assembled where the helpers' peers are visible: at run time.
            let portableText =
                translator.helpers.isEmpty
                ? literal(text)
                : "GPUBridgeKernels.KernelHelper.program(\(literal(text)), using: [\(translator.helpers.map { "\($0)GPUFunction" }.joined(separator: ", "))])"

            // The declared parameters and the CPU kernel.
            var declared: [String] = []
            var reads: [String] = []
            var arguments: [String] = ["item"]  // the closure's WorkItem
            for (index, parameter) in parameters.enumerated() {
                switch parameter.type {
                case let .buffer(element, mutable):
                    declared.append(
                        ".buffer(\(literal(parameter.name)), \(element).self, access: .\(mutable ? "readWrite" : "readOnly"))"
                    )
                    reads.append(
                        "let a\(index) = \(mutable ? "MutableDeviceArray" : "DeviceArray")<\(element)>(try context.buffer(\(index), as: \(element).self))"
                    )
                default:
                    guard let scalar = parameter.type.scalarCase else {
                        throw KernelDiagnostic(
                            function.signature, "'\(parameter.name)': Bool parameters are not allowed; pass an Int32")
                    }
                    declared.append(".scalar(name: \(literal(parameter.name)), type: .\(scalar))")
                    reads.append("let a\(index) = try \(parameter.type).scalar(context, \(index))")
                }
                arguments.append((parameter.label.map { "\($0): " } ?? "") + "a\(index)")
            }
            let call = "\(name)(\(arguments.joined(separator: ", ")))"
            // A body that does nothing past `n` along dimension 0: the CPU loop stops at `n`.
            let limit = translator.foldedBody.flatMap { folded in
                BoundsGuard.limit(
                    of: folded, item: itemName,
                    parameters: Dictionary(uniqueKeysWithValues: parameters.map { ($0.name, $0.type) }))
            }
            let limitArgument = limit.flatMap { name in
                parameters.firstIndex { $0.name == name }.map { ", limit: Int(a\($0))" }
            }
            var closureLines = reads + ["try WorkItem.forEach(in: context\(limitArgument ?? "")) { item in \(call) }"]
            var closureParameter = "context"
            if let schedule {
                closureParameter = "gb_context"
                closureLines = []
                for (index, parameter) in parameters.enumerated() where schedule.uses.contains(parameter.name) {
                    switch parameter.type {
                    case let .buffer(element, mutable):
                        closureLines.append(
                            "let \(parameter.name) = \(mutable ? "MutableDeviceArray" : "DeviceArray")<\(element)>(try gb_context.buffer(\(index), as: \(element).self))"
                        )
                    default:
                        closureLines.append(
                            "let \(parameter.name) = try \(parameter.type).scalar(gb_context, \(index))")
                    }
                }
                if !schedule.carried.isEmpty {
                    closureLines.append(
                        "let gb_n = gb_context.launch.groupSize.x * gb_context.launch.groupSize.y * gb_context.launch.groupSize.z"
                    )
                    for (carried, type) in schedule.carried.sorted(by: { $0.key < $1.key }) {
                        closureLines.append(
                            "var gb_\(carried) = [\(type)](repeating: \(type == .bool ? "false" : "0"), count: gb_n)")
                    }
                }
                closureLines.append("try WorkItem.forEachGroup(in: gb_context) { gb_items in")
                closureLines += schedule.lines.map { "    " + $0 }
                closureLines.append("}")
            }
            let closureBody = closureLines.map { "        \($0)" }.joined(separator: "\n")
            return """
                \(raw: isStatic ? "static " : "")let \(raw: name)Kernel = GPUBridge.KernelDefinition(
                    id: \(raw: literal(name)),
                    summary: \(raw: literal("Swift kernel \(name) (@GPUKernel)")),
                    parameters: [\(raw: declared.joined(separator: ", "))],
                    portableText: \(raw: portableText),
                    entryPoint: \(raw: literal(name)),
                    scheduling: \(raw: schedule == nil ? ".perItem" : ".perGroup"),
                    swift: { \(raw: closureParameter) in
                \(raw: closureBody)
                    }
                )
                """
        }

        /// The parameters of a kernel or helper after the ones `skip` drops, checked.
        static func parameters(of function: FunctionDeclSyntax, dropping skip: Int) throws -> [Parameter] {
            var parameters: [Parameter] = []
            for parameter in function.signature.parameterClause.parameters.dropFirst(skip) {
                if let value = parameter.defaultValue {
                    throw KernelDiagnostic(value, "kernel parameters have no default values")
                }
                let internalName = (parameter.secondName ?? parameter.firstName).text
                try KernelTranslator.checkName(internalName, at: parameter)
                let label = parameter.firstName.tokenKind == .wildcard ? nil : parameter.firstName.text
                parameters.append(Parameter(label: label, name: internalName, type: try parameterType(parameter.type)))
            }
            return parameters
        }

        /// A Swift string literal of `text` (escaped, one line).
        static func literal(_ text: String) -> String {
            var out = "\""
            for scalar in text.unicodeScalars {
                switch scalar {
                case "\\": out += "\\\\"
                case "\"": out += "\\\""
                case "\n": out += "\\n"
                case "\t": out += "\\t"
                default: out.unicodeScalars.append(scalar)
                }
            }
            return out + "\""
        }

        static func parameterType(_ type: TypeSyntax) throws -> KernelType {
            if let identifier = type.as(IdentifierTypeSyntax.self) {
                let name = identifier.name.text
                if name == "DeviceArray" || name == "MutableDeviceArray" {
                    guard let argument = identifier.genericArgumentClause?.arguments.first,
                        identifier.genericArgumentClause?.arguments.count == 1,
                        let elementName = argument.argument.as(IdentifierTypeSyntax.self)?.name.text,
                        let element = KernelType.scalars[elementName], element != .bool
                    else {
                        throw KernelDiagnostic(type, "\(name) holds Float, Double, Int32, UInt32, Int64, UInt64 or Int")
                    }
                    return .buffer(element, mutable: name == "MutableDeviceArray")
                }
                if let scalar = KernelType.scalars[name], identifier.genericArgumentClause == nil { return scalar }
            }
            throw KernelDiagnostic(
                type,
                "kernel parameters are DeviceArray<T>, MutableDeviceArray<T> or scalars (Float, Double, Int32, UInt32, Int64, UInt64, Int)"
            )
        }
    }

    /// `@GPUFunction`: a peer `KernelHelper` named `<function>GPUFunction` with the portable text of one Swift function
    /// that kernels (and other helpers) call (see `GPUFunction` in GPUBridgeKernels).
    ///
    /// Run by the compiler's plugin host, one expansion per annotated function; it holds no state.
    public struct GPUFunctionMacro: PeerMacro {
        public static func expansion(
            of node: AttributeSyntax, providingPeersOf declaration: some DeclSyntaxProtocol,
            in context: some MacroExpansionContext
        ) throws -> [DeclSyntax] {
            try KernelDiagnostic.reporting(in: context) { try expand(declaration) }
        }

        static func expand(_ declaration: some DeclSyntaxProtocol) throws -> DeclSyntax {
            guard let function = declaration.as(FunctionDeclSyntax.self) else {
                throw KernelDiagnostic(declaration, "@GPUFunction applies to a function")
            }
            let name = function.name.text
            try KernelTranslator.checkName(name, at: function.name)
            if let generics = function.genericParameterClause {
                throw KernelDiagnostic(generics, "a helper function is not generic; write one per type")
            }
            if let effects = function.signature.effectSpecifiers {
                throw KernelDiagnostic(effects, "a helper function neither throws nor awaits")
            }
            guard let result = function.signature.returnClause else {
                throw KernelDiagnostic(
                    function.signature, "a helper function returns a value (-> Float ...); kernels write buffers")
            }
            guard let body = function.body else { throw KernelDiagnostic(function, "a helper function needs a body") }
            let returns = try KernelTranslator.scalarResult(result.type)
            let parameters = try GPUKernelMacro.parameters(of: function, dropping: 0)
            if let buffer = parameters.first(where: { $0.type.scalarCase == nil && $0.type != .bool }) {
                throw KernelDiagnostic(
                    function.signature.parameterClause,
                    "'\(buffer.name)': helper functions take scalars; index the buffer in the kernel and pass the value"
                )
            }
            var translator = KernelTranslator(
                item: "", parameters: Dictionary(uniqueKeysWithValues: parameters.map { ($0.name, $0.type) }),
                returns: returns, function: name)
            let lines = try translator.translate(body)
            let cParameters = parameters.map { "\($0.type.c) \($0.name)" }.joined(separator: ", ")
            let text = (["GB_DEVICE \(returns.c) \(name)(\(cParameters)) {"] + lines + ["}", ""]).joined(
                separator: "\n")
            let isStatic = function.modifiers.contains { $0.name.tokenKind == .keyword(.static) }
            let uses = translator.helpers.map { "\($0)GPUFunction" }.joined(separator: ", ")
            return """
                \(raw: isStatic ? "static " : "")let \(raw: name)GPUFunction = GPUBridgeKernels.KernelHelper(
                    name: \(raw: GPUKernelMacro.literal(name)), text: \(raw: GPUKernelMacro.literal(text)), uses: [\(raw: uses)])
                """
        }
    }

    extension KernelTranslator {
        /// Translates a function body: operators folded first (the parser leaves them as flat sequences), and a
        /// diagnostic placed on the function's own syntax.
        mutating func translate(_ body: CodeBlockSyntax) throws -> [String] {
            let folded = try OperatorTable.standardOperators.foldAll(body) { error in
                throw KernelDiagnostic(body, "operators could not be grouped: \(error)")
            }
            guard let foldedBody = folded.as(CodeBlockSyntax.self) else {
                throw KernelDiagnostic(body, "the function body could not be read")
            }
            self.foldedBody = foldedBody
            do {
                return try block(foldedBody, indent: "    ")
            } catch let diagnostic as KernelDiagnostic {
                // The folded body is a tree of its own, unknown to the compiler: point at the same text in `body`.
                throw diagnostic.anchored(from: folded, to: Syntax(body))
            }
        }

        /// The result type of a helper function: a scalar.
        static func scalarResult(_ type: TypeSyntax) throws -> KernelType {
            guard let name = type.as(IdentifierTypeSyntax.self)?.name.text, let scalar = KernelType.scalars[name] else {
                throw KernelDiagnostic(
                    type, "a helper function returns Float, Double, Int32, UInt32, Int64, UInt64, Int or Bool")
            }
            return scalar
        }

        /// The type of a local's annotation: a scalar.
        func scalarType(_ type: TypeSyntax) throws -> KernelType {
            guard let name = type.as(IdentifierTypeSyntax.self)?.name.text, let scalar = KernelType.scalars[name] else {
                throw KernelDiagnostic(type, "locals are Float, Double, Int32, UInt32, Int64, UInt64, Int or Bool")
            }
            return scalar
        }
    }

    @main
    struct GPUBridgeKernelMacrosPlugin: CompilerPlugin {
        let providingMacros: [any Macro.Type] = [GPUKernelMacro.self, GPUFunctionMacro.self]
    }
#else
    /// Built without the SwiftKernels trait: the plugin provides no macro (and swift-syntax is not built).
    @main
    enum GPUBridgeKernelMacrosDisabled {
        static func main() {}
    }
#endif
