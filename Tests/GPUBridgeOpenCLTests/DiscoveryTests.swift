import GPUBridge
import GPUBridgeOpenCL
import Testing

@Suite("OpenCL discovery without a library")
struct MissingLibraryTests {
    // Runs everywhere: no OpenCL needed.
    @Test("a library that cannot be loaded is a report with the dlopen error, not a crash")
    func missingLibrary() {
        let report = OpenCLBackendProvider(libraryPath: "/nonexistent/libOpenCL.so.1").discover()
        #expect(!report.isAvailable)
        #expect(report.devices.isEmpty)
        let reason = report.unavailableReason ?? ""
        #expect(reason.contains("could not load /nonexistent/libOpenCL.so.1"))
        #expect(reason.contains("No such file"))
    }

    @Test("a library without the OpenCL entry points is reported as such")
    func notOpenCL() {
        let report = OpenCLBackendProvider(libraryPath: "libm.so.6").discover()
        #expect(!report.isAvailable)
        #expect(report.unavailableReason?.contains("has no clGetPlatformIDs") == true)
    }
}

// Gated: these need an OpenCL platform with a device.
@Suite("OpenCL discovery", .enabled(if: OpenCLTestEnvironment.available, OpenCLTestEnvironment.skipReason))
struct DiscoveryTests {
    @Test("every device is reported with properties read from the driver")
    func properties() throws {
        let report = OpenCLBackendProvider().discover()
        #expect(report.isAvailable)
        #expect(report.unavailableReason == nil)
        let details = Dictionary(report.details, uniquingKeysWith: { a, _ in a })
        #expect(details["library"]?.hasPrefix("/") == true)
        #expect(details["platform 0"] != nil)
        for (ordinal, device) in report.devices.enumerated() {
            let backend = try #require(device as? OpenCLBackend)
            let info = backend.info
            #expect(info.id == DeviceID(backend: .opencl, ordinal: ordinal))
            #expect(!info.name.isEmpty)
            #expect(!info.vendor.isEmpty)
            #expect(!info.driverVersion.isEmpty)
            #expect(info.architecture.contains(info.name))
            #expect(info.architecture.contains(backend.deviceVersion))
            #expect(backend.deviceVersion.hasPrefix("OpenCL "))
            #expect(info.totalMemory > 0)
            #expect(info.computeUnits > 0)
            #expect(info.maxGroupItems > 0)
            #expect(info.maxGroupSize.count == 3)
            #expect(info.maxGroups.count == 3)
            for d in 0..<3 {
                // groups * groupSize stays within size_t for every allowed group size.
                #expect(info.maxGroups[d].multipliedReportingOverflow(by: info.maxGroupSize[d]).overflow == false)
            }
            let alignment = info.capabilities.viewOffsetAlignment
            #expect(alignment > 0 && alignment & (alignment - 1) == 0)
            #expect(backend.allocationGranularity >= alignment)
            #expect(info.capabilities.sharedMemoryPerGroup > 0)
            #expect(info.capabilities.float64 == backend.extensions.contains("cl_khr_fp64"))
            #expect(backend.maxAllocationSize > 0 && backend.maxAllocationSize <= info.totalMemory)
            #expect(backend.languages == [.openCLC])
            #expect(backend.compilerVersion.contains(backend.platformName))
        }
    }

    @Test("free memory is the device's memory less what this backend holds")
    func freeMemory() throws {
        let (device, backend) = try makeOpenCLDevice()
        let before = try device.freeMemory()
        #expect(before == backend.info.totalMemory)
        do {
            let buffer = try device.makeBuffer(of: UInt8.self, count: 32 << 20)
            #expect(try device.freeMemory() <= before - buffer.byteCount)
        }
        device.pool.trim()
        #expect(try device.freeMemory() == before)
        #expect(device.pool.statistics.bytesInUse == 0)
    }

    @Test("compiler flags follow the options")
    func flags() throws {
        let (_, backend) = try makeOpenCLDevice()
        let options = CompileOptions(
            defines: ["B": "2", "A": ""], optimize: false, fastMath: true, extraFlags: ["-cl-std=CL1.2"])
        #expect(
            backend.compilerFlags(for: options) == [
                "-DA", "-DB=2", "-cl-fast-relaxed-math", "-cl-opt-disable", "-cl-std=CL1.2",
            ])
        #expect(backend.compilerFlags(for: CompileOptions()) == [])
    }
}
