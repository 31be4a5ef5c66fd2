// The GPU layer of a build without CUDA: every device is unavailable, with the reason.
#include "gpu.h"

namespace ss::gpu {
namespace {
const char *kReason = "this build of selective-scan has no CUDA support (no CUDA compiler was found when it was built)";
[[noreturn]] void unavailable() { throw Error("ERR_CUDA_UNAVAILABLE", std::string("CUDA is unavailable: ") + kReason); }
}  // namespace

bool compiledWithCuda() { return false; }
std::string unavailableReason() { return kReason; }
int deviceCount() { return 0; }
std::string runtimeVersion() { return ""; }
std::vector<std::string> architectures() { return {}; }
void requireDevice(int) { unavailable(); }
void *allocate(int, size_t) { unavailable(); }
void release(int, void *) {}
void fillBytes(int, void *, size_t, unsigned char) { unavailable(); }
void upload(int, void *, const void *, size_t) { unavailable(); }
void downloadSync(int, void *, const void *, size_t) { unavailable(); }
void copyDevice(int, void *, int, const void *, size_t) { unavailable(); }
void convert(int, void *, DType, const void *, DType, int64_t) { unavailable(); }
PendingDownload::PendingDownload(int device, const void *, size_t) : device_(device) { unavailable(); }
PendingDownload::~PendingDownload() {}
void PendingDownload::wait() { unavailable(); }
void synchronize(int) { unavailable(); }
MemoryInfo memoryInfo(int) { unavailable(); }
void resetPeakMemory(int) { unavailable(); }
void *recordEvent(int) { unavailable(); }
float elapsedMs(void *, void *) { unavailable(); }
void destroyEvent(void *) {}
double measureExp2Rate(int) { unavailable(); }
void launch(int, const char *, const std::function<Status(Stream)> &) { unavailable(); }

}  // namespace ss::gpu
