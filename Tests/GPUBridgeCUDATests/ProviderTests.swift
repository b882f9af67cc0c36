import GPUBridge
import GPUBridgeCUDA
import Testing

/// Discovery on any machine: with no driver it reports why, and never crashes.
@Suite("CUDA discovery")
struct ProviderTests {
    @Test("discover() reports devices, or precisely why there are none")
    func discover() {
        let report = CUDABackendProvider().discover()
        #expect(report.backend == .cuda)
        #expect(report.details.contains { $0.0 == "nvrtc" })
        if report.isAvailable {
            #expect(report.unavailableReason == nil)
            #expect(!report.devices.isEmpty)
            #expect(report.details.contains { $0.0 == "driver" && $0.1.hasPrefix("CUDA ") })
            for device in report.devices {
                #expect(device.info.id.backend == .cuda)
                #expect(device.info.architecture.hasPrefix("sm_"))
                #expect(device.info.vendor == "NVIDIA")
            }
        } else {
            #expect(report.devices.isEmpty)
            let reason = report.unavailableReason ?? ""
            // No driver here: dlopen's own words; with a driver but no GPU: cuInit's error or an empty device list.
            #expect(
                reason.contains("libcuda.so.1") || reason.contains("cuInit") || reason.contains("device"),
                "reason: \(reason)")
        }
    }

    @Test("a driver library that does not exist is unavailable with dlerror's text")
    func missingLibrary() {
        let report = CUDABackendProvider(options: CUDABackend.Options(libraryPath: "libcuda-gpubridge-missing.so.1"))
            .discover()
        #expect(!report.isAvailable)
        #expect(report.devices.isEmpty)
        let reason = report.unavailableReason ?? ""
        #expect(reason.contains("libcuda-gpubridge-missing.so.1"))
        #expect(reason.contains("cannot open shared object file"), "reason: \(reason)")
        #expect(report.details.contains { $0.0 == "library" && $0.1 == "libcuda-gpubridge-missing.so.1" })
    }

    @Test("opening a device without a driver throws backendUnavailable")
    func openWithoutDriver() {
        do {
            _ = try CUDABackend.open(options: CUDABackend.Options(libraryPath: "libcuda-gpubridge-missing.so.1"))
            Issue.record("opened a device without a driver library")
        } catch let GPUBridgeError.backendUnavailable(backend, reason) {
            #expect(backend == "cuda")
            #expect(reason.contains("libcuda-gpubridge-missing.so.1"))
        } catch {
            Issue.record("unexpected error \(error)")
        }
    }

    @Test("an NVRTC path that does not exist is named in the details")
    func missingNVRTC() {
        let report = CUDABackendProvider(options: CUDABackend.Options(nvrtcPath: "/nonexistent/libnvrtc.so")).discover()
        let detail = report.details.first { $0.0 == "nvrtc" }?.1 ?? ""
        #expect(detail.contains("/nonexistent/libnvrtc.so"), "detail: \(detail)")
        #expect(detail.contains("no such file"))
    }
}
