#if SwiftKernels
    import SwiftSyntax

    /// Finds the scalar parameter that bounds a kernel's work along dimension 0: the body does nothing for a
    /// work-item whose `globalID(0)` is at or past it. The CPU loop then stops there (`WorkItem.forEach(in:limit:)`),
    /// which lets the compiler drop the body's own test and vectorise the loop.
    ///
    /// The body qualifies when its top-level statements are, in order:
    /// - any number of `let x = item.globalID(0)` (with or without `: Int32`), then
    /// - either `if C { ... }` with no `else` as the last statement, where `C` holds `g < n` (or `n > g`) alone or as
    ///   an operand of `&&`,
    /// - or `if C { return }` with no `else`, where `C` holds `g >= n` (or `n <= g`) alone or as an operand of `||`;
    ///   anything may follow it.
    ///
    /// Here `g` is `item.globalID(0)` or one of those `x`, and `n` is an Int32 parameter (the translator already
    /// requires both sides of `<` to have one type). Anything else, and the loop runs every work-item. Used by
    /// `GPUKernelMacro` at expansion time; a pure function of the syntax.
    enum BoundsGuard {
        static func limit(of body: CodeBlockSyntax, item: String, parameters: [String: KernelType]) -> String? {
            var aliases: Set<String> = []
            let statements = Array(body.statements)
            for (index, statement) in statements.enumerated() {
                if let decl = statement.item.as(VariableDeclSyntax.self) {
                    guard decl.bindingSpecifier.tokenKind == .keyword(.let), decl.bindings.count == 1,
                        let binding = decl.bindings.first,
                        let name = binding.pattern.as(IdentifierPatternSyntax.self)?.identifier.text,
                        binding.typeAnnotation.map({ $0.type.trimmedDescription == "Int32" }) ?? true,
                        let value = binding.initializer?.value, isGlobalID0(value, item: item, aliases: aliases),
                        parameters[name] == nil
                    else { return nil }
                    aliases.insert(name)
                    continue
                }
                guard let branch = ifStatement(statement.item), branch.elseBody == nil,
                    branch.conditions.count == 1,
                    case let .expression(condition) = branch.conditions.first?.condition
                else { return nil }
                let index0 = { (expr: ExprSyntax) in isGlobalID0(expr, item: item, aliases: aliases) }
                let bound = { (expr: ExprSyntax) -> String? in
                    guard let name = unwrap(expr).as(DeclReferenceExprSyntax.self)?.baseName.text,
                        !aliases.contains(name), parameters[name] == .int32
                    else { return nil }
                    return name
                }
                if isReturnOnly(branch.body) {
                    // `if g >= n { return }`: every work-item past n returns before doing anything.
                    for term in operands(of: condition, joinedBy: "||") {
                        if let name = compare(term, "<=", ">=", index0: index0, bound: bound) { return name }
                    }
                    return nil
                }
                // `if g < n { ... }` as the whole rest of the body.
                guard index == statements.count - 1 else { return nil }
                for term in operands(of: condition, joinedBy: "&&") {
                    if let name = compare(term, ">", "<", index0: index0, bound: bound) { return name }
                }
                return nil
            }
            return nil
        }

        /// `bound` of the side opposite the index when `expr` is `index <op> bound` or `bound <mirrored> index`.
        static func compare(
            _ expr: ExprSyntax, _ boundFirst: String, _ indexFirst: String, index0: (ExprSyntax) -> Bool,
            bound: (ExprSyntax) -> String?
        ) -> String? {
            guard let infix = unwrap(expr).as(InfixOperatorExprSyntax.self),
                let op = infix.operator.as(BinaryOperatorExprSyntax.self)?.operator.text
            else { return nil }
            if op == indexFirst, index0(infix.leftOperand) { return bound(infix.rightOperand) }
            if op == boundFirst, index0(infix.rightOperand) { return bound(infix.leftOperand) }
            return nil
        }

        /// The operands of a chain of `op` (`a && b && c` gives a, b, c); the expression itself otherwise.
        static func operands(of expr: ExprSyntax, joinedBy op: String) -> [ExprSyntax] {
            let expr = unwrap(expr)
            guard let infix = expr.as(InfixOperatorExprSyntax.self),
                infix.operator.as(BinaryOperatorExprSyntax.self)?.operator.text == op
            else { return [expr] }
            return operands(of: infix.leftOperand, joinedBy: op) + operands(of: infix.rightOperand, joinedBy: op)
        }

        /// `(e)` as `e`.
        static func unwrap(_ expr: ExprSyntax) -> ExprSyntax {
            if let tuple = expr.as(TupleExprSyntax.self), tuple.elements.count == 1, let only = tuple.elements.first,
                only.label == nil
            {
                return unwrap(only.expression)
            }
            return expr
        }

        static func isGlobalID0(_ expr: ExprSyntax, item: String, aliases: Set<String> = []) -> Bool {
            let expr = unwrap(expr)
            if let name = expr.as(DeclReferenceExprSyntax.self)?.baseName.text { return aliases.contains(name) }
            guard let call = expr.as(FunctionCallExprSyntax.self),
                let member = call.calledExpression.as(MemberAccessExprSyntax.self),
                member.base?.as(DeclReferenceExprSyntax.self)?.baseName.text == item,
                member.declName.baseName.text == "globalID", call.arguments.count == 1,
                call.arguments.first?.label == nil,
                call.arguments.first?.expression.as(IntegerLiteralExprSyntax.self)?.literal.text == "0"
            else { return false }
            return true
        }

        static func ifStatement(_ item: CodeBlockItemSyntax.Item) -> IfExprSyntax? {
            switch item {
            case let .expr(expr): return expr.as(IfExprSyntax.self)
            case let .stmt(stmt): return stmt.as(ExpressionStmtSyntax.self)?.expression.as(IfExprSyntax.self)
            case .decl: return nil
            }
        }

        static func isReturnOnly(_ block: CodeBlockSyntax) -> Bool {
            guard block.statements.count == 1, let only = block.statements.first,
                case let .stmt(stmt) = only.item, let jump = stmt.as(ReturnStmtSyntax.self)
            else { return false }
            return jump.expression == nil
        }
    }
#endif
