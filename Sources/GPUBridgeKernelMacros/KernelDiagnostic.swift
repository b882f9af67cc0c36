#if SwiftKernels
    import SwiftDiagnostics
    import SwiftSyntax
    import SwiftSyntaxMacros

    /// A construct outside the kernel subset, at its syntax node, with what is allowed instead.
    struct KernelDiagnostic: DiagnosticMessage, Error {
        let message: String
        let node: Syntax

        init(_ node: some SyntaxProtocol, _ message: String) {
            self.node = Syntax(node)
            self.message = message
        }

        /// The same diagnostic at the node of `original` that spans the text `node` spans in `copy`, a rewritten copy
        /// of `original` with the same text (operator folding changes the tree, not the text). The compiler places
        /// a diagnostic only on nodes of the tree it gave the macro; a node of `copy` would be reported without a
        /// location. When no node spans exactly that text, the largest one starting there that fits inside it.
        func anchored(from copy: Syntax, to original: Syntax) -> KernelDiagnostic {
            guard node.root.id == copy.root.id else { return self }
            let offset = node.positionAfterSkippingLeadingTrivia.utf8Offset - copy.position.utf8Offset
            let start = original.position.utf8Offset + offset
            let length = node.trimmedLength.utf8Length
            guard let token = original.token(at: AbsolutePosition(utf8Offset: start)),
                token.positionAfterSkippingLeadingTrivia.utf8Offset == start
            else { return KernelDiagnostic(original, message) }
            var best = Syntax(token)
            var next = token.parent
            while let candidate = next, candidate.positionAfterSkippingLeadingTrivia.utf8Offset == start,
                candidate.trimmedLength.utf8Length <= length
            {
                best = candidate
                next = candidate.parent
            }
            return KernelDiagnostic(best, message)
        }

        /// The peer `expand` makes, or none with its refusal reported to `context` (both macros' expansion).
        static func reporting(
            in context: some MacroExpansionContext, _ expand: () throws -> DeclSyntax
        ) throws -> [DeclSyntax] {
            do {
                return [try expand()]
            } catch let diagnostic as KernelDiagnostic {
                context.diagnose(Diagnostic(node: diagnostic.node, message: diagnostic))
                return []
            }
        }

        var diagnosticID: MessageID { MessageID(domain: "GPUBridgeKernelMacros", id: "subset") }
        var severity: DiagnosticSeverity { .error }
    }
#endif
