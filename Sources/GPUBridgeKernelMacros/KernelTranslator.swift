#if SwiftKernels
    import SwiftSyntax

    /// Translates the body of a `@GPUKernel` function (operators already folded) into portable kernel text, checking every
    /// construct against the subset. One instance per function; not shared.
    struct KernelTranslator {
        /// The name of the `WorkItem` parameter.
        let item: String
        private var scopes: [[String: KernelType]]
        private var loopCounter = 0
        /// The value type a helper function returns (`@GPUFunction`); nil in a kernel, which returns nothing.
        let returns: KernelType?
        /// The function being translated (a helper may not call itself).
        let function: String
        /// The helper functions (`@GPUFunction`) the body calls, in the order first called.
        private(set) var helpers: [String] = []
        /// Whether the body has `item.barrier()`.
        private(set) var usesBarrier = false
        /// The body's shared arrays (`SharedArray<T>(count: N)`), by name, and their bytes in all.
        private(set) var sharedArrays: Set<String> = []
        private var sharedBytes = 0
        /// Each local's type, by the UTF-8 offset of its name in the translated body (the CPU schedule of a kernel
        /// with barriers keeps some locals per work-item and needs their types).
        private(set) var localTypes: [Int: KernelType] = [:]
        /// The operator-folded body last translated (what the CPU schedule of a kernel with barriers reads).
        var foldedBody: CodeBlockSyntax?
        /// The most bytes of shared arrays one kernel may declare: 48 KiB, what CUDA gives without opting in.
        static let sharedByteLimit = 48 * 1024

        init(item: String, parameters: [String: KernelType], returns: KernelType? = nil, function: String = "") {
            self.item = item
            self.returns = returns
            self.function = function
            scopes = [parameters]
        }

        static let cReserved: Set<String> = [
            "auto", "break", "case", "char", "const", "continue", "default", "do", "double", "else", "enum", "extern",
            "float", "for", "goto", "if", "inline", "int", "long", "register", "restrict", "return", "short", "signed",
            "sizeof", "static", "struct", "switch", "typedef", "union", "unsigned", "void", "volatile", "while", "bool",
            "half", "uint", "ulong", "uchar", "ushort", "kernel", "global", "local", "constant", "private", "class",
            "template", "new", "delete", "this", "namespace", "using", "operator", "virtual", "public", "protected",
            "friend", "typename", "true", "false", "min", "max", "abs", "fabs", "fmin", "fmax", "sqrt", "exp", "log",
            "pow", "sin", "cos", "tanh", "floor", "ceil", "fma", "main", "barrier",
        ]

        /// Refuses names the C text cannot use as they are.
        static func checkName(_ name: String, at node: some SyntaxProtocol) throws {
            if cReserved.contains(name) || name.hasPrefix("gb_") || name.hasPrefix("GB_") || name.hasPrefix("__") {
                throw KernelDiagnostic(
                    node,
                    "'\(name)' is a reserved word or prefix of the kernel text (C, CUDA, OpenCL or GPUBridge's gb_); rename it"
                )
            }
            guard
                name.unicodeScalars.allSatisfy({
                    $0.isASCII && ($0 == "_" || $0.properties.isAlphabetic || ("0"..."9").contains($0))
                })
            else {
                throw KernelDiagnostic(
                    node, "'\(name)' is not an ASCII identifier; kernel names must be letters, digits and _")
            }
        }

        // MARK: Scopes

        private func lookup(_ name: String) -> KernelType? {
            for scope in scopes.reversed() { if let t = scope[name] { return t } }
            return nil
        }

        private mutating func declare(_ name: String, _ type: KernelType, at node: some SyntaxProtocol) throws {
            try Self.checkName(name, at: node)
            if name == item { throw KernelDiagnostic(node, "'\(name)' names the work-item; choose another name") }
            scopes[scopes.count - 1][name] = type
            localTypes[node.positionAfterSkippingLeadingTrivia.utf8Offset] = type
        }

        // MARK: Statements

        mutating func block(_ block: CodeBlockSyntax, indent: String) throws -> [String] {
            scopes.append([:])
            defer { scopes.removeLast() }
            var lines: [String] = []
            for statement in block.statements { lines += try self.statement(statement.item, indent: indent) }
            return lines
        }

        mutating func statement(_ item: CodeBlockItemSyntax.Item, indent: String) throws -> [String] {
            switch item {
            case let .decl(decl):
                guard let variable = decl.as(VariableDeclSyntax.self) else {
                    throw KernelDiagnostic(
                        decl, "only 'let' and 'var' declarations are allowed in a kernel (helper functions come later)")
                }
                return try variableDecl(variable, indent: indent)
            case let .stmt(stmt):
                if let expression = stmt.as(ExpressionStmtSyntax.self) {
                    return try statement(.expr(expression.expression), indent: indent)
                }
                if let loop = stmt.as(ForStmtSyntax.self) { return try forLoop(loop, indent: indent) }
                if let loop = stmt.as(WhileStmtSyntax.self) {
                    let condition = try conditions(loop.conditions)
                    return ["\(indent)while (\(condition)) {"] + (try block(loop.body, indent: indent + "    ")) + [
                        "\(indent)}"
                    ]
                }
                if let jump = stmt.as(BreakStmtSyntax.self) {
                    if let label = jump.label {
                        throw KernelDiagnostic(label, "labelled break is not allowed; use a flag")
                    }
                    return ["\(indent)break;"]
                }
                if let jump = stmt.as(ContinueStmtSyntax.self) {
                    if let label = jump.label {
                        throw KernelDiagnostic(label, "labelled continue is not allowed; use a flag")
                    }
                    return ["\(indent)continue;"]
                }
                if let jump = stmt.as(ReturnStmtSyntax.self) {
                    if let returns {
                        guard let value = jump.expression else {
                            throw KernelDiagnostic(jump, "a helper function returns a \(returns)")
                        }
                        let (code, type) = try expression(value, expected: returns)
                        guard type == returns else {
                            throw KernelDiagnostic(
                                value,
                                "a \(type) value cannot be returned as \(returns); convert it with \(returns)(...)")
                        }
                        return ["\(indent)return \(code);"]
                    }
                    if let value = jump.expression {
                        throw KernelDiagnostic(value, "a kernel returns nothing; write results to a MutableDeviceArray")
                    }
                    return ["\(indent)return;"]
                }
                throw KernelDiagnostic(
                    stmt,
                    "this statement is not allowed in a kernel; use let/var, assignments, if, for, while, break, continue, return"
                )
            case let .expr(expr):
                if let branch = expr.as(IfExprSyntax.self) { return try ifStatement(branch, indent: indent) }
                return ["\(indent)\(try assignment(expr));"]
            }
        }

        private mutating func variableDecl(_ decl: VariableDeclSyntax, indent: String) throws -> [String] {
            if let attribute = decl.attributes.first {
                throw KernelDiagnostic(attribute, "attributes on kernel variables are not allowed")
            }
            let constant = decl.bindingSpecifier.tokenKind == .keyword(.let)
            var lines: [String] = []
            for binding in decl.bindings {
                guard let pattern = binding.pattern.as(IdentifierPatternSyntax.self) else {
                    throw KernelDiagnostic(binding.pattern, "declare one name per binding (no tuples or wildcards)")
                }
                if let accessors = binding.accessorBlock {
                    throw KernelDiagnostic(accessors, "computed variables are not allowed in a kernel")
                }
                guard let initializer = binding.initializer else {
                    throw KernelDiagnostic(binding, "give '\(pattern.identifier.text)' a value where it is declared")
                }
                if let call = initializer.value.as(FunctionCallExprSyntax.self),
                    let generic = call.calledExpression.as(GenericSpecializationExprSyntax.self),
                    generic.expression.as(DeclReferenceExprSyntax.self)?.baseName.text == "SharedArray"
                {
                    lines.append(try sharedArray(call, generic, name: pattern, constant: constant, indent: indent))
                    continue
                }
                var declared: KernelType?
                if let annotation = binding.typeAnnotation {
                    declared = try scalarType(annotation.type)
                }
                let (code, type) = try expression(initializer.value, expected: declared)
                let final = declared ?? type
                if let declared, declared != type {
                    throw KernelDiagnostic(
                        initializer.value,
                        "a \(type) value cannot initialise a \(declared); convert it with \(declared)(...)")
                }
                guard !isBuffer(final) else {
                    throw KernelDiagnostic(
                        initializer.value, "buffers cannot be copied into locals; index the parameter directly")
                }
                let name = pattern.identifier.text
                try declare(name, final, at: pattern)
                lines.append("\(indent)\(constant ? "const " : "")\(final.c) \(name) = \(code);")
            }
            return lines
        }

        /// `let tile = SharedArray<Float>(count: 256)`: one array per work-group, at the top level of a kernel body.
        private mutating func sharedArray(
            _ call: FunctionCallExprSyntax, _ generic: GenericSpecializationExprSyntax, name: IdentifierPatternSyntax,
            constant: Bool, indent: String
        ) throws -> String {
            guard !item.isEmpty else {
                throw KernelDiagnostic(call, "shared arrays belong to kernels, not helper functions")
            }
            guard constant else { throw KernelDiagnostic(name, "declare a SharedArray with let") }
            guard scopes.count == 2 else {
                throw KernelDiagnostic(
                    call, "declare a SharedArray at the top level of the kernel body (there is one per work-group)")
            }
            guard generic.genericArgumentClause.arguments.count == 1,
                let elementName = generic.genericArgumentClause.arguments.first?.argument.as(IdentifierTypeSyntax.self)?
                    .name.text,
                let element = KernelType.scalars[elementName], element != .bool
            else {
                throw KernelDiagnostic(
                    generic.genericArgumentClause,
                    "SharedArray holds Float, Double, Int32, UInt32, Int64, UInt64 or Int")
            }
            guard call.arguments.count == 1, let argument = call.arguments.first,
                argument.label?.text == "count",
                let literal = argument.expression.as(IntegerLiteralExprSyntax.self),
                let count = Int(literal.literal.text.filter { $0 != "_" }), count > 0
            else {
                throw KernelDiagnostic(
                    call.arguments, "a SharedArray's size is an integer literal: SharedArray<Float>(count: 256)")
            }
            sharedBytes += count * element.byteSize
            guard sharedBytes <= Self.sharedByteLimit else {
                throw KernelDiagnostic(
                    call,
                    "the kernel's shared arrays take \(sharedBytes) bytes; the limit is \(Self.sharedByteLimit) (48 KiB, what CUDA gives without opting in)"
                )
            }
            try declare(name.identifier.text, .buffer(element, mutable: true), at: name)
            sharedArrays.insert(name.identifier.text)
            return "\(indent)GB_SHARED \(element.c) \(name.identifier.text)[\(count)];"
        }

        private mutating func ifStatement(_ branch: IfExprSyntax, indent: String) throws -> [String] {
            var lines = ["\(indent)if (\(try conditions(branch.conditions))) {"]
            lines += try block(branch.body, indent: indent + "    ")
            switch branch.elseBody {
            case nil:
                lines.append("\(indent)}")
            case let .ifExpr(next):
                let nested = try ifStatement(next, indent: indent)
                lines.append("\(indent)} else " + nested[0].dropFirst(indent.count))
                lines += nested.dropFirst()
            case let .codeBlock(body):
                lines.append("\(indent)} else {")
                lines += try block(body, indent: indent + "    ")
                lines.append("\(indent)}")
            }
            return lines
        }

        private mutating func conditions(_ list: ConditionElementListSyntax) throws -> String {
            var parts: [String] = []
            for element in list {
                guard case let .expression(expr) = element.condition else {
                    throw KernelDiagnostic(
                        element, "only Boolean conditions are allowed (no 'let' bindings or availability)")
                }
                let (code, type) = try expression(expr, expected: .bool)
                guard type == .bool else { throw KernelDiagnostic(expr, "a condition must be Bool, this is \(type)") }
                parts.append(list.count > 1 ? "(\(code))" : code)
            }
            return parts.joined(separator: " && ")
        }

        private mutating func forLoop(_ loop: ForStmtSyntax, indent: String) throws -> [String] {
            if let keyword = loop.tryKeyword ?? loop.awaitKeyword ?? loop.caseKeyword {
                throw KernelDiagnostic(keyword, "'\(keyword.text)' is not allowed in a kernel loop")
            }
            if let clause = loop.whereClause {
                throw KernelDiagnostic(clause, "'where' is not allowed; use 'if' in the body")
            }
            let name: String
            if let identifier = loop.pattern.as(IdentifierPatternSyntax.self) {
                name = identifier.identifier.text
            } else if loop.pattern.is(WildcardPatternSyntax.self) {
                loopCounter += 1
                name = "gb_loop\(loopCounter)"
            } else {
                throw KernelDiagnostic(loop.pattern, "loop over one name: for i in a..<b, a...b or stride(from:to:by:)")
            }
            let header: String
            let type: KernelType
            let annotated = try loop.typeAnnotation.map { try scalarType($0.type) }
            if let range = loop.sequence.as(InfixOperatorExprSyntax.self),
                let op = range.operator.as(BinaryOperatorExprSyntax.self), ["..<", "..."].contains(op.operator.text)
            {
                let (low, high, t) = try pair(range.leftOperand, range.rightOperand, as: annotated)
                guard t.isInteger else { throw KernelDiagnostic(range, "a range loop counts integers, not \(t)") }
                type = t
                let comparison = op.operator.text == "..<" ? "<" : "<="
                header = "for (\(t.c) \(name) = \(low); \(name) \(comparison) \(high); \(name)++)"
            } else if let call = loop.sequence.as(FunctionCallExprSyntax.self),
                call.calledExpression.as(DeclReferenceExprSyntax.self)?.baseName.text == "stride"
            {
                let labels = call.arguments.map { $0.label?.text ?? "_" }
                guard labels == ["from", "to", "by"] || labels == ["from", "through", "by"] else {
                    throw KernelDiagnostic(call, "stride takes (from:to:by:) or (from:through:by:)")
                }
                let args = Array(call.arguments)
                let (low, high, t) = try pair(args[0].expression, args[1].expression, as: annotated)
                // The step is the bounds' Stride in Swift: Int for every integer type.
                let (step, stepType) = try expression(args[2].expression, expected: .int)
                guard t.isInteger, stepType.isInteger else {
                    throw KernelDiagnostic(call, "stride loops count integers (here \(t) by \(stepType))")
                }
                type = t
                let inclusive = labels[1] == "through"
                header =
                    "for (\(t.c) \(name) = \(low); (\(step)) > 0 ? \(name) \(inclusive ? "<=" : "<") \(high) : "
                    + "\(name) \(inclusive ? ">=" : ">") \(high); \(name) += \(step))"
            } else {
                throw KernelDiagnostic(loop.sequence, "loop over a..<b, a...b or stride(from:to:by:) only")
            }
            scopes.append([:])
            defer { scopes.removeLast() }
            if loop.pattern.is(WildcardPatternSyntax.self) {
                scopes[scopes.count - 1][name] = type  // the counter the text needs for `for _ in`
            } else {
                try declare(name, type, at: loop.pattern)
            }
            return ["\(indent)\(header) {"] + (try block(loop.body, indent: indent + "    ")) + ["\(indent)}"]
        }

        /// An assignment or compound assignment, as a C expression statement.
        private mutating func assignment(_ expr: ExprSyntax) throws -> String {
            if expr.is(SwitchExprSyntax.self) {
                throw KernelDiagnostic(
                    expr,
                    "this statement is not allowed in a kernel; use let/var, assignments, if, for, while, break, continue, return"
                )
            }
            if let call = expr.as(FunctionCallExprSyntax.self), isBarrier(call) {
                guard call.arguments.isEmpty, call.trailingClosure == nil else {
                    throw KernelDiagnostic(call.arguments, "\(item).barrier() takes no arguments")
                }
                usesBarrier = true
                return "GB_BARRIER()"
            }
            if let call = expr.as(FunctionCallExprSyntax.self), atomicTarget(call) != nil {
                return try expression(expr, expected: nil).0  // atomicAdd and the like, its result unused
            }
            guard let infix = expr.as(InfixOperatorExprSyntax.self) else {
                // A call or another expression: its own error first (a function kernels cannot call), else no effect.
                _ = try expression(expr, expected: nil)
                throw KernelDiagnostic(
                    expr,
                    "a statement must be an assignment (x = ..., a[i] += ...); other expressions have no effect here")
            }
            let op: String
            if infix.operator.is(AssignmentExprSyntax.self) {
                op = "="
            } else if let binary = infix.operator.as(BinaryOperatorExprSyntax.self),
                ["+=", "-=", "*=", "/=", "%=", "&=", "|=", "^=", "<<=", ">>=", "&+=", "&-=", "&*="].contains(
                    binary.operator.text)
            {
                op = ["&+=": "+=", "&-=": "-=", "&*=": "*="][binary.operator.text] ?? binary.operator.text
            } else {
                throw KernelDiagnostic(
                    infix.operator, "a statement must be an assignment; this operator has no effect here")
            }
            let (target, type) = try lvalue(infix.leftOperand)
            let (value, valueType) = try expression(infix.rightOperand, expected: type)
            guard valueType == type || (["<<=", ">>="].contains(op) && valueType.isInteger) else {
                throw KernelDiagnostic(
                    infix.rightOperand,
                    "a \(valueType) value cannot be assigned to a \(type); convert it with \(type)(...)"
                )
            }
            if op == "%=" && type.isFloating {
                throw KernelDiagnostic(infix.operator, "%= is for integers; use truncatingRemainder on the CPU only")
            }
            return "\(target) \(op) \(value)"
        }

        private mutating func lvalue(_ expr: ExprSyntax) throws -> (String, KernelType) {
            if let reference = expr.as(DeclReferenceExprSyntax.self) {
                let name = reference.baseName.text
                guard let type = lookup(name), !isBuffer(type) else {
                    throw KernelDiagnostic(expr, "'\(name)' cannot be assigned in a kernel")
                }
                return (name, type)
            }
            if let subscripted = expr.as(SubscriptCallExprSyntax.self) {
                let (code, type) = try self.expression(expr, expected: nil)
                guard case let .buffer(_, mutable)? = bufferType(of: subscripted.calledExpression), mutable else {
                    throw KernelDiagnostic(
                        subscripted.calledExpression, "only a MutableDeviceArray parameter can be written")
                }
                return (code, type)
            }
            throw KernelDiagnostic(expr, "assign to a 'var' or to an element of a MutableDeviceArray")
        }

        private func isBuffer(_ type: KernelType) -> Bool {
            if case .buffer = type { return true }
            return false
        }

        private func bufferType(of expr: ExprSyntax) -> KernelType? {
            guard let name = expr.as(DeclReferenceExprSyntax.self)?.baseName.text, let type = lookup(name),
                isBuffer(type)
            else { return nil }
            return type
        }

        // MARK: Expressions

        /// Two operands of one type: a literal takes the other operand's type.
        private mutating func pair(
            _ a: ExprSyntax, _ b: ExprSyntax, as declared: KernelType? = nil
        ) throws -> (String, String, KernelType) {
            if let declared {
                let (ra, ta) = try expression(a, expected: declared)
                let (rb, tb) = try expression(b, expected: declared)
                guard ta == declared, tb == declared else {
                    throw KernelDiagnostic(a, "both bounds must be \(declared), here \(ta) and \(tb)")
                }
                return (ra, rb, declared)
            }
            if needsContext(a) && !needsContext(b) {
                let (rb, tb) = try expression(b, expected: nil)
                let (ra, ta) = try expression(a, expected: tb)
                guard ta == tb else { throw KernelDiagnostic(a, "operands must have one type (\(ta) and \(tb))") }
                return (ra, rb, ta)
            }
            let (ra, ta) = try expression(a, expected: nil)
            let (rb, tb) = try expression(b, expected: ta)
            guard ta == tb else {
                throw KernelDiagnostic(
                    b, "operands must have one type, here \(ta) and \(tb); convert one with \(ta)(...)")
            }
            return (ra, rb, ta)
        }

        /// A literal or a helper call: its type comes from the other operand or the context.
        private func needsContext(_ expr: ExprSyntax) -> Bool { isLiteral(expr) || isHelperCall(expr) }

        private func isHelperCall(_ expr: ExprSyntax) -> Bool {
            guard let call = expr.as(FunctionCallExprSyntax.self),
                let name = call.calledExpression.as(DeclReferenceExprSyntax.self)?.baseName.text
            else { return false }
            return KernelType.scalars[name] == nil && !Self.unaryMath.contains(name)
                && !Self.builtinCalls.contains(name)
                && !Self.refusedCalls.contains(name)
        }

        /// Whether `call` is `item.barrier()`.
        func isBarrier(_ call: FunctionCallExprSyntax) -> Bool {
            guard let member = call.calledExpression.as(MemberAccessExprSyntax.self),
                member.base?.as(DeclReferenceExprSyntax.self)?.baseName.text == item, !item.isEmpty
            else { return false }
            return member.declName.baseName.text == "barrier"
        }

        /// The buffer and operation of `buffer.atomicAdd(i, v)` (and Min, Max), or nil when `call` is not one.
        private func atomicTarget(_ call: FunctionCallExprSyntax) -> (buffer: String, operation: String)? {
            guard let member = call.calledExpression.as(MemberAccessExprSyntax.self),
                let base = member.base?.as(DeclReferenceExprSyntax.self), bufferType(of: ExprSyntax(base)) != nil,
                ["atomicAdd", "atomicMin", "atomicMax"].contains(member.declName.baseName.text)
            else { return nil }
            return (base.baseName.text, member.declName.baseName.text)
        }

        private func isLiteral(_ expr: ExprSyntax) -> Bool {
            if expr.is(IntegerLiteralExprSyntax.self) || expr.is(FloatLiteralExprSyntax.self) { return true }
            if let prefix = expr.as(PrefixOperatorExprSyntax.self), prefix.operator.text == "-" {
                return isLiteral(prefix.expression)
            }
            if let tuple = expr.as(TupleExprSyntax.self), tuple.elements.count == 1, let only = tuple.elements.first {
                return isLiteral(only.expression)
            }
            return false
        }

        mutating func expression(_ expr: ExprSyntax, expected: KernelType?) throws -> (String, KernelType) {
            if let literal = expr.as(IntegerLiteralExprSyntax.self) { return try integerLiteral(literal, expected) }
            if let literal = expr.as(FloatLiteralExprSyntax.self) { return try floatLiteral(literal, expected) }
            if let literal = expr.as(BooleanLiteralExprSyntax.self) {
                return (literal.literal.tokenKind == .keyword(.true) ? "true" : "false", .bool)
            }
            if let reference = expr.as(DeclReferenceExprSyntax.self) {
                let name = reference.baseName.text
                if name == item {
                    throw KernelDiagnostic(expr, "use the work-item through its members (\(item).globalID(0) ...)")
                }
                guard let type = lookup(name) else {
                    throw KernelDiagnostic(
                        expr, "'\(name)' is not a parameter or local of this kernel; kernels see nothing else")
                }
                if isBuffer(type) { throw KernelDiagnostic(expr, "a buffer can only be indexed (\(name)[i])") }
                return (name, type)
            }
            if let tuple = expr.as(TupleExprSyntax.self) {
                guard tuple.elements.count == 1, let only = tuple.elements.first, only.label == nil else {
                    throw KernelDiagnostic(expr, "tuples are not allowed in a kernel")
                }
                let (code, type) = try expression(only.expression, expected: expected)
                return ("(\(code))", type)
            }
            if let prefix = expr.as(PrefixOperatorExprSyntax.self) {
                let op = prefix.operator.text
                let (code, type) = try expression(prefix.expression, expected: expected)
                switch op {
                case "-" where type.isNumeric && type != .uint32 && type != .uint64: return ("(-\(code))", type)
                case "!" where type == .bool: return ("(!\(code))", type)
                case "~" where type.isInteger: return ("(~\(code))", type)
                default: throw KernelDiagnostic(prefix.operator, "prefix '\(op)' does not apply to \(type) in a kernel")
                }
            }
            if let infix = expr.as(InfixOperatorExprSyntax.self) { return try binary(infix, expected: expected) }
            if let ternary = expr.as(TernaryExprSyntax.self) {
                let (condition, conditionType) = try expression(ternary.condition, expected: .bool)
                guard conditionType == .bool else {
                    throw KernelDiagnostic(ternary.condition, "the condition must be Bool")
                }
                var (a, b, type) = try pair(ternary.thenExpression, ternary.elseExpression)
                if let expected, needsContext(ternary.thenExpression), needsContext(ternary.elseExpression) {
                    (a, type) = try expression(ternary.thenExpression, expected: expected)
                    (b, _) = try expression(ternary.elseExpression, expected: expected)
                }
                return ("(\(condition) ? \(a) : \(b))", type)
            }
            if let subscripted = expr.as(SubscriptCallExprSyntax.self) {
                guard case let .buffer(element, _)? = bufferType(of: subscripted.calledExpression) else {
                    throw KernelDiagnostic(subscripted.calledExpression, "only buffer parameters can be indexed")
                }
                guard subscripted.arguments.count == 1, let index = subscripted.arguments.first, index.label == nil
                else {
                    throw KernelDiagnostic(subscripted.arguments, "index a buffer with one integer")
                }
                let (code, type) = try expression(index.expression, expected: .int32)
                guard type.isInteger else {
                    throw KernelDiagnostic(index.expression, "an index must be an integer, not \(type)")
                }
                return ("\(subscripted.calledExpression.trimmedDescription)[\(code)]", element)
            }
            if let call = expr.as(FunctionCallExprSyntax.self) { return try self.call(call, expected: expected) }
            if let member = expr.as(MemberAccessExprSyntax.self),
                member.base?.as(DeclReferenceExprSyntax.self)?.baseName.text == item,
                member.declName.baseName.text == "contiguousItems"
            {
                return ("(GB_CONTIGUOUS != 0)", .bool)
            }
            if let member = expr.as(MemberAccessExprSyntax.self), member.declName.baseName.text == "infinity" {
                // Float.infinity, Double.infinity, or .infinity where the type is known.
                let base = member.base.map { $0.trimmedDescription }
                let type: KernelType? =
                    switch base {
                    case "Float": .float
                    case "Double": .double
                    case nil: expected == .float || expected == .double ? expected : nil
                    default: nil
                    }
                guard let type else {
                    throw KernelDiagnostic(
                        member, "infinity is Float.infinity or Double.infinity (or .infinity where the type is known)")
                }
                return (type == .float ? "GB_INFINITY" : "((double)GB_INFINITY)", type)
            }
            if let member = expr.as(MemberAccessExprSyntax.self) {
                throw KernelDiagnostic(
                    member,
                    "'\(member.trimmedDescription)' is not available in a kernel (buffers have no count: pass it as a parameter)"
                )
            }
            throw KernelDiagnostic(expr, "this expression is not part of the kernel subset (see docs/SWIFT-KERNELS.md)")
        }

        private func integerLiteral(_ literal: IntegerLiteralExprSyntax, _ expected: KernelType?) throws -> (
            String, KernelType
        ) {
            let text = literal.literal.text.filter { $0 != "_" }
            var value: UInt64?
            if text.hasPrefix("0x") {
                value = UInt64(text.dropFirst(2), radix: 16)
            } else if text.hasPrefix("0b") {
                value = UInt64(text.dropFirst(2), radix: 2)
            } else if text.hasPrefix("0o") {
                value = UInt64(text.dropFirst(2), radix: 8)
            } else {
                value = UInt64(text)
            }
            guard let value else { throw KernelDiagnostic(literal, "integer literal out of range") }
            let type = expected.flatMap { $0.isNumeric ? $0 : nil } ?? .int
            switch type {
            case .float: return ("\(value).0f", type)
            case .double: return ("\(value).0", type)
            case .int32 where value <= UInt64(Int32.max): return ("\(value)", type)
            case .uint32 where value <= UInt64(UInt32.max): return ("\(value)u", type)
            case .int64 where value <= UInt64(Int64.max), .int where value <= UInt64(Int64.max):
                return ("((gb_long)\(value))", type)
            case .uint64: return ("((gb_ulong)\(value)u)", type)
            default: throw KernelDiagnostic(literal, "\(text) does not fit in \(type)")
            }
        }

        private func floatLiteral(_ literal: FloatLiteralExprSyntax, _ expected: KernelType?) throws -> (
            String, KernelType
        ) {
            let text = literal.literal.text.filter { $0 != "_" }
            if text.hasPrefix("0x") {
                throw KernelDiagnostic(literal, "hexadecimal float literals are not allowed; write it in decimal")
            }
            let type: KernelType = expected == .float ? .float : .double
            if let expected, !expected.isFloating {
                throw KernelDiagnostic(
                    literal, "a floating-point literal where \(expected) is expected; convert explicitly")
            }
            return (type == .float ? "\(text)f" : text, type)
        }

        private mutating func binary(_ infix: InfixOperatorExprSyntax, expected: KernelType?) throws -> (
            String, KernelType
        ) {
            guard let op = infix.operator.as(BinaryOperatorExprSyntax.self)?.operator.text else {
                throw KernelDiagnostic(infix.operator, "assignment is a statement in a kernel, not an expression")
            }
            switch op {
            case "&&", "||":
                let (a, ta) = try expression(infix.leftOperand, expected: .bool)
                let (b, tb) = try expression(infix.rightOperand, expected: .bool)
                guard ta == .bool, tb == .bool else { throw KernelDiagnostic(infix, "\(op) takes Bool operands") }
                return ("(\(a) \(op) \(b))", .bool)
            case "==", "!=", "<", "<=", ">", ">=":
                let (a, b, type) = try pair(infix.leftOperand, infix.rightOperand)
                if type == .bool && !["==", "!="].contains(op) {
                    throw KernelDiagnostic(infix.operator, "Bool values compare with == and != only")
                }
                return ("(\(a) \(op) \(b))", .bool)
            case "<<", ">>":
                let (a, ta) = try expression(infix.leftOperand, expected: expected)
                let (b, tb) = try expression(infix.rightOperand, expected: ta)
                guard ta.isInteger, tb.isInteger else { throw KernelDiagnostic(infix, "shifts take integers") }
                return ("(\(a) \(op) \(b))", ta)
            case "+", "-", "*", "/", "%", "&", "|", "^", "&+", "&-", "&*":
                var a: String, b: String, type: KernelType
                if let expected, needsContext(infix.leftOperand), needsContext(infix.rightOperand) {
                    (a, type) = try expression(infix.leftOperand, expected: expected)
                    (b, _) = try expression(infix.rightOperand, expected: expected)
                } else {
                    (a, b, type) = try pair(infix.leftOperand, infix.rightOperand)
                }
                let c = op.hasPrefix("&") && op.count == 2 ? String(op.dropFirst()) : op
                if ["%", "&", "|", "^"].contains(c) || op.hasPrefix("&") && op.count == 2 {
                    guard type.isInteger else {
                        throw KernelDiagnostic(infix.operator, "'\(op)' takes integers, not \(type)")
                    }
                }
                guard type.isNumeric else {
                    throw KernelDiagnostic(infix.operator, "'\(op)' takes numbers, not \(type)")
                }
                return ("(\(a) \(c) \(b))", type)
            default:
                throw KernelDiagnostic(infix.operator, "operator '\(op)' is not part of the kernel subset")
            }
        }

        static let unaryMath: Set<String> = ["sqrt", "exp", "log", "sin", "cos", "tanh", "floor", "ceil"]
        static let builtinCalls: Set<String> = ["pow", "min", "max", "abs", "fma", "stride"]
        /// Swift functions that are never helpers: refused by name rather than taken for a `@GPUFunction`.
        static let refusedCalls: Set<String> = [
            "print", "debugPrint", "dump", "assert", "assertionFailure", "precondition", "preconditionFailure",
            "fatalError", "withUnsafePointer", "withUnsafeMutablePointer", "swap", "zip", "type", "readLine", "stride",
        ]

        private mutating func call(_ call: FunctionCallExprSyntax, expected: KernelType?) throws -> (String, KernelType)
        {
            if let closure = call.trailingClosure {
                throw KernelDiagnostic(closure, "closures are not allowed in a kernel")
            }
            let args = Array(call.arguments)
            if let label = args.first(where: { $0.label != nil })?.label, !isHelperCall(ExprSyntax(call)) {
                throw KernelDiagnostic(label, "kernel calls take unlabelled arguments")
            }
            if let (buffer, operation) = atomicTarget(call) {
                return try atomic(call, buffer: buffer, operation: operation)
            }
            // item.globalID(0) and the other work-item members.
            if let member = call.calledExpression.as(MemberAccessExprSyntax.self),
                member.base?.as(DeclReferenceExprSyntax.self)?.baseName.text == item
            {
                let macros = [
                    "globalID": "GB_GLOBAL_ID", "localID": "GB_LOCAL_ID", "groupID": "GB_GROUP_ID",
                    "localSize": "GB_LOCAL_SIZE", "groupCount": "GB_NUM_GROUPS", "globalSize": "GB_GLOBAL_SIZE",
                ]
                let name = member.declName.baseName.text
                guard let macro = macros[name] else {
                    throw KernelDiagnostic(
                        member.declName,
                        "WorkItem has globalID, localID, groupID, localSize, groupCount, globalSize and barrier() (a statement)"
                    )
                }
                guard args.count == 1, let d = args[0].expression.as(IntegerLiteralExprSyntax.self),
                    ["0", "1", "2"].contains(d.literal.text)
                else {
                    throw KernelDiagnostic(call.arguments, "the dimension is a literal 0, 1 or 2")
                }
                return ("\(macro)(\(d.literal.text))", .int32)
            }
            guard let name = call.calledExpression.as(DeclReferenceExprSyntax.self)?.baseName.text else {
                throw KernelDiagnostic(
                    call.calledExpression, "only conversions, math functions and work-item members can be called")
            }
            // Conversions: Float(x), Int32(x) ...
            if let target = KernelType.scalars[name], target != .bool {
                guard args.count == 1 else { throw KernelDiagnostic(call, "\(name)(...) converts one value") }
                let (code, type) = try expression(
                    args[0].expression, expected: isLiteral(args[0].expression) ? target : nil)
                guard type.isNumeric else {
                    throw KernelDiagnostic(args[0], "\(name)(...) converts numbers, not \(type)")
                }
                return ("((\(target.c))(\(code)))", target)
            }
            if Self.unaryMath.contains(name) {
                guard args.count == 1 else { throw KernelDiagnostic(call, "\(name) takes one value") }
                let (code, type) = try expression(
                    args[0].expression, expected: expected?.isFloating == true ? expected : .float)
                guard type.isFloating else {
                    throw KernelDiagnostic(args[0], "\(name) takes Float or Double, not \(type)")
                }
                return ("\(name)(\(code))", type)
            }
            switch name {
            case "pow", "min", "max":
                guard args.count == 2 else { throw KernelDiagnostic(call, "\(name) takes two values") }
                var (a, b, type) = try pair(args[0].expression, args[1].expression)
                if let expected, needsContext(args[0].expression), needsContext(args[1].expression) {
                    (a, type) = try expression(args[0].expression, expected: expected)
                    (b, _) = try expression(args[1].expression, expected: expected)
                }
                if name == "pow" {
                    guard type.isFloating else {
                        throw KernelDiagnostic(call, "pow takes Float or Double, not \(type)")
                    }
                    return ("pow(\(a), \(b))", type)
                }
                guard type.isNumeric else { throw KernelDiagnostic(call, "\(name) takes numbers, not \(type)") }
                if type.isFloating { return ("f\(name)(\(a), \(b))", type) }
                return ("((\(a)) \(name == "min" ? "<" : ">") (\(b)) ? (\(a)) : (\(b)))", type)
            case "abs":
                guard args.count == 1 else { throw KernelDiagnostic(call, "abs takes one value") }
                let (code, type) = try expression(args[0].expression, expected: expected)
                guard type.isNumeric, type != .uint32, type != .uint64 else {
                    throw KernelDiagnostic(call, "abs takes a signed number, not \(type)")
                }
                if type.isFloating { return ("fabs(\(code))", type) }
                return ("((\(code)) < 0 ? -(\(code)) : (\(code)))", type)
            case "fma":
                guard args.count == 3 else { throw KernelDiagnostic(call, "fma takes three values") }
                let (a, b, type) = try pair(args[0].expression, args[1].expression)
                let (c, tc) = try expression(args[2].expression, expected: type)
                guard type.isFloating, tc == type else {
                    throw KernelDiagnostic(call, "fma takes three values of one floating type")
                }
                return ("fma(\(a), \(b), \(c))", type)
            default:
                guard !Self.refusedCalls.contains(name) else {
                    throw KernelDiagnostic(
                        call.calledExpression,
                        "'\(name)' cannot be called in a kernel; allowed: numeric conversions, sqrt, exp, log, pow, sin, cos, tanh, abs, min, max, fma, floor, ceil, atomicAdd/Min/Max and @GPUFunction helpers"
                    )
                }
                return try helperCall(call, name: name, expected: expected)
            }
        }

        /// A call of a helper function (`@GPUFunction`): the helper's text comes with the kernel's, and Swift checks the
        /// argument and result types against its declaration; the result's type is the context's.
        private mutating func helperCall(_ call: FunctionCallExprSyntax, name: String, expected: KernelType?) throws
            -> (
                String, KernelType
            )
        {
            if name == function {
                throw KernelDiagnostic(call.calledExpression, "'\(name)' calls itself; kernels cannot recurse")
            }
            try Self.checkName(name, at: call.calledExpression)
            guard let expected else {
                throw KernelDiagnostic(
                    call,
                    "the result type of '\(name)(...)' is not known here; give it one (let v: Float = \(name)(...)), and mark \(name) @GPUFunction"
                )
            }
            var arguments: [String] = []
            for argument in call.arguments {
                arguments.append(try expression(argument.expression, expected: nil).0)
            }
            if !helpers.contains(name) { helpers.append(name) }
            return ("\(name)(\(arguments.joined(separator: ", ")))", expected)
        }

        /// `buffer.atomicAdd(i, v)`, `atomicMin`, `atomicMax` on a MutableDeviceArray of Int32, UInt32 or Float (or a
        /// SharedArray of Int32 or UInt32): the element's value before the operation.
        private mutating func atomic(_ call: FunctionCallExprSyntax, buffer: String, operation: String) throws -> (
            String, KernelType
        ) {
            guard case let .buffer(element, mutable)? = lookup(buffer), mutable else {
                throw KernelDiagnostic(
                    call.calledExpression, "\(operation) needs a MutableDeviceArray parameter or a SharedArray")
            }
            let shared = sharedArrays.contains(buffer)
            guard element == .int32 || element == .uint32 || (element == .float && !shared) else {
                throw KernelDiagnostic(
                    call.calledExpression,
                    shared
                        ? "\(operation) on a SharedArray works on elements of Int32 and UInt32, not \(element)"
                        : "\(operation) works on elements of Int32, UInt32 and Float, not \(element)"
                )
            }
            let args = Array(call.arguments)
            guard args.count == 2 else { throw KernelDiagnostic(call, "\(operation) takes an index and a value") }
            let (index, indexType) = try expression(args[0].expression, expected: .int32)
            guard indexType.isInteger else {
                throw KernelDiagnostic(args[0].expression, "an index must be an integer, not \(indexType)")
            }
            let (value, valueType) = try expression(args[1].expression, expected: element)
            guard valueType == element else {
                throw KernelDiagnostic(
                    args[1].expression,
                    "the value must be \(element), this is \(valueType); convert it with \(element)(...)")
            }
            let suffix = element == .int32 ? "INT" : element == .uint32 ? "UINT" : "FLOAT"
            let macro = "GB_ATOMIC_\(operation.dropFirst(6).uppercased())_\(suffix)"
            return ("\(macro)(&\(buffer)[\(index)], \(value))", element)
        }
    }
#endif
