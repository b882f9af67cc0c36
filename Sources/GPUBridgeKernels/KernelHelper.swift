/// The portable text of one helper function (`@GPUFunction`) and the helpers it calls. Kernels that call it put its
/// text, and its helpers' texts, before their own (`program(_:using:)`).
///
/// A value made once per helper by its macro expansion (a global or static `let`); any thread. Costs its text.
public struct KernelHelper: Sendable {
    /// The function's name, as kernels call it.
    public let name: String
    /// `GB_DEVICE <type> name(...) { ... }`.
    public let text: String
    /// The helpers its body calls.
    public let uses: [KernelHelper]

    public init(name: String, text: String, uses: [KernelHelper]) {
        self.name = name
        self.text = text
        self.uses = uses
    }

    /// `kernel` preceded by the texts of `helpers` and of every helper they call, each once, callees first.
    public static func program(_ kernel: String, using helpers: [KernelHelper]) -> String {
        var seen: Set<String> = []
        var texts: [String] = []
        func visit(_ helper: KernelHelper) {
            guard seen.insert(helper.name).inserted else { return }
            for callee in helper.uses { visit(callee) }
            texts.append(helper.text)
        }
        for helper in helpers { visit(helper) }
        return (texts + [kernel]).joined(separator: "\n")
    }
}
