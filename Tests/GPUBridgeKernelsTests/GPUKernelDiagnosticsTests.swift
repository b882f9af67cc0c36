#if SwiftKernels
    import GPUBridge
    import GPUBridgeKernels
    import Testing

    @Suite("@GPUKernel refuses what is outside the subset, at the exact syntax, saying what is allowed")
    struct GPUKernelDiagnosticsTests {
        struct Refusal: Sendable, CustomTestStringConvertible {
            var body: String
            var signature: String?
            /// Part of the message.
            var says: String
            /// The text of the node the error points at.
            var at: String
            /// The macro: GPUKernel, or GPUFunction for helper functions.
            var attribute = "GPUKernel"
            /// Which occurrence of `at` in the line the error points at.
            var occurrence = 1
            var testDescription: String { "\(at): \(says)" }

            /// The whole declaration, named `name`.
            func declaration(_ name: String) -> String {
                if let whole = signature, whole.hasPrefix("func ") {
                    return "@\(attribute)\n"
                        + whole.replacingOccurrences(of: "func k", with: "func \(name)").replacingOccurrences(
                            of: " k(x)", with: " \(name)(x)")
                        + "\n\n\n\n"
                }
                return """
                    @GPUKernel
                    func \(name)(\(signature ?? "_ item: WorkItem, x: DeviceArray<Float>, y: MutableDeviceArray<Float>, n: Int32")) {
                        let i = item.globalID(0)
                        \(body)
                    }

                    """
            }
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
            Refusal(
                body: "", signature: "func k(_ item: WorkItem) -> Float { return 1 }", says: "a kernel returns nothing",
                at: "-> Float"),
            Refusal(body: "", signature: "func k(_ item: WorkItem) throws { }", says: "neither throws", at: "throws"),
            Refusal(
                body: "", signature: "func k<T>(_ item: WorkItem, y: MutableDeviceArray<T>) { }", says: "not generic",
                at: "<T>"),
            Refusal(body: "x.atomicAdd(i, 1)", says: "atomicAdd needs a MutableDeviceArray", at: "x.atomicAdd"),
            Refusal(
                body: "y.atomicMax(i, 1)", signature: "_ item: WorkItem, y: MutableDeviceArray<Double>",
                says: "atomicMax works on elements of Int32, UInt32 and Float, not Double", at: "y.atomicMax"),
            Refusal(
                body: "let t = SharedArray<Float>(count: 4); t.atomicAdd(0, 1)",
                says: "atomicAdd on a SharedArray works on elements of Int32 and UInt32, not Float",
                at: "t.atomicAdd"),
            Refusal(
                body: "let v = notMarked(x[i])", says: "the result type of 'notMarked(...)'", at: "notMarked(x[i])"),
            Refusal(
                body: "", signature: "func k(_ x: Float) -> Float { return k(x) }", says: "calls itself", at: "k(x)",
                attribute: "GPUFunction"),
            Refusal(
                body: "", signature: "func k(_ x: Float) { }", says: "a helper function returns a value",
                at: "(_ x: Float)", attribute: "GPUFunction"),
            Refusal(
                body: "", signature: "func k(_ x: DeviceArray<Float>) -> Float { return 0 }",
                says: "helper functions take scalars", at: "(_ x: DeviceArray<Float>)", attribute: "GPUFunction"),
            Refusal(
                body: "", signature: "func k(_ x: Float) -> Float { return Double(x) }",
                says: "cannot be returned as Float",
                at: "Double(x)", attribute: "GPUFunction"),
            Refusal(
                body: "if i < n { item.barrier() }", says: "a barrier may stand only at the top level",
                at: "if i < n { item.barrier() }"),
            Refusal(
                body: "for k in 0..<i { item.barrier() }", says: "a loop with a barrier must run the same iterations",
                at: "0..<i"),
            Refusal(
                body: "item.barrier(); if i >= n { return }", says: "'return' in a kernel with barriers", at: "return"),
            Refusal(
                body: "let a = n, b = i; item.barrier(); y[b] = Float(a)", says: "mixes values",
                at: "let a = n, b = i"),
            Refusal(
                body: "let w = i; item.barrier(); if w > 0 { let w: Int32 = 2; y[w] = 1 }",
                says: "'w' is kept per work-item across a barrier", at: "w", occurrence: 3),
            Refusal(
                body: "if i < n { let t = SharedArray<Float>(count: 4); t[0] = 1 }",
                says: "declare a SharedArray at the top level", at: "SharedArray<Float>(count: 4)"),
            Refusal(
                body: "let t = SharedArray<Float>(count: Int(n)); t[0] = 1", says: "size is an integer literal",
                at: "count: Int(n)"),
            Refusal(
                body: "let t = SharedArray<Double>(count: 7000); t[0] = 1", says: "the limit is 49152",
                at: "SharedArray<Double>(count: 7000)"),
            Refusal(body: "let b = item.barrier()", says: "barrier() (a statement)", at: "barrier"),
            Refusal(
                body: "if n > 2 { item.barrier() } else if i > 2 { item.barrier() }",
                says: "this 'else if' holds a barrier or leaves the kernel", at: "i > 2"),
            Refusal(
                body: "for k in 0..<n { item.barrier(); if k == i { break } }", says: "would leave a loop",
                at: "break"),
            Refusal(body: "y[i] = Float.pi", says: "is not available in a kernel", at: "Float.pi"),
            Refusal(body: "let v: Int32 = .infinity", says: "infinity is Float.infinity", at: ".infinity"),
        ]

        /// Every refusal as a function `k0`, `k1` ... of one file (5 lines each, after 4 lines of imports), and what
        /// swiftc says of it.
        static let source =
            "import GPUBridgeKernels\n\n\n\n" + refusals.indices.map { refusals[$0].declaration("k\($0)") }.joined()
        static let compiled = Result { try KernelTypeChecker.check(source) }

        /// Where the error for refusal `index` must be: the first occurrence of its node's text in its body line, or
        /// else in its signature line.
        static func expectedPosition(_ index: Int) throws -> (line: Int, column: Int) {
            let lines = source.split(separator: "\n", omittingEmptySubsequences: false)
            let first = 5 + 5 * index  // the @GPUKernel line
            for line in [first + 3, first + 1] {
                let at = refusals[index].at.replacingOccurrences(of: "k(x)", with: "k\(index)(x)")
                var text = lines[line - 1][...]
                var found: Range<Substring.Index>?
                for _ in 0..<refusals[index].occurrence {
                    found = text.range(of: at)
                    guard let range = found else { break }
                    text = text[range.upperBound...]
                }
                if let range = found {
                    return (line, lines[line - 1].distance(from: lines[line - 1].startIndex, to: range.lowerBound) + 1)
                }
            }
            throw KernelTypeChecker.TypeCheckError(reason: "'\(refusals[index].at)' is not in k\(index)")
        }

        @Test("each refused construct is one compiler error at its node", arguments: refusals.indices)
        func refused(_ index: Int) throws {
            let result = try Self.compiled.get()
            let refusal = Self.refusals[index]
            let first = 5 + 5 * index
            let mine = result.diagnostics.filter {
                (first..<first + 5).contains($0.line)
                    && ($0.message.hasSuffix("(from macro 'GPUKernel')")
                        || $0.message.hasSuffix("(from macro 'GPUFunction')"))
            }
            #expect(mine.count == 1, "k\(index) \(refusal.at): \(mine)")
            let diagnostic = try #require(mine.first)
            let (line, column) = try Self.expectedPosition(index)
            #expect(diagnostic.severity == "error")
            #expect(diagnostic.message.contains(refusal.says), "\(diagnostic.message)")
            #expect(
                (diagnostic.line, diagnostic.column) == (line, column),
                "k\(index): at \(diagnostic.line):\(diagnostic.column), expected \(line):\(column) ('\(refusal.at)')")
        }

        @Test("the compiler can place every diagnostic of the macro (none is reported without a location)")
        func everyDiagnosticIsPlaced() throws {
            let result = try Self.compiled.get()
            #expect(result.status != 0)
            #expect(!result.diagnostics.isEmpty)
            #expect(result.diagnostics.filter { $0.line == 0 }.isEmpty, "\(result.output)")
        }

        @Test("a kernel inside the subset type-checks with only GPUBridgeKernels imported, and its peer is usable")
        func accepted() throws {
            let result = try KernelTypeChecker.check(
                """
                import GPUBridgeKernels

                @GPUKernel
                func k(_ item: WorkItem, x: DeviceArray<Float>, y: MutableDeviceArray<Float>, n: Int32) {
                    let i = item.globalID(0)
                    if i < n { y[i] = x[i] * 2 }
                }

                func use(_ device: Device) throws -> KernelSource {
                    try kKernel.source(for: device.id.backend)
                }
                """)
            #expect(result.status == 0, "\(result.output)")
            #expect(result.diagnostics.isEmpty, "\(result.output)")
        }

        @Test("the peer holds the portable text, the declared parameters and the entry point")
        func peer() throws {
            #expect(
                doubled2Kernel.portable?.text == """
                    GB_KERNEL doubled2(GB_GLOBAL const float* x, GB_GLOBAL float* y, int n) {
                        const int i = GB_GLOBAL_ID(0);
                        if ((i < n)) {
                            y[i] = (x[i] * 2.0f);
                        }
                    }

                    """)
            #expect(doubled2Kernel.portable?.entryPoint == "doubled2")
            #expect(doubled2Kernel.parameters.count == 3)
        }
    }

    @GPUKernel
    func doubled2(_ item: WorkItem, x: DeviceArray<Float>, y: MutableDeviceArray<Float>, n: Int32) {
        let i = item.globalID(0)
        if i < n { y[i] = x[i] * 2 }
    }
#endif
