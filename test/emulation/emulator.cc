// The emulator behind emu.h and the fake cuda_runtime.h: fibers, the block scheduler, the warp
// collectives, kernel launches with the runtime's checks, guarded device memory, and the detector
// of races between blocks.
//
// Execution model. A grid runs its blocks one after another (in the order the Schedule says). A
// block's threads are fibers: each has its own stack, and control passes between them only
// inside a collective, so between two collectives a thread runs alone and everything it does is
// atomic to the others (which is why atomics are plain additions; what they hide between blocks,
// the race detector below reports). The scheduler makes passes over
// the block's threads in the schedule's order, resuming each runnable one until it blocks at a
// collective or returns (all warps; or, one warp at a time, only the first warp that can run,
// which then races ahead of the others up to the next __syncthreads: the schedule that exposes a
// missing barrier between warps). A warp collective completes when all 32 lanes have arrived at
// it; its results are computed at once, into per-lane slots that a lane reads when it resumes
// (the inputs of the next collective cannot overwrite them: that one needs every lane to have
// read first). A pass in which no thread could run, while some have not returned, is a deadlock,
// and is reported with where every lane waits.
//
// Context switching is a few instructions of assembly on x86-64 (callee-saved registers and the
// stack pointer; no signal mask, unlike swapcontext, which makes a system call per switch and
// makes the emulation about 7 times slower); other architectures use ucontext.
//
// Memory. Device allocations and each grid's shared memory are mappings of their own, filled with
// NaN and fenced by inaccessible pages; guard bytes between buffer and fence catch a write just
// past either end, a fence catches anything further (as a segmentation fault, turned into a fault
// of the running kernel by the signal handler).
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "cuda_runtime.h"

#if defined(__x86_64__) && !defined(EMU_USE_UCONTEXT)
#define EMU_ASM_SWITCH 1
#else
#define EMU_ASM_SWITCH 0
#include <ucontext.h>
#endif

uint3 emu::gThreadIdx{0, 0, 0}, emu::gBlockIdx{0, 0, 0};
dim3 emu::gBlockDim, emu::gGridDim;
uint64_t emu::gVectorLoads = 0;

namespace emu {
namespace {

// ---- Context switching ------------------------------------------------------------------------

#if EMU_ASM_SWITCH
// emuSwitch(save, load): pushes the callee-saved registers, stores the stack pointer in *save,
// loads `load` as the stack pointer, pops the registers saved there and returns into that context.
extern "C" void emuSwitch(void **save, void *load);
asm(R"(
  .text
  .p2align 4
  .type emuSwitch, @function
emuSwitch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size emuSwitch, .-emuSwitch
)");
#endif

constexpr size_t kStackBytes = 256 * 1024;  // kernel frames are small; UBSan's reports need some room

enum class FiberState { Runnable, AtWarp, AtBlock, Done };

struct Fiber {
#if EMU_ASM_SWITCH
  void *sp = nullptr;
#else
  ucontext_t context;
#endif
  char *stack = nullptr;  // kStackBytes above a PROT_NONE guard page
  FiberState state = FiberState::Done;
  uint3 tid{0, 0, 0};
  int index = 0, warp = 0, lane = 0;
  // Where it waits (for the deadlock report).
  const char *file = nullptr;
  int line = 0;
  Collective op = Collective::SyncWarp;
};

struct Warp {
  int size = 0, arrived = 0;
  Collective op = Collective::SyncWarp;
  const char *file = nullptr;
  int line = 0;
  int firstLane = 0;  // the lane that arrived first (for the mismatch report)
  uint64_t in[kWarpSize] = {};
  int argument[kWarpSize] = {};
  uint64_t out[kWarpSize] = {};
};

// ---- Global state (one emulated device, used from one OS thread) ---------------------------------

Schedule gSchedule;
uint64_t gRandom = 1;
std::vector<std::string> gFaults;
bool gContextFaulted = false;  // a device fault happened: later launches are refused
bool gAbortGrid = false;       // the running grid stops at the next scheduling point
cudaError_t gLastError = cudaSuccess;
Stats gStats;
std::map<const void *, int> gMaxDynamicShared;  // cudaFuncAttributeMaxDynamicSharedMemorySize

// The running grid and block.
const LaunchConfig *gConfig = nullptr;
void (*gBody)(void *) = nullptr;
void *gBodyContext = nullptr;
std::vector<std::unique_ptr<Fiber>> gFibers;  // grows to the largest block seen; stacks reused
std::vector<Warp> gWarps;
int gThreads = 0;  // of the running block
int gBarrierArrived = 0;
const char *gBarrierFile = nullptr;
int gBarrierLine = 0;
Fiber *gCurrent = nullptr;
#if EMU_ASM_SWITCH
void *gSchedulerSp = nullptr;
#else
ucontext_t gSchedulerContext;
#endif
char *gShared = nullptr;  // the running block's dynamic shared memory
size_t gSharedBytes = 0;

uint64_t nextRandom() {  // xorshift64*
  gRandom ^= gRandom >> 12;
  gRandom ^= gRandom << 25;
  gRandom ^= gRandom >> 27;
  return gRandom * 0x2545F4914F6CDD1DULL;
}

// 0, 1, ..., n - 1 in the given order.
void orderOf(Order order, int n, std::vector<int> &out) {
  out.resize(size_t(n));
  for (int i = 0; i < n; ++i) out[size_t(i)] = order == Order::Descending ? n - 1 - i : i;
  if (order == Order::Random)
    for (int i = n - 1; i > 0; --i) std::swap(out[size_t(i)], out[size_t(nextRandom() % uint64_t(i + 1))]);
}

std::string where(const char *file, int line) {
  std::string f = file ? file : "?";
  const size_t slash = f.find_last_of('/');
  if (slash != std::string::npos) f = f.substr(slash + 1);
  return f + ":" + std::to_string(line);
}

const char *collectiveName(Collective op) {
  switch (op) {
    case Collective::SyncWarp: return "__syncwarp";
    case Collective::ShflIdx: return "__shfl_sync";
    case Collective::ShflUp: return "__shfl_up_sync";
    case Collective::ShflDown: return "__shfl_down_sync";
    case Collective::ShflXor: return "__shfl_xor_sync";
    case Collective::Ballot: return "__ballot_sync";
    case Collective::Any: return "__any_sync";
    case Collective::All: return "__all_sync";
  }
  return "?";
}

std::string threadName(const Fiber &f) {
  return "block (" + std::to_string(gBlockIdx.x) + "," + std::to_string(gBlockIdx.y) + "," +
         std::to_string(gBlockIdx.z) + ") thread " + std::to_string(f.index) + " (warp " + std::to_string(f.warp) +
         " lane " + std::to_string(f.lane) + ")";
}

std::string kernelName() {
  return gConfig ? std::string(gConfig->kernelName) + " launched at " + where(gConfig->file, gConfig->line) : "host";
}

// ---- Fibers --------------------------------------------------------------------------------------

extern "C" [[noreturn]] void emuFiberEntry();

void switchToFiber(Fiber &f) {
  gCurrent = &f;
  gThreadIdx = f.tid;
#if EMU_ASM_SWITCH
  emuSwitch(&gSchedulerSp, f.sp);
#else
  swapcontext(&gSchedulerContext, &f.context);
#endif
  gCurrent = nullptr;
}

void switchToScheduler(Fiber &f) {
#if EMU_ASM_SWITCH
  emuSwitch(&f.sp, gSchedulerSp);
#else
  swapcontext(&f.context, &gSchedulerContext);
#endif
}

extern "C" [[noreturn]] void emuFiberEntry() {
  Fiber &f = *gCurrent;
  gBody(gBodyContext);
  f.state = FiberState::Done;
  switchToScheduler(f);
  std::abort();  // a finished fiber is never resumed
}

Fiber &fiber(int i) {
  while (int(gFibers.size()) <= i) {
    auto f = std::make_unique<Fiber>();
    const size_t page = size_t(sysconf(_SC_PAGESIZE));
    void *mem = mmap(nullptr, kStackBytes + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) {
      std::perror("emulator: mmap of a fiber stack");
      std::abort();
    }
    mprotect(mem, page, PROT_NONE);  // a stack overflow faults instead of corrupting memory
    f->stack = static_cast<char *>(mem) + page;
    f->index = int(gFibers.size());
    gFibers.push_back(std::move(f));
  }
  return *gFibers[size_t(i)];
}

// Makes fiber f start at emuFiberEntry the next time it is switched to.
void prepare(Fiber &f) {
#if EMU_ASM_SWITCH
  // The stack as emuSwitch leaves it: six saved registers, then the "return address"
  // emuFiberEntry, then a null slot where its own return address would be. At emuFiberEntry's
  // first instruction the stack pointer is then 8 mod 16, as after a call.
  uintptr_t top = (reinterpret_cast<uintptr_t>(f.stack) + kStackBytes) & ~uintptr_t(15);
  void **sp = reinterpret_cast<void **>(top);
  *--sp = nullptr;                                   // emuFiberEntry's return address: none
  *--sp = reinterpret_cast<void *>(&emuFiberEntry);  // where emuSwitch's ret goes
  for (int r = 0; r < 6; ++r) *--sp = nullptr;       // rbp, rbx, r12 - r15
  f.sp = sp;
#else
  getcontext(&f.context);
  f.context.uc_stack.ss_sp = f.stack;
  f.context.uc_stack.ss_size = kStackBytes;
  f.context.uc_link = nullptr;
  makecontext(&f.context, reinterpret_cast<void (*)()>(&emuFiberEntry), 0);
#endif
}

// ---- Deadlock report ------------------------------------------------------------------------------

// "0-15,17" for a set of lanes.
std::string ranges(const std::vector<int> &xs) {
  std::string s;
  for (size_t i = 0; i < xs.size();) {
    size_t j = i;
    while (j + 1 < xs.size() && xs[j + 1] == xs[j] + 1) ++j;
    if (!s.empty()) s += ",";
    s += std::to_string(xs[i]);
    if (j > i) s += "-" + std::to_string(xs[j]);
    i = j + 1;
  }
  return s;
}

std::string deadlockReport() {
  std::string report =
      "deadlock in " + kernelName() + ", block (" + std::to_string(gBlockIdx.x) + "): no thread can continue;";
  for (size_t w = 0; w < gWarps.size(); ++w) {
    std::map<std::string, std::vector<int>> groups;  // what -> lanes
    for (int l = 0; l < gWarps[w].size; ++l) {
      const Fiber &f = fiber(int(w) * kWarpSize + l);
      std::string what;
      switch (f.state) {
        case FiberState::Done: what = "returned"; break;
        case FiberState::AtWarp: what = std::string("at ") + collectiveName(f.op) + " " + where(f.file, f.line); break;
        case FiberState::AtBlock: what = "at __syncthreads " + where(f.file, f.line); break;
        case FiberState::Runnable: what = "runnable"; break;
      }
      groups[what].push_back(l);
    }
    if (groups.size() == 1 && groups.begin()->first == "returned") continue;
    report += " warp " + std::to_string(w) + ":";
    for (const auto &[what, lanes] : groups)
      report += (lanes.size() == 1 ? " lane " : " lanes ") + ranges(lanes) + " " + what + ";";
  }
  return report;
}

// Fills with the bytes of kPoisonWord (little-endian); p must be 2-byte aligned.
void poison(unsigned char *p, size_t n) {
  for (size_t i = 0; i < n; ++i) p[i] = (i % 2 == 0) ? 0xff : 0x7f;  // bytes of kPoisonWord, little-endian
}

// ---- One block --------------------------------------------------------------------------------------

void runBlock(const dim3 &block) {
  const int T = int(block.x * block.y * block.z);
  gThreads = T;
  gWarps.assign(size_t((T + kWarpSize - 1) / kWarpSize), Warp{});
  for (size_t w = 0; w < gWarps.size(); ++w) gWarps[w].size = std::min(kWarpSize, T - int(w) * kWarpSize);
  gBarrierArrived = 0;
  for (int i = 0; i < T; ++i) {
    Fiber &f = fiber(i);
    f.state = FiberState::Runnable;
    f.tid = {unsigned(i) % block.x, (unsigned(i) / block.x) % block.y, unsigned(i) / (block.x * block.y)};
    f.warp = i / kWarpSize;
    f.lane = i % kWarpSize;
    prepare(f);
  }
  // Fresh shared memory holds garbage; NaN makes a read of something never written visible.
  if (gShared) poison(reinterpret_cast<unsigned char *>(gShared), gSharedBytes);

  std::vector<int> order;
  orderOf(gSchedule.threads, T, order);
  int done = 0;
  while (done < T) {
    bool progressed = false;
    if (gSchedule.threads == Order::Random) orderOf(Order::Random, T, order);  // a new order every pass
    // One warp at a time: only the warp of the first runnable thread (in this pass's order) runs,
    // so it goes on through its own collectives until it waits at a __syncthreads or returns, far
    // ahead of the other warps. Lockstep, every warp advances by one collective per pass, and a
    // missing __syncthreads between warps stays hidden (the self-test shows both).
    int onlyWarp = -1;
    if (gSchedule.oneWarpAtATime) {
      for (int i : order) {
        if (gFibers[size_t(i)]->state == FiberState::Runnable) {
          onlyWarp = gFibers[size_t(i)]->warp;
          break;
        }
      }
    }
    for (int i : order) {
      Fiber &f = *gFibers[size_t(i)];
      if (f.state != FiberState::Runnable || (onlyWarp >= 0 && f.warp != onlyWarp)) continue;
      switchToFiber(f);
      progressed = true;
      if (f.state == FiberState::Done) ++done;
      if (gAbortGrid) return;
    }
    if (!progressed && done < T) {  // on a GPU: a hang, until the watchdog kills the context
      fault(deadlockReport());
      gContextFaulted = true;
      gAbortGrid = true;
      return;
    }
  }
}

// ---- Memory ---------------------------------------------------------------------------------------
//
// A region (a device allocation, or a grid's dynamic shared memory) is its own mapping:
//   [fence: kFence bytes, no access][guard bytes][user bytes][guard bytes][fence]
// The user bytes start kAlign-aligned (as cudaMalloc's) and end less than kAlign bytes before the
// second fence. The guard bytes hold the poison pattern, checked after every op (a write just
// outside the buffer); an access that reaches a fence is a segmentation fault, which the handler
// below turns into a fault of the running kernel (an illegal address, as the GPU reports it).
constexpr size_t kAlign = 256;
constexpr size_t kFence = 64 * 1024;
// The race detector's unit of memory: the smallest element the kernels store (float16 /
// bfloat16), so that blocks that own neighbouring 2-byte elements do not conflict.
constexpr size_t kGranuleBytes = 2;
enum class Access : uint32_t { Read = 1, Write = 2, Atomic = 4 };
constexpr int kAccessBits = 3;  // the Access bits of Granule::use
constexpr uint32_t kAccessMask = (1u << kAccessBits) - 1;
constexpr uint32_t kManyBlocks = ~uint32_t(0) >> kAccessBits;  // owner of a granule that several blocks touched

size_t pageSize() {
  static const size_t page = size_t(sysconf(_SC_PAGESIZE));
  return page;
}

// One granule of device memory as the race detector sees it (below): the launch that last touched
// it, and how.
struct Granule {
  uint32_t launch;  // 0: never touched
  uint32_t use;     // owner block << kAccessBits | the Access bits of every access so far
};

struct Region {
  unsigned char *mapping = nullptr, *user = nullptr;
  size_t mappingBytes = 0, bytes = 0;
  Granule *shadow = nullptr;  // a device allocation's, one per kGranuleBytes (race detector)
  size_t shadowBytes = 0;
  unsigned char *accessible() const { return mapping + kFence; }
  size_t accessibleBytes() const { return mappingBytes - 2 * kFence; }
};

Region mapRegion(size_t bytes) {
  Region r;
  const size_t rounded = (bytes + kAlign - 1) / kAlign * kAlign;
  const size_t accessible = (kAlign + rounded + pageSize() - 1) / pageSize() * pageSize();
  r.mappingBytes = kFence + accessible + kFence;
  void *m = mmap(nullptr, r.mappingBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) return Region{};
  r.mapping = static_cast<unsigned char *>(m);
  mprotect(r.mapping, kFence, PROT_NONE);
  mprotect(r.mapping + kFence + accessible, kFence, PROT_NONE);
  r.bytes = bytes;
  r.user = r.accessible() + accessible - rounded;
  poison(r.accessible(), accessible);
  return r;
}

void unmapRegion(Region &r) {
  if (r.mapping) munmap(r.mapping, r.mappingBytes);
  if (r.shadow) munmap(r.shadow, r.shadowBytes);
  r = Region{};
}

bool poisoned(const unsigned char *p, size_t n, uintptr_t patternBase) {
  for (size_t i = 0; i < n; ++i) {
    const unsigned char expected = ((reinterpret_cast<uintptr_t>(p + i) - patternBase) % 2 == 0) ? 0xff : 0x7f;
    if (p[i] != expected) return false;
  }
  return true;
}

// Whether the guard bytes around the user bytes are untouched.
bool guardsIntact(const Region &r) {
  const uintptr_t base = uintptr_t(r.accessible());
  return poisoned(r.accessible(), size_t(r.user - r.accessible()), base) &&
         poisoned(r.user + r.bytes, size_t(r.accessible() + r.accessibleBytes() - (r.user + r.bytes)), base);
}

std::map<const unsigned char *, Region> gAllocations;  // by user pointer
Region gSharedRegion;                                  // the running grid's dynamic shared memory

// Where an address lies relative to the allocations (for the report of an illegal address).
std::string describeAddress(const void *address) {
  const auto *a = static_cast<const unsigned char *>(address);
  auto near = [&](const Region &r, const std::string &what) -> std::string {
    if (a < r.mapping || a >= r.mapping + r.mappingBytes) return "";
    if (a < r.user)
      return std::to_string(r.user - a) + " bytes before " + what + " of " + std::to_string(r.bytes) + " bytes";
    return std::to_string(a - (r.user + r.bytes)) + " bytes past the end of " + what + " of " +
           std::to_string(r.bytes) + " bytes";
  };
  for (const auto &[user, r] : gAllocations) {
    const std::string d = near(r, "an allocation");
    if (!d.empty()) return d;
  }
  const std::string d = near(gSharedRegion, "the dynamic shared memory");
  return d.empty() ? "outside every allocation" : d;
}

// Segmentation faults (an access that reached a fence, or any other wild pointer) and arithmetic
// exceptions inside a kernel become faults of that kernel, reported with the thread that made
// them; the grid stops as it would on the GPU and the other cases go on. The handler runs on its
// own stack (a fiber's stack overflow is a segmentation fault too) and leaves by switching to the
// scheduler; SA_NODEFER keeps the signal unblocked for the next time. Outside a kernel the
// default action (a core dump) is restored and the instruction re-executed.
void onSignal(int signal, siginfo_t *info, void *) {
  if (!gCurrent) {
    ::signal(signal, SIG_DFL);
    return;
  }
  if (signal == SIGFPE) fault("arithmetic exception (integer division by zero?)");
  fault("illegal address: access to " + describeAddress(info->si_addr));
}

void installSignalHandlers() {
  static bool installed = false;
  if (installed) return;
  installed = true;
  static std::vector<char> altStack(256 * 1024);
  stack_t ss{};
  ss.ss_sp = altStack.data();
  ss.ss_size = altStack.size();
  sigaltstack(&ss, nullptr);
  struct sigaction sa{};
  sa.sa_sigaction = onSignal;
  sa.sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGSEGV, SIGBUS, SIGFPE}) sigaction(sig, &sa, nullptr);
}

// The allocation containing [p, p + n), or null.
const Region *findAllocation(const void *p, size_t n) {
  const auto *q = static_cast<const unsigned char *>(p);
  auto it = gAllocations.upper_bound(q);
  if (it == gAllocations.begin()) return nullptr;
  --it;
  if (q + n > it->first + it->second.bytes) return nullptr;
  return &it->second;
}

// ---- Races between blocks -------------------------------------------------------------------------
//
// The blocks of a grid run here one after another, so a read-modify-write that ought to be atomic
// gives the right sum where, on a GPU, blocks running at once lose updates. Instead of hoping for
// an unlucky interleaving, every access a kernel makes to device memory is recorded per launch in
// a shadow of the allocation, one Granule per kGranuleBytes: which block touched the granule first
// (or kManyBlocks) and how (the Access bits). Blocks of one launch are unordered, so two accesses
// by different blocks conflict unless both are reads or both are atomics; the first conflict is a
// fault naming the kernel, both blocks, both kinds of access and the address. That fails
// deterministically, under any schedule. Within a block the detector sees nothing (its threads
// are ordered by barriers, which are checked by running them in different orders).
//
// The kernels' loads and stores reach recordAccess through the compiler's ThreadSanitizer
// instrumentation (the __tsan_* hooks at the end of this file); atomics call it themselves.
uint32_t gLaunchNumber = 0;            // of the running grid while the detector watches it, else 0
uint32_t gLaunches = 0;                // launches so far (the shadow's epochs)
uint32_t gBlockNumber = 0;             // the running block's linear index
const Region *gLastTouched = nullptr;  // the allocation of the latest access (most hit the same one)

std::string blockName(uint32_t linear) {
  const dim3 g = gGridDim;
  return "block (" + std::to_string(linear % g.x) + "," + std::to_string(linear / g.x % g.y) + "," +
         std::to_string(linear / (g.x * g.y)) + ")";
}

// "read", "write and atomic update" (or in the past tense: "read", "wrote and atomically updated").
std::string accessNames(uint32_t kinds, bool past) {
  std::string s;
  const auto add = [&](Access kind, const char *noun, const char *verb) {
    if (kinds & uint32_t(kind)) s += (s.empty() ? "" : " and ") + std::string(past ? verb : noun);
  };
  add(Access::Read, "read", "read");
  add(Access::Write, "write", "wrote");
  add(Access::Atomic, "atomic update", "atomically updated");
  return s;
}

[[noreturn]] void reportRace(const Region &r, const unsigned char *address, size_t bytes, Access kind,
                             const Granule &earlier) {
  const uint32_t owner = earlier.use >> kAccessBits;
  fault("race between blocks: " + accessNames(uint32_t(kind), false) + " of " + std::to_string(bytes) +
        " bytes at byte " + std::to_string(address - r.user) + " of an allocation of " + std::to_string(r.bytes) +
        " bytes, which " + (owner == kManyBlocks ? "other blocks" : blockName(owner)) + " " +
        accessNames(earlier.use & kAccessMask, true) +
        " in the same launch (the blocks of a grid are unordered: memory that several of them touch may only be "
        "read by all or only updated atomically by all)");
  std::abort();  // fault() does not return inside a kernel
}

inline void recordAccess(const void *p, size_t bytes, Access kind) {
  if (!gLaunchNumber || bytes == 0) return;
  const auto *a = static_cast<const unsigned char *>(p);
  const Region *r = gLastTouched;
  if (!r || a < r->user || a >= r->user + r->bytes) {
    // Not device memory: the thread's stack, shared memory, anything outside the allocations
    // (an access out of bounds is the guards' business).
    const auto *stack = reinterpret_cast<const unsigned char *>(gCurrent->stack);
    if (a >= stack && a < stack + kStackBytes) return;
    if (a >= gSharedRegion.mapping && a < gSharedRegion.mapping + gSharedRegion.mappingBytes) return;
    r = findAllocation(a, 1);
    if (!r) return;
    gLastTouched = r;
  }
  const size_t first = size_t(a - r->user) / kGranuleBytes;
  const size_t last = (std::min(size_t(a - r->user) + bytes, r->bytes) - 1) / kGranuleBytes;
  const uint32_t mine = gBlockNumber << kAccessBits;
  for (Granule *g = r->shadow + first; g <= r->shadow + last; ++g) {
    if (g->launch != gLaunchNumber) {
      *g = {gLaunchNumber, mine | uint32_t(kind)};
    } else if ((g->use >> kAccessBits) == gBlockNumber) {
      g->use |= uint32_t(kind);
    } else {
      const uint32_t kinds = g->use & kAccessMask;
      if (kinds != uint32_t(kind) || kind == Access::Write) reportRace(*r, a, bytes, kind, *g);
      g->use = (kManyBlocks << kAccessBits) | kinds;
    }
  }
}

}  // namespace

// ---- Public interface ------------------------------------------------------------------------------

void setSchedule(const Schedule &schedule) {
  gSchedule = schedule;
  gRandom = schedule.seed ? schedule.seed : 1;
}

std::string describe(const Schedule &s) {
  auto name = [](Order o) {
    return o == Order::Ascending ? "ascending" : o == Order::Descending ? "descending" : "random";
  };
  return std::string("threads ") + name(s.threads) + (s.oneWarpAtATime ? " one warp at a time" : " in lockstep") +
         ", blocks " + name(s.blocks) +
         (s.threads == Order::Random || s.blocks == Order::Random ? ", seed " + std::to_string(s.seed) : "");
}

void fault(const std::string &what) {
  std::string message = what;
  if (gCurrent) message += " [in " + kernelName() + ", " + threadName(*gCurrent) + "]";
  if (gFaults.size() < 20) gFaults.push_back(message);
  if (gCurrent) {
    // A device fault: the grid stops and the context refuses further work.
    gContextFaulted = true;
    gAbortGrid = true;
    Fiber &f = *gCurrent;
    f.state = FiberState::Done;
    switchToScheduler(f);
    std::abort();  // never resumed
  }
}

std::vector<std::string> takeFaults() {
  std::vector<std::string> faults;
  faults.swap(gFaults);
  gContextFaulted = false;
  gLastError = cudaSuccess;
  return faults;
}

Stats stats() {
  Stats s = gStats;
  s.vectorLoads = gVectorLoads;
  return s;
}

bool inKernel() { return gCurrent != nullptr; }

template <class T>
T atomicAdd(T *address, T value) {
  recordAccess(address, sizeof(T), Access::Atomic);
  const T old = *address;
  *address = old + value;
  return old;
}
template float atomicAdd(float *, float);
template double atomicAdd(double *, double);
template int atomicAdd(int *, int);
template unsigned atomicAdd(unsigned *, unsigned);
template unsigned long long atomicAdd(unsigned long long *, unsigned long long);

void *dynamicSharedMemory() {
  if (!gCurrent) fault("dynamic shared memory used outside a kernel");
  return gShared;
}

void *allocate(size_t bytes) {
  Region r = mapRegion(bytes);
  if (!r.mapping) return nullptr;
  // The race detector's shadow: zero pages, mapped on first touch (a granule of launch 0 is fresh).
  r.shadowBytes = (bytes + kGranuleBytes - 1) / kGranuleBytes * sizeof(Granule);
  if (r.shadowBytes > 0) {
    void *shadow =
        mmap(nullptr, r.shadowBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (shadow == MAP_FAILED) {
      unmapRegion(r);
      return nullptr;
    }
    r.shadow = static_cast<Granule *>(shadow);
  }
  gAllocations[r.user] = r;
  return r.user;
}

void release(void *p) {
  if (!p) return;
  auto it = gAllocations.find(static_cast<unsigned char *>(p));
  if (it == gAllocations.end()) {
    fault("free of a pointer that is not an allocation");
    return;
  }
  if (!guardsIntact(it->second))
    fault("an allocation of " + std::to_string(it->second.bytes) +
          " bytes was written out of bounds (found at its free)");
  if (gLastTouched == &it->second) gLastTouched = nullptr;
  unmapRegion(it->second);
  gAllocations.erase(it);
}

void checkGuards() {
  for (const auto &[user, a] : gAllocations)
    if (!guardsIntact(a))
      fault("an allocation of " + std::to_string(a.bytes) + " bytes was written out of bounds (guard bytes changed)");
}

size_t liveAllocations() { return gAllocations.size(); }

void runGrid(const void *kernel, const LaunchConfig &config, void (*body)(void *), void *context) {
  const std::string name = std::string(config.kernelName) + " launched at " + where(config.file, config.line);
  if (gCurrent) fault("kernel launch from device code is not emulated");
  if (gContextFaulted) {  // a faulted context runs nothing more
    gLastError = cudaErrorLaunchFailure;
    return;
  }
  const dim3 g = config.grid, b = config.block;
  auto reject = [&](cudaError_t e, const std::string &why) {
    gLastError = e;
    fault("launch of " + name + " rejected (" + cudaGetErrorName(e) + "): " + why);
  };
  const uint64_t threads = uint64_t(b.x) * b.y * b.z;
  if (b.x == 0 || b.y == 0 || b.z == 0 || threads > kMaxThreadsPerBlock || b.z > 64)
    return reject(cudaErrorInvalidConfiguration,
                  "block (" + std::to_string(b.x) + "," + std::to_string(b.y) + "," + std::to_string(b.z) + ")");
  if (g.x == 0 || g.y == 0 || g.z == 0 || g.x > kMaxGridX || g.y > kMaxGridYZ || g.z > kMaxGridYZ)
    return reject(cudaErrorInvalidConfiguration,
                  "grid (" + std::to_string(g.x) + "," + std::to_string(g.y) + "," + std::to_string(g.z) + ")");
  if (config.maxThreads > 0 && threads > uint64_t(config.maxThreads))
    return reject(cudaErrorLaunchOutOfResources, std::to_string(threads) +
                                                     " threads per block, but __launch_bounds__ allows " +
                                                     std::to_string(config.maxThreads));
  const auto attribute = gMaxDynamicShared.find(kernel);
  const size_t sharedLimit =
      attribute != gMaxDynamicShared.end() ? size_t(attribute->second) : kDefaultDynamicSharedBytes;
  if (config.sharedBytes > sharedLimit)
    return reject(cudaErrorInvalidValue, std::to_string(config.sharedBytes) +
                                             " bytes of dynamic shared memory, limit " + std::to_string(sharedLimit) +
                                             " (cudaFuncSetAttribute raises it)");

  installSignalHandlers();
  ++gStats.launches;
  gConfig = &config;
  gBody = body;
  gBodyContext = context;
  gBlockDim = b;
  gGridDim = g;
  gSharedBytes = config.sharedBytes;
  if (config.sharedBytes > 0) {
    gSharedRegion = mapRegion(config.sharedBytes);
    gShared = reinterpret_cast<char *>(gSharedRegion.user);
  }

  const uint64_t blocks = uint64_t(g.x) * g.y * g.z;
  std::vector<int> order;
  orderOf(gSchedule.blocks, int(std::min<uint64_t>(blocks, 0x7fffffff)), order);
  gAbortGrid = false;
  // The race detector watches grids whose block numbers fit beside the Access bits (all the tests').
  if (++gLaunches == 0) ++gLaunches;  // 0 marks a granule no launch has touched
  gLaunchNumber = blocks < kManyBlocks ? gLaunches : 0;
  for (int linear : order) {
    gBlockNumber = uint32_t(linear);
    gBlockIdx = {unsigned(linear) % g.x, (unsigned(linear) / g.x) % g.y, unsigned(linear) / (g.x * g.y)};
    runBlock(b);
    ++gStats.blocks;
    gStats.threads += threads;
    if (gShared && !guardsIntact(gSharedRegion)) {
      fault("block (" + std::to_string(gBlockIdx.x) + ") of " + name + " wrote outside its " +
            std::to_string(config.sharedBytes) + " bytes of dynamic shared memory");
      gContextFaulted = true;
      break;
    }
    if (gAbortGrid) break;
  }
  gAbortGrid = false;
  gLaunchNumber = 0;
  gConfig = nullptr;
  gShared = nullptr;
  unmapRegion(gSharedRegion);
}

uint64_t warpCollective(Collective op, unsigned mask, uint64_t value, int argument, int width, const char *file,
                        int line) {
  Fiber *self = gCurrent;
  if (!self) {
    fault(std::string(collectiveName(op)) + " called outside a kernel");
    return 0;
  }
  Warp &w = gWarps[size_t(self->warp)];
  // (Messages are built only on a fault: this is the emulator's hottest function.)
  auto at = [&] { return std::string(collectiveName(op)) + " at " + where(file, line); };
  if (w.size != kWarpSize || mask != 0xffffffffu)
    fault(at() + ": the emulator supports full-warp collectives only (mask " + std::to_string(mask) + ", warp of " +
          std::to_string(w.size) + " threads)");
  if (width != kWarpSize) fault(at() + ": width " + std::to_string(width) + " is not emulated");
  if (w.arrived == 0) {
    w.op = op;
    w.file = file;
    w.line = line;
    w.firstLane = self->lane;
  } else if (w.op != op ||
             (op != Collective::SyncWarp && (w.line != line || (w.file != file && std::strcmp(w.file, file) != 0)))) {
    // Lanes that meet at different collectives: undefined on the hardware (or a deadlock).
    // __syncwarp at different places is allowed (independent thread scheduling, sm_70+).
    fault("divergent warp collective: lane " + std::to_string(w.firstLane) + " is at " + collectiveName(w.op) + " " +
          where(w.file, w.line) + ", lane " + std::to_string(self->lane) + " at " + at());
  }
  const int lane = self->lane;
  w.in[lane] = value;
  w.argument[lane] = argument;
  self->state = FiberState::AtWarp;
  self->op = op;
  self->file = file;
  self->line = line;
  if (++w.arrived == w.size) {
    ++gStats.collectives;
    unsigned ballot = 0;
    for (int l = 0; l < kWarpSize; ++l)
      if (w.argument[l]) ballot |= 1u << l;
    for (int l = 0; l < kWarpSize; ++l) {
      int src = l;
      switch (op) {
        case Collective::ShflIdx: src = ((w.argument[l] % kWarpSize) + kWarpSize) % kWarpSize; break;
        case Collective::ShflUp: src = l - w.argument[l] >= 0 ? l - w.argument[l] : l; break;
        case Collective::ShflDown: src = l + w.argument[l] < kWarpSize ? l + w.argument[l] : l; break;
        case Collective::ShflXor: src = (l ^ w.argument[l]) < kWarpSize ? (l ^ w.argument[l]) : l; break;
        default: break;
      }
      switch (op) {
        case Collective::Ballot: w.out[l] = ballot; break;
        case Collective::Any: w.out[l] = ballot != 0; break;
        case Collective::All: w.out[l] = ballot == 0xffffffffu; break;
        default: w.out[l] = w.in[src]; break;
      }
      gFibers[size_t(self->warp * kWarpSize + l)]->state = FiberState::Runnable;
    }
    w.arrived = 0;
  }
  switchToScheduler(*self);  // every lane yields, so the schedule decides who goes on first
  return w.out[lane];
}

void syncThreads(const char *file, int line) {
  Fiber *self = gCurrent;
  if (!self) {
    fault("__syncthreads called outside a kernel");
    return;
  }
  if (gBarrierArrived == 0) {
    gBarrierFile = file;
    gBarrierLine = line;
  } else if (gBarrierLine != line || (gBarrierFile != file && std::strcmp(gBarrierFile, file) != 0)) {
    fault("threads of a block meet at different __syncthreads: " + where(gBarrierFile, gBarrierLine) + " and " +
          where(file, line));
  }
  self->state = FiberState::AtBlock;
  self->file = file;
  self->line = line;
  if (++gBarrierArrived == gThreads) {
    ++gStats.collectives;
    for (int i = 0; i < gThreads; ++i) gFibers[size_t(i)]->state = FiberState::Runnable;
    gBarrierArrived = 0;
  }
  switchToScheduler(*self);
}

}  // namespace emu

// ---- The CUDA runtime API ---------------------------------------------------------------------------

cudaError_t cudaGetLastError() {
  const cudaError_t e = emu::gLastError;
  emu::gLastError = cudaSuccess;
  return e;
}
cudaError_t cudaPeekAtLastError() { return emu::gLastError; }

const char *cudaGetErrorName(cudaError_t error) {
  switch (error) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInitializationError: return "cudaErrorInitializationError";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevicePointer: return "cudaErrorInvalidDevicePointer";
    case cudaErrorInvalidDeviceFunction: return "cudaErrorInvalidDeviceFunction";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    case cudaErrorNoKernelImageForDevice: return "cudaErrorNoKernelImageForDevice";
    case cudaErrorIllegalAddress: return "cudaErrorIllegalAddress";
    case cudaErrorLaunchOutOfResources: return "cudaErrorLaunchOutOfResources";
    case cudaErrorMisalignedAddress: return "cudaErrorMisalignedAddress";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
    case cudaErrorNotSupported: return "cudaErrorNotSupported";
    case cudaErrorUnknown: return "cudaErrorUnknown";
  }
  return "cudaError(unknown code)";
}
const char *cudaGetErrorString(cudaError_t error) { return cudaGetErrorName(error); }

cudaError_t cudaFuncSetAttribute(const void *func, cudaFuncAttribute attribute, int value) {
  if (attribute == cudaFuncAttributeMaxDynamicSharedMemorySize) {
    if (value < 0 || size_t(value) > emu::kMaxDynamicSharedBytes) return emu::gLastError = cudaErrorInvalidValue;
    emu::gMaxDynamicShared[func] = value;
  }
  return cudaSuccess;
}

cudaError_t cudaMalloc(void **devPtr, size_t size) {
  *devPtr = emu::allocate(size);
  return *devPtr ? cudaSuccess : cudaErrorMemoryAllocation;
}
cudaError_t cudaFree(void *devPtr) {
  emu::release(devPtr);
  return cudaSuccess;
}
cudaError_t cudaMallocAsync(void **devPtr, size_t size, cudaStream_t) { return cudaMalloc(devPtr, size); }
cudaError_t cudaFreeAsync(void *devPtr, cudaStream_t) { return cudaFree(devPtr); }

cudaError_t cudaMemset(void *devPtr, int value, size_t count) {
  if (count > 0 && !emu::findAllocation(devPtr, count)) {
    emu::fault("cudaMemset of " + std::to_string(count) + " bytes outside an allocation");
    return cudaErrorInvalidValue;
  }
  std::memset(devPtr, value, count);
  return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void *devPtr, int value, size_t count, cudaStream_t) {
  return cudaMemset(devPtr, value, count);
}

cudaError_t cudaMemcpy(void *dst, const void *src, size_t count, cudaMemcpyKind kind) {
  const bool dstDevice = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
  const bool srcDevice = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
  if (count > 0 &&
      ((dstDevice && !emu::findAllocation(dst, count)) || (srcDevice && !emu::findAllocation(src, count)))) {
    emu::fault("cudaMemcpy of " + std::to_string(count) + " bytes outside an allocation");
    return cudaErrorInvalidValue;
  }
  std::memmove(dst, src, count);
  return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t count, cudaMemcpyKind kind, cudaStream_t) {
  return cudaMemcpy(dst, src, count, kind);
}

// ---- ThreadSanitizer's hooks --------------------------------------------------------------------------
// build.mjs compiles the kernels with -fsanitize=thread, so the compiler calls these before every
// load and store that other threads could see (not those of registers and private locals). The
// TSan runtime is not linked: these are what the instrumented code calls, and they feed the race
// detector (recordAccess), which ignores everything but device memory touched inside a kernel.
// Function entry and exit are not instrumented with g++ (build.mjs); the empty hooks serve clang.
#define EMU_TSAN_ACCESS(bytes)                                                                   \
  void __tsan_read##bytes(void *p) { emu::recordAccess(p, bytes, emu::Access::Read); }           \
  void __tsan_write##bytes(void *p) { emu::recordAccess(p, bytes, emu::Access::Write); }         \
  void __tsan_unaligned_read##bytes(void *p) { emu::recordAccess(p, bytes, emu::Access::Read); } \
  void __tsan_unaligned_write##bytes(void *p) { emu::recordAccess(p, bytes, emu::Access::Write); }
extern "C" {
void __tsan_init() {}
void __tsan_func_entry(void *) {}
void __tsan_func_exit() {}
EMU_TSAN_ACCESS(1)
EMU_TSAN_ACCESS(2)
EMU_TSAN_ACCESS(4)
EMU_TSAN_ACCESS(8)
EMU_TSAN_ACCESS(16)
void __tsan_read_range(void *p, unsigned long bytes) { emu::recordAccess(p, bytes, emu::Access::Read); }
void __tsan_write_range(void *p, unsigned long bytes) { emu::recordAccess(p, bytes, emu::Access::Write); }
}
