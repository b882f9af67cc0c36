/// Which buffer parameters a kernel may write: a buffer declared `.readOnly` is not written, nor is a pointer
/// parameter of the entry point whose pointee is `const` in the portable text (`GB_GLOBAL const float* x`); every
/// other buffer may be written. Where the text's parameter list cannot be matched one to one with the declared
/// parameters, only the declaration counts. Internal to `KernelValidator`; a pure function (any thread), one scan of
/// the text.
enum WritableParameters {
    /// For each declared parameter: true when it is a buffer the kernel may write.
    static func of(_ definition: KernelDefinition) -> [Bool] {
        let buffers = definition.parameters.map { $0.access == .readWrite }
        guard let portable = definition.portable, let declared = parameterList(portable.text, portable.entryPoint),
            declared.count == buffers.count
        else { return buffers }
        return zip(buffers, declared).map { isBuffer, text in isBuffer && !pointsToConst(text) }
    }

    /// The entry point's parameters as written (split at top-level commas), or nil when it is not found.
    static func parameterList(_ text: String, _ entryPoint: String) -> [String]? {
        let chars = Array(text)
        let name = Array(entryPoint)
        guard !name.isEmpty else { return nil }
        func isIdentifier(_ c: Character) -> Bool { c.isLetter || c.isNumber || c == "_" }
        var i = 0
        while i + name.count <= chars.count {
            defer { i += 1 }
            guard Array(chars[i..<i + name.count]) == name, i == 0 || !isIdentifier(chars[i - 1]) else { continue }
            var j = i + name.count
            while j < chars.count, chars[j].isWhitespace { j += 1 }
            guard j < chars.count, chars[j] == "(" else { continue }
            var depth = 0
            var current = ""
            var parameters: [String] = []
            for c in chars[(j + 1)...] {
                switch c {
                case "(": depth += 1
                case ")" where depth == 0:
                    let last = current.trimmingWhitespace()
                    if !last.isEmpty || !parameters.isEmpty { parameters.append(last) }
                    return parameters
                case ")": depth -= 1
                case "," where depth == 0:
                    parameters.append(current.trimmingWhitespace())
                    current = ""
                    continue
                default: break
                }
                current.append(c)
            }
            return nil
        }
        return nil
    }

    /// True for a pointer parameter whose pointee is const: `const` appears before the last `*`.
    static func pointsToConst(_ parameter: String) -> Bool {
        guard let star = parameter.lastIndex(of: "*") else { return false }
        let words = parameter[..<star].split { !($0.isLetter || $0.isNumber || $0 == "_") }
        return words.contains("const")
    }
}

extension String {
    fileprivate func trimmingWhitespace() -> String {
        String(drop { $0.isWhitespace }.reversed().drop { $0.isWhitespace }.reversed())
    }
}
