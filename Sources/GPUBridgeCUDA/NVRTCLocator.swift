/// Why NVRTC could not be loaded: every place that was tried, with what was wrong there.
public struct NVRTCUnavailable: Error, Sendable, Equatable, CustomStringConvertible {
    /// One line per place tried, in search order.
    public let attempts: [String]

    public var description: String {
        "NVRTC not found (install it with `pip install nvidia-cuda-nvrtc`, or set GPUBRIDGE_NVRTC to libnvrtc.so's path); tried: "
            + attempts.joined(separator: "; ")
    }
}

/// Where to look for NVRTC, in order:
/// 1. an explicit path (`CUDABackend.Options.nvrtcPath`; when given, only that file is tried), else
///    `$GPUBRIDGE_NVRTC` (a file path);
/// 2. `$CUDA_HOME/lib64`, `$CUDA_PATH/lib64`;
/// 3. `/usr/local/cuda/lib64`;
/// 4. the NVIDIA Python wheels (`nvidia-cuda-nvrtc` puts it in `nvidia/cu13/lib`, the CUDA 12 wheel in
///    `nvidia/cuda_nvrtc/lib`) under the usual site-packages folders: `$PYTHONPATH`, `$VIRTUAL_ENV`, `$CONDA_PREFIX`,
///    `~/.local`, pyenv (`$PYENV_ROOT`, `~/.pyenv`, `/root/.pyenv`), `/usr/local/lib`, `/usr/lib`, `/opt/conda`;
/// 5. the dynamic loader's own search (`libnvrtc.so`, `libnvrtc.so.13`, `libnvrtc.so.12`).
///
/// In a folder the names tried are `libnvrtc.so`, `libnvrtc.so.13`, `libnvrtc.so.12`, then any `libnvrtc.so.*`
/// (newest first). No subprocess is started.
enum NVRTCLocator {
    /// One place to try.
    struct Candidate: Sendable, Hashable {
        /// A file path, or a bare library name for the dynamic loader.
        let path: String
        /// How the place was chosen (`GPUBRIDGE_NVRTC`, `CUDA_HOME`, `python wheel`, `loader path`...).
        let origin: String
        /// Whether `path` is a file on disk (else a name for the loader).
        let isFile: Bool
    }

    static let libraryNames = ["libnvrtc.so", "libnvrtc.so.13", "libnvrtc.so.12"]
    static let wheelFolders = ["nvidia/cu13/lib", "nvidia/cuda_nvrtc/lib", "nvidia/cu12/lib"]

    /// Candidates in search order, plus a note for each place that had nothing (for the unavailable message).
    static func candidates(explicitPath: String?) -> (candidates: [Candidate], notes: [String]) {
        var candidates: [Candidate] = []
        var notes: [String] = []
        if let explicitPath {
            // Asked for by the program: that file or nothing, so a wrong path is an error rather than a surprise.
            return ([Candidate(path: explicitPath, origin: "explicit path", isFile: true)], [])
        }
        if let path = FileSearch.environment("GPUBRIDGE_NVRTC") {
            candidates.append(Candidate(path: path, origin: "GPUBRIDGE_NVRTC", isFile: true))
        } else {
            notes.append("GPUBRIDGE_NVRTC unset")
        }
        for variable in ["CUDA_HOME", "CUDA_PATH"] {
            if let root = FileSearch.environment(variable) {
                let found = files(in: root + "/lib64", origin: variable)
                if found.isEmpty { notes.append("\(variable)=\(root): no libnvrtc in lib64") }
                candidates += found
            } else {
                notes.append("\(variable) unset")
            }
        }
        let toolkit = files(in: "/usr/local/cuda/lib64", origin: "/usr/local/cuda")
        if toolkit.isEmpty { notes.append("/usr/local/cuda/lib64: no libnvrtc") }
        candidates += toolkit
        let sites = sitePackages()
        var wheels: [Candidate] = []
        for site in sites {
            for folder in wheelFolders {
                wheels += files(in: site + "/" + folder, origin: "python wheel")
            }
        }
        if wheels.isEmpty {
            notes.append("no nvidia-cuda-nvrtc wheel in \(sites.count) site-packages folder(s)")
        }
        candidates += wheels
        candidates += libraryNames.map { Candidate(path: $0, origin: "loader path", isFile: false) }
        var seen = Set<String>()
        return (candidates.filter { seen.insert($0.path).inserted }, notes)
    }

    /// NVRTC library files in `folder`, in preference order.
    static func files(in folder: String, origin: String) -> [Candidate] {
        var paths = libraryNames.map { folder + "/" + $0 }.filter(FileSearch.exists)
        let versioned = FileSearch.glob(folder + "/libnvrtc.so.*").sorted { $0 > $1 }
        for path in versioned where !paths.contains(path) { paths.append(path) }
        return paths.map { Candidate(path: $0, origin: origin, isFile: true) }
    }

    /// Existing site-packages (and dist-packages) folders, in search order, without duplicates.
    static func sitePackages() -> [String] {
        var patterns: [String] = []
        if let pythonPath = FileSearch.environment("PYTHONPATH") {
            patterns += pythonPath.split(separator: ":").map(String.init)
        }
        for variable in ["VIRTUAL_ENV", "CONDA_PREFIX"] {
            if let root = FileSearch.environment(variable) { patterns.append(root + "/lib/python3*/site-packages") }
        }
        let home = FileSearch.environment("HOME")
        if let home { patterns.append(home + "/.local/lib/python3*/site-packages") }
        var pyenvRoots: [String] = []
        if let root = FileSearch.environment("PYENV_ROOT") { pyenvRoots.append(root) }
        if let home { pyenvRoots.append(home + "/.pyenv") }
        pyenvRoots.append("/root/.pyenv")
        patterns += pyenvRoots.map { $0 + "/versions/*/lib/python3*/site-packages" }
        patterns += [
            "/usr/local/lib/python3*/site-packages", "/usr/local/lib/python3*/dist-packages",
            "/usr/lib/python3/dist-packages", "/usr/lib/python3*/site-packages",
            "/opt/conda/lib/python3*/site-packages",
        ]
        var seen = Set<String>()
        var folders: [String] = []
        for pattern in patterns {
            for folder in FileSearch.glob(pattern) where seen.insert(folder).inserted {
                folders.append(folder)
            }
        }
        return folders
    }
}
