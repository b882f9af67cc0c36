#if SwiftKernels
    import GPUBridgeKernelMacros
    import SwiftParser
    import SwiftSyntax
    import SwiftSyntaxMacroExpansion
    import SwiftSyntaxMacros
    import Testing

    /// Expands `@GPUKernel` on the first function of `source`; returns each diagnostic's message and the text of the
    /// node it points at, and how many declarations the expansion made.
    func expandKernel(_ source: String) throws -> (diagnostics: [(message: String, node: String)], peers: [String]) {
        let file = Parser.parse(source: source)
        let function = try #require(file.statements.first?.item.as(FunctionDeclSyntax.self))
        let attribute = try #require(function.attributes.first?.as(AttributeSyntax.self))
        let context = BasicMacroExpansionContext()
        let peers = try GPUKernelMacro.expansion(of: attribute, providingPeersOf: function, in: context)
        return (
            context.diagnostics.map { ($0.message, $0.node.trimmedDescription) }, peers.map(\.trimmedDescription)
        )
    }

    /// A kernel with `body` and the usual parameters (a read-only and a read-write buffer, a count).
    func kernelSource(_ body: String, signature: String? = nil) -> String {
        """
        @GPUKernel
        func k(\(signature ?? "_ item: WorkItem, x: DeviceArray<Float>, y: MutableDeviceArray<Float>, n: Int32")) {
            let i = item.globalID(0)
            \(body)
        }
        """
    }

    @Suite("@GPUKernel refuses what is outside the subset, at the exact syntax, saying what is allowed")
    struct GPUKernelDiagnosticsTests {
        struct Refusal: Sendable, CustomTestStringConvertible {
            var body: String
            var signature: String?
            /// Part of the message.
            var says: String
            /// The text of the node the error points at.
            var at: String
            var testDescription: String { "\(at): \(says)" }
        }

        static let refusals: [Refusal] = [
            Refusal(body: "let c = n + Int32(x.count)", says: "buffers have no count", at: "x.count"),
            Refusal(body: "print(i)", says: "'print' cannot be called in a kernel", at: "print"),
            Refusal(body: "for v in [1, 2] { y[i] = 1 }", says: "loop over a..<b", at: "[1, 2]"),
            Refusal(body: "x[i] = 1", says: "only a MutableDeviceArray parameter can be written", at: "x"),
            Refusal(body: "for k in 0..<4 where k > 1 { y[i] = 1 }", says: "'where' is not allowed", at: "where k > 1"),
            Refusal(
                body: "outer: for k in 0..<4 { for m in 0..<4 { break outer } }", says: "this statement is not allowed",
                at: "outer: for k in 0..<4 { for m in 0..<4 { break outer } }"),
            Refusal(
                body: "switch i { default: break }", says: "this statement is not allowed",
                at: "switch i { default: break }"),
            Refusal(
                body: "guard i < n else { return }", says: "this statement is not allowed",
                at: "guard i < n else { return }"),
            Refusal(body: "let int = 3", says: "reserved word", at: "int"),
            Refusal(
                body: "if let v = Optional(i) { y[i] = 1 }", says: "only Boolean conditions", at: "let v = Optional(i)"),
            Refusal(body: "y[i] = x[i] as Float", says: "not part of the kernel subset", at: "x[i] as Float"),
            Refusal(body: "let f = { 1 }", says: "not part of the kernel subset", at: "{ 1 }"),
            Refusal(body: "y[i] = 1.5 + Double(i)", says: "cannot be assigned to a Float", at: "1.5 + Double(i)"),
            Refusal(body: "y[i] = x[i] + Double(i)", says: "operands must have one type", at: "Double(i)"),
            Refusal(body: "i + 1", says: "a statement must be an assignment", at: "+"),
            Refusal(body: "sqrt(Float(i))", says: "a statement must be an assignment", at: "sqrt(Float(i))"),
            Refusal(body: "let g = item.subGroupID(0)", says: "WorkItem has globalID", at: "subGroupID"),
            Refusal(body: "let g = item.globalID(n)", says: "literal 0, 1 or 2", at: "n"),
            Refusal(body: "return 1", says: "a kernel returns nothing", at: "1"),
            Refusal(body: "var s: String = 1", says: "locals are Float", at: "String"),
            Refusal(
                body: "y[i] = 1", signature: "x: DeviceArray<Float>, y: MutableDeviceArray<Float>",
                says: "the first parameter of a kernel is its WorkItem",
                at: "(x: DeviceArray<Float>, y: MutableDeviceArray<Float>)"),
            Refusal(
                body: "y[i] = 1", signature: "_ item: WorkItem, y: MutableDeviceArray<Float>, on: Bool",
                says: "Bool parameters are not allowed",
                at: "(_ item: WorkItem, y: MutableDeviceArray<Float>, on: Bool)"),
            Refusal(
                body: "y[i] = 1", signature: "_ item: WorkItem, y: [Float]",
                says: "kernel parameters are DeviceArray<T>",
                at: "[Float]"),
            Refusal(
                body: "y[i] = 1", signature: "_ item: WorkItem, y: MutableDeviceArray<String>",
                says: "MutableDeviceArray holds Float", at: "MutableDeviceArray<String>"),
        ]

        @Test("each refused construct is one error at its node", arguments: refusals)
        func refused(_ refusal: Refusal) throws {
            let (diagnostics, peers) = try expandKernel(kernelSource(refusal.body, signature: refusal.signature))
            #expect(peers.isEmpty)
            #expect(diagnostics.count == 1)
            let first = try #require(diagnostics.first)
            #expect(first.message.contains(refusal.says), "\(first.message)")
            #expect(first.node == refusal.at)
        }

        @Test("a function that returns a value, throws, or is generic is refused at that part of its signature")
        func signatures() throws {
            let cases: [(String, String)] = [
                ("func k(_ item: WorkItem) -> Float { return 1 }", "-> Float"),
                ("func k(_ item: WorkItem) throws { }", "throws"),
                ("func k<T>(_ item: WorkItem, y: MutableDeviceArray<T>) { }", "<T>"),
            ]
            for (declaration, node) in cases {
                let (diagnostics, peers) = try expandKernel("@GPUKernel\n" + declaration)
                #expect(peers.isEmpty)
                #expect(diagnostics.map(\.node) == [node], "\(declaration)")
            }
        }

        @Test("a kernel inside the subset expands to one KernelDefinition and no diagnostics")
        func accepted() throws {
            let (diagnostics, peers) = try expandKernel(kernelSource("if i < n { y[i] = x[i] * 2 }"))
            #expect(diagnostics.isEmpty, "\(diagnostics)")
            #expect(peers.count == 1)
            let peer = try #require(peers.first)
            #expect(peer.hasPrefix("let kKernel = GPUBridge.KernelDefinition("))
            #expect(
                peer.contains(#"portableText: "GB_KERNEL k(GB_GLOBAL const float* x, GB_GLOBAL float* y, int n) {\n"#))
            #expect(peer.contains(#"y[i] = (x[i] * 2.0f);"#))
            #expect(peer.contains("try WorkItem.forEach(in: context) { item in k(item, x: a0, y: a1, n: a2) }"))
        }
    }
#endif
