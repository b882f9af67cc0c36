#if SwiftKernels
    import SwiftDiagnostics
    import SwiftSyntax

    /// A construct outside the kernel subset, at its syntax node, with what is allowed instead.
    struct KernelDiagnostic: DiagnosticMessage, Error {
        let message: String
        let node: Syntax

        init(_ node: some SyntaxProtocol, _ message: String) {
            self.node = Syntax(node)
            self.message = message
        }

        var diagnosticID: MessageID { MessageID(domain: "GPUBridgeKernelMacros", id: "subset") }
        var severity: DiagnosticSeverity { .error }
    }
#endif
