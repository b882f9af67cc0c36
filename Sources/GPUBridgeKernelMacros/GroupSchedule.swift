#if SwiftKernels
    import SwiftSyntax

    /// The CPU backend's form of a kernel with barriers or shared arrays: the body split at its barriers into regions,
    /// each run for every work-item of a group before the next region starts (PoCL's "work-item loops").
    ///
    /// - Barriers may stand at the top level of the body or at the top level of a `for`/`while` loop that contains
    ///   them, where that loop runs alike in every work-item: its bounds or condition are *uniform*.
    /// - Uniform values: scalar parameters, literals, `item.localSize`, `groupID`, `groupCount`, `globalSize`, and
    ///   top-level locals computed only from those and assigned only at that level. Uniform statements run once per
    ///   group; the others run once per work-item, in their region's loop.
    /// - A local declared at the top level and used in a later region is kept per work-item (an array indexed by the
    ///   work-item); other locals stay plain locals of their region.
    /// - An `if` whose condition is uniform may hold barriers, and `return`, `break` or `continue` that leave it:
    ///   it runs at the group level (every work-item takes the same branch), as do those statements at the level of
    ///   barriers (the whole group returns, breaks or continues).
    /// - Refused (each at its syntax): a barrier inside an `if` or a loop that is not uniform; `return`, `break` or
    ///   `continue` under a condition that is not uniform (they would leave a region for some work-items only); an
    ///   inner local that reuses the name of a per-work-item one; a declaration that mixes uniform and per-work-item
    ///   values.
    ///
    /// One instance per kernel expansion; not shared. The input is the operator-folded body; diagnostics point at it.
    struct GroupSchedule {
        let item: String
        let parameters: [String: KernelType]
        let localTypes: [Int: KernelType]
        let sharedArrays: Set<String>

        private indirect enum Step {
            case barrier
            case group(String)
            case items([CodeBlockItemSyntax])
            case loop(header: String, body: [Step])
            /// A uniform `if`: every work-item of the group takes the same branch.
            case branch(condition: String, then: [Step], otherwise: [Step]?)
        }

        static let uniformMembers: Set<String> = [
            "localSize", "groupID", "groupCount", "globalSize", "contiguousItems",
        ]

        // MARK: Analysis

        /// Whether `node` holds an `item.barrier()` call.
        func containsBarrier(_ node: some SyntaxProtocol) -> Bool {
            for token in node.tokens(viewMode: .sourceAccurate) where token.text == "barrier" {
                if let member = token.parent?.parent?.as(MemberAccessExprSyntax.self),
                    member.base?.as(DeclReferenceExprSyntax.self)?.baseName.text == item,
                    member.parent?.is(FunctionCallExprSyntax.self) == true
                {
                    return true
                }
            }
            return false
        }

        /// The variable names `node` reads or writes (not member names, not called function names).
        static func names(in node: some SyntaxProtocol) -> [(name: String, node: DeclReferenceExprSyntax)] {
            let collector = NameCollector(viewMode: .sourceAccurate)
            collector.walk(node)
            return collector.found
        }

        static func isMemberOrCallee(_ node: DeclReferenceExprSyntax) -> Bool {
            if let member = node.parent?.as(MemberAccessExprSyntax.self), member.declName.id == node.id { return true }
            if let call = node.parent?.as(FunctionCallExprSyntax.self), call.calledExpression.id == node.id {
                return true
            }
            if node.parent?.is(GenericSpecializationExprSyntax.self) == true { return true }
            return false
        }

        /// Whether `expr` has one value across the work-items of a group, given the uniform locals `uniform`.
        func isUniform(_ expr: some SyntaxProtocol, _ uniform: Set<String>) -> Bool {
            for (name, node) in Self.names(in: expr) {
                if name == item {
                    guard let member = node.parent?.as(MemberAccessExprSyntax.self),
                        Self.uniformMembers.contains(member.declName.baseName.text)
                    else { return false }
                    continue
                }
                if let type = parameters[name] {
                    if case .buffer = type { return false }
                    continue
                }
                if !uniform.contains(name) { return false }
            }
            return true
        }

        /// A top-level (barrier-level) binding: a local declared, or assigned, where barriers may stand.
        private struct Binding {
            var name: String
            var value: ExprSyntax
        }

        /// The barrier-level statements: the body's, and those of loops that contain barriers.
        private func barrierLevel(_ items: CodeBlockItemListSyntax) -> [CodeBlockItemSyntax] {
            var out: [CodeBlockItemSyntax] = []
            for statement in items {
                out.append(statement)
                if let loop = Self.loopBody(statement), containsBarrier(statement) {
                    out += barrierLevel(loop.statements)
                }
                if let branch = Self.ifStatement(statement), needsGroupLevel(branch) {
                    for block in Self.blocks(of: branch) { out += barrierLevel(block.statements) }
                }
            }
            return out
        }

        /// `if` as a statement.
        static func ifStatement(_ statement: CodeBlockItemSyntax) -> IfExprSyntax? {
            if let branch = statement.item.as(IfExprSyntax.self) { return branch }
            return statement.item.as(ExpressionStmtSyntax.self)?.expression.as(IfExprSyntax.self)
        }

        /// The blocks of an `if`: its body, and those of its `else if` and `else`.
        static func blocks(of branch: IfExprSyntax) -> [CodeBlockSyntax] {
            switch branch.elseBody {
            case nil: return [branch.body]
            case let .codeBlock(block)?: return [branch.body, block]
            case let .ifExpr(next)?: return [branch.body] + blocks(of: next)
            }
        }

        /// Whether an `if` must run at the group level: it holds a barrier, or a `return`, `break` or `continue`
        /// that leaves it (one not inside a loop of its own). Its condition must then be uniform.
        func needsGroupLevel(_ branch: IfExprSyntax) -> Bool {
            containsBarrier(branch) || !Self.leavingJumps(Syntax(branch)).isEmpty
        }

        /// The `return`, `break` and `continue` statements in `node` that are not inside a loop within `node`.
        static func leavingJumps(_ node: Syntax) -> [Syntax] {
            final class Jumps: SyntaxVisitor {
                var found: [Syntax] = []
                override func visit(_ node: ReturnStmtSyntax) -> SyntaxVisitorContinueKind {
                    found.append(Syntax(node))
                    return .skipChildren
                }
                override func visit(_ node: BreakStmtSyntax) -> SyntaxVisitorContinueKind {
                    found.append(Syntax(node))
                    return .skipChildren
                }
                override func visit(_ node: ContinueStmtSyntax) -> SyntaxVisitorContinueKind {
                    found.append(Syntax(node))
                    return .skipChildren
                }
            }
            let jumps = Jumps(viewMode: .sourceAccurate)
            jumps.walk(node)
            let stop = node.id
            return jumps.found.filter { jump in
                if jump.is(ReturnStmtSyntax.self) { return true }
                var current = jump.parent
                while let ancestor = current, ancestor.id != stop {
                    if ancestor.is(ForStmtSyntax.self) || ancestor.is(WhileStmtSyntax.self) { return false }
                    current = ancestor.parent
                }
                return true
            }
        }

        static func loopBody(_ statement: CodeBlockItemSyntax) -> CodeBlockSyntax? {
            if let loop = statement.item.as(ForStmtSyntax.self) { return loop.body }
            if let loop = statement.item.as(WhileStmtSyntax.self) { return loop.body }
            return nil
        }

        /// `x = e` or `x op= e` as a statement: the name and the value.
        static func assignment(_ statement: CodeBlockItemSyntax) -> (String, ExprSyntax)? {
            guard let infix = statement.item.as(InfixOperatorExprSyntax.self),
                let target = infix.leftOperand.as(DeclReferenceExprSyntax.self)
            else { return nil }
            if infix.operator.is(AssignmentExprSyntax.self) { return (target.baseName.text, infix.rightOperand) }
            if let op = infix.operator.as(BinaryOperatorExprSyntax.self)?.operator.text, op.hasSuffix("="),
                !["==", "!=", "<=", ">="].contains(op)
            {
                return (target.baseName.text, infix.rightOperand)
            }
            return nil
        }

        /// The uniform locals: the largest set of barrier-level locals whose every value is uniform.
        func uniformLocals(_ body: CodeBlockSyntax) -> Set<String> {
            let level = barrierLevel(body.statements)
            let levelIDs = Set(level.map(\.id))
            var bindings: [Binding] = []
            var candidates: Set<String> = []
            for statement in level {
                if let decl = statement.item.as(VariableDeclSyntax.self) {
                    for binding in decl.bindings {
                        guard let name = binding.pattern.as(IdentifierPatternSyntax.self)?.identifier.text,
                            let value = binding.initializer?.value, !sharedArrays.contains(name)
                        else { continue }
                        candidates.insert(name)
                        bindings.append(Binding(name: name, value: value))
                    }
                } else if let (name, value) = Self.assignment(statement) {
                    bindings.append(Binding(name: name, value: value))
                } else if let loop = statement.item.as(ForStmtSyntax.self), containsBarrier(statement),
                    let name = loop.pattern.as(IdentifierPatternSyntax.self)?.identifier.text
                {
                    candidates.insert(name)
                    bindings.append(Binding(name: name, value: loop.sequence))
                }
            }
            // Assigned below the barrier level: never uniform.
            final class Assignments: SyntaxVisitor {
                var names: [(String, Syntax)] = []
                override func visit(_ node: InfixOperatorExprSyntax) -> SyntaxVisitorContinueKind {
                    if let target = node.leftOperand.as(DeclReferenceExprSyntax.self),
                        node.operator.is(AssignmentExprSyntax.self)
                            || (node.operator.as(BinaryOperatorExprSyntax.self).map {
                                $0.operator.text.hasSuffix("=") && !["==", "!=", "<=", ">="].contains($0.operator.text)
                            } ?? false)
                    {
                        names.append((target.baseName.text, Syntax(node)))
                    }
                    return .visitChildren
                }
            }
            let assignments = Assignments(viewMode: .sourceAccurate)
            assignments.walk(body)
            for (name, node) in assignments.names {
                let statement = node.parent?.as(CodeBlockItemSyntax.self)
                if statement == nil || !levelIDs.contains(statement!.id) { candidates.remove(name) }
            }
            var uniform = candidates
            var changed = true
            while changed {
                changed = false
                for binding in bindings where uniform.contains(binding.name) && !isUniform(binding.value, uniform) {
                    uniform.remove(binding.name)
                    changed = true
                }
            }
            return uniform
        }

        // MARK: Steps

        private func steps(_ items: CodeBlockItemListSyntax, _ uniform: Set<String>) throws -> [Step] {
            var steps: [Step] = []
            var run: [CodeBlockItemSyntax] = []
            func flush() {
                if !run.isEmpty { steps.append(.items(run)) }
                run = []
            }
            for statement in items {
                if let call = statement.item.as(FunctionCallExprSyntax.self), containsBarrier(call),
                    call.calledExpression.as(MemberAccessExprSyntax.self)?.declName.baseName.text == "barrier"
                {
                    flush()
                    steps.append(.barrier)
                    continue
                }
                if let decl = statement.item.as(VariableDeclSyntax.self) {
                    let names = decl.bindings.compactMap {
                        $0.pattern.as(IdentifierPatternSyntax.self)?.identifier.text
                    }
                    let groupLevel = names.map { uniform.contains($0) || sharedArrays.contains($0) }
                    if groupLevel.allSatisfy({ $0 }) {
                        flush()
                        steps.append(.group(statement.trimmedDescription))
                        continue
                    }
                    if groupLevel.contains(true) {
                        throw KernelDiagnostic(
                            decl,
                            "this declaration mixes values that are the same in every work-item with ones that are not; declare them in separate statements"
                        )
                    }
                    run.append(statement)
                    continue
                }
                if let (name, _) = Self.assignment(statement), uniform.contains(name) {
                    flush()
                    steps.append(.group(statement.trimmedDescription))
                    continue
                }
                if statement.item.is(ReturnStmtSyntax.self) || statement.item.is(BreakStmtSyntax.self)
                    || statement.item.is(ContinueStmtSyntax.self)
                {
                    // At the group level every work-item is here: the whole group returns, breaks or continues.
                    flush()
                    steps.append(.group(statement.trimmedDescription))
                    continue
                }
                if let branch = Self.ifStatement(statement), needsGroupLevel(branch),
                    isUniform(branch.conditions, uniform)
                {
                    flush()
                    steps.append(try self.branch(branch, uniform))
                    continue
                }
                if containsBarrier(statement) {
                    flush()
                    steps.append(try loop(statement, uniform))
                    continue
                }
                try checkRegionStatement(statement)
                run.append(statement)
            }
            flush()
            return steps
        }

        /// A uniform `if` (its condition checked by the caller) and its `else if` chain.
        private func branch(_ branch: IfExprSyntax, _ uniform: Set<String>) throws -> Step {
            let then = try steps(branch.body.statements, uniform)
            switch branch.elseBody {
            case nil:
                return .branch(condition: branch.conditions.trimmedDescription, then: then, otherwise: nil)
            case let .codeBlock(block)?:
                return .branch(
                    condition: branch.conditions.trimmedDescription, then: then,
                    otherwise: try steps(block.statements, uniform))
            case let .ifExpr(next)?:
                guard isUniform(next.conditions, uniform) else {
                    throw KernelDiagnostic(
                        next.conditions,
                        "this 'else if' holds a barrier or leaves the kernel, so its condition must be the same in every work-item: use parameters, literals, \(item).localSize/groupID/groupCount/globalSize and top-level locals computed from them"
                    )
                }
                return .branch(
                    condition: branch.conditions.trimmedDescription, then: then,
                    otherwise: [try self.branch(next, uniform)])
            }
        }

        private func loop(_ statement: CodeBlockItemSyntax, _ uniform: Set<String>) throws -> Step {
            let rule =
                "a loop with a barrier must run the same iterations in every work-item: its bounds may use only parameters, literals, \(item).localSize/groupID/groupCount/globalSize and top-level locals computed from them"
            if let loop = statement.item.as(ForStmtSyntax.self) {
                guard isUniform(loop.sequence, uniform) else { throw KernelDiagnostic(loop.sequence, rule) }
                let header =
                    "for \(loop.pattern.trimmedDescription)\(loop.typeAnnotation?.trimmedDescription ?? "") in \(loop.sequence.trimmedDescription)"
                return .loop(header: header, body: try steps(loop.body.statements, uniform))
            }
            if let loop = statement.item.as(WhileStmtSyntax.self) {
                guard isUniform(loop.conditions, uniform) else { throw KernelDiagnostic(loop.conditions, rule) }
                return .loop(
                    header: "while \(loop.conditions.trimmedDescription)",
                    body: try steps(loop.body.statements, uniform))
            }
            throw KernelDiagnostic(
                statement,
                "a barrier may stand only at the top level of the kernel, of a loop every work-item runs alike, or of an if whose condition is the same in every work-item (parameters, literals, \(item).localSize/groupID/groupCount/globalSize); move it out so every work-item reaches it"
            )
        }

        /// A statement run once per work-item in a region loop: no `return`, no `break`/`continue` out of it.
        private func checkRegionStatement(_ statement: CodeBlockItemSyntax) throws {
            for jump in Self.leavingJumps(Syntax(statement)) {
                if jump.is(ReturnStmtSyntax.self) {
                    throw KernelDiagnostic(
                        jump,
                        "'return' in a kernel with barriers, under a condition that differs between work-items: every work-item must reach each barrier; skip the work with if instead (a return under a condition the same in every work-item is allowed)"
                    )
                }
                throw KernelDiagnostic(
                    jump,
                    "'\(jump.firstToken(viewMode: .sourceAccurate)?.text ?? "")' would leave a loop that holds a barrier; every work-item must run its iterations alike"
                )
            }
        }

        // MARK: Regions and per-work-item locals

        /// The regions (runs of per-work-item statements) in order.
        private static func regions(_ steps: [Step]) -> [[CodeBlockItemSyntax]] {
            var out: [[CodeBlockItemSyntax]] = []
            for step in steps {
                switch step {
                case let .items(run): out.append(run)
                case let .loop(_, body): out += regions(body)
                case let .branch(_, then, otherwise): out += regions(then) + regions(otherwise ?? [])
                case .barrier, .group: break
                }
            }
            return out
        }

        /// The barrier-level per-work-item locals used in more than one region: kept per work-item.
        private func carried(_ regions: [[CodeBlockItemSyntax]]) -> [String: KernelType] {
            var declaredIn: [String: (region: Int, type: KernelType)] = [:]
            for (index, region) in regions.enumerated() {
                for statement in region {
                    guard let decl = statement.item.as(VariableDeclSyntax.self) else { continue }
                    for binding in decl.bindings {
                        guard let pattern = binding.pattern.as(IdentifierPatternSyntax.self),
                            let type = localTypes[pattern.positionAfterSkippingLeadingTrivia.utf8Offset]
                        else { continue }
                        declaredIn[pattern.identifier.text] = (index, type)
                    }
                }
            }
            var carried: [String: KernelType] = [:]
            for (index, region) in regions.enumerated() {
                for statement in region {
                    for (name, _) in Self.names(in: statement) {
                        if let declared = declaredIn[name], declared.region != index { carried[name] = declared.type }
                    }
                }
            }
            return carried
        }

        /// Rewrites a region's statement: carried locals become `gb_name[gb_w]`; their top-level declarations become
        /// assignments. Inner declarations may not reuse a carried name.
        private func rewrite(_ statement: CodeBlockItemSyntax, carried: [String: KernelType]) throws -> String {
            final class Rewriter: SyntaxRewriter {
                let carried: [String: KernelType]
                init(carried: [String: KernelType]) {
                    self.carried = carried
                    super.init(viewMode: .sourceAccurate)
                }
                override func visit(_ node: DeclReferenceExprSyntax) -> ExprSyntax {
                    guard carried[node.baseName.text] != nil, !GroupSchedule.isMemberOrCallee(node) else {
                        return ExprSyntax(node)
                    }
                    return ExprSyntax("gb_\(raw: node.baseName.text)[gb_w]").with(\.leadingTrivia, node.leadingTrivia)
                        .with(\.trailingTrivia, node.trailingTrivia)
                }
            }
            final class Declarations: SyntaxVisitor {
                var names: [IdentifierPatternSyntax] = []
                override func visit(_ node: IdentifierPatternSyntax) -> SyntaxVisitorContinueKind {
                    names.append(node)
                    return .skipChildren
                }
            }
            let rewriter = Rewriter(carried: carried)
            if let decl = statement.item.as(VariableDeclSyntax.self),
                decl.bindings.contains(where: {
                    carried[$0.pattern.as(IdentifierPatternSyntax.self)?.identifier.text ?? ""] != nil
                })
            {
                var lines: [String] = []
                for binding in decl.bindings {
                    guard let name = binding.pattern.as(IdentifierPatternSyntax.self)?.identifier.text,
                        let value = binding.initializer?.value
                    else { continue }
                    let rewritten = rewriter.rewrite(value).trimmedDescription
                    if carried[name] != nil {
                        lines.append("gb_\(name)[gb_w] = \(rewritten)")
                    } else {
                        throw KernelDiagnostic(
                            decl, "declare '\(name)' in a statement of its own (it is not kept across barriers)")
                    }
                }
                return lines.joined(separator: "\n")
            }
            let declarations = Declarations(viewMode: .sourceAccurate)
            declarations.walk(statement)
            if let shadow = declarations.names.first(where: { carried[$0.identifier.text] != nil }) {
                throw KernelDiagnostic(
                    shadow,
                    "'\(shadow.identifier.text)' is kept per work-item across a barrier; give this inner local another name"
                )
            }
            return rewriter.rewrite(statement).trimmedDescription
        }

        // MARK: Emission

        /// The statements of the CPU closure (`gb_context` is the `CPUKernelContext`), after the parameters are read.
        func emit(_ body: CodeBlockSyntax) throws -> (lines: [String], carried: [String: KernelType], uses: Set<String>)
        {
            let uniform = uniformLocals(body)
            let steps = try steps(body.statements, uniform)
            let carried = carried(Self.regions(steps))
            var lines: [String] = []
            var groupText: [String] = []
            func emit(_ steps: [Step], indent: String) throws {
                for step in steps {
                    switch step {
                    case .barrier:
                        lines.append("\(indent)// \(item).barrier()")
                    case let .group(text):
                        groupText.append(text)
                        lines.append(indent + text)
                    case let .items(run):
                        var body: [String] = []
                        for statement in run { body.append(try rewrite(statement, carried: carried)) }
                        let text = body.joined(separator: "\n")
                        let usesItem = Self.mentions(text, item)
                        let index = usesItem || text.contains("gb_w") ? "gb_w" : "_"
                        lines.append("\(indent)for \(index) in gb_items.indices {")
                        if usesItem { lines.append("\(indent)    let \(item) = gb_items[gb_w]") }
                        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
                            lines.append("\(indent)    \(line)")
                        }
                        lines.append("\(indent)}")
                    case let .loop(header, body):
                        groupText.append(header)
                        lines.append("\(indent)\(header) {")
                        try emit(body, indent: indent + "    ")
                        lines.append("\(indent)}")
                    case let .branch(condition, then, otherwise):
                        groupText.append(condition)
                        lines.append("\(indent)if \(condition) {")
                        try emit(then, indent: indent + "    ")
                        if let otherwise {
                            lines.append("\(indent)} else {")
                            try emit(otherwise, indent: indent + "    ")
                        }
                        lines.append("\(indent)}")
                    }
                }
            }
            try emit(steps, indent: "")
            if groupText.contains(where: { Self.mentions($0, item) }) {
                lines.insert("let \(item) = gb_items[0]", at: 0)
            }
            let uses = Set(Self.names(in: body).map(\.name))
            return (lines, carried, uses)
        }

        /// Whether `text` has `name` as a whole identifier that is not a member name.
        static func mentions(_ text: String, _ name: String) -> Bool {
            var word = ""
            var afterDot = false
            var previous: Character = " "
            for character in text + " " {
                if character.isLetter || character.isNumber || character == "_" {
                    if word.isEmpty { afterDot = previous == "." }
                    word.append(character)
                } else {
                    if word == name && !afterDot { return true }
                    word = ""
                }
                previous = character
            }
            return false
        }
    }

    /// The variable names a subtree reads or writes (see `GroupSchedule.names(in:)`).
    final class NameCollector: SyntaxVisitor {
        var found: [(String, DeclReferenceExprSyntax)] = []
        override func visit(_ node: DeclReferenceExprSyntax) -> SyntaxVisitorContinueKind {
            if !GroupSchedule.isMemberOrCallee(node) { found.append((node.baseName.text, node)) }
            return .skipChildren
        }
    }
#endif
