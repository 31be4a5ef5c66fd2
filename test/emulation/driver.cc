// The kernel emulation test: runs the CUDA backend's ops (csrc/ops/*/*.cu) on the emulator and
// compares them with the CPU backend (the oracle) on random inputs over the option space. The
// cases live in cases/<op>.cc, one file per op, each registered with EMU_CASES (harness.h). One JSON line per case on
// stdout:
//   {"group": ..., "name": ..., "pass": bool, "ms": ..., "checks": [{"what", "pass", "rel",
//    "elem", "tol", "tolElem", "detail"}...], "faults": [...]}
// and a final {"summary": ...} line. Exit status 0 when every case passed.
//
// What a scan case checks:
//  - forward: out and lastState against the CPU backend (||got - ref|| / ||ref|| within
//    docs/ARCHITECTURE.md's tolerance for the element type, and every element within a looser bound scaled
//    by max(|ref_i|, rms(ref)), so that a few wrong elements cannot hide in a long tensor); NaN
//    anywhere fails (outputs start as NaN, so an element never written fails too);
//  - the forward again under another schedule (threads and blocks in reverse order, one warp at a
//    time; see emu.h): the same bits, checkpoints included;
//  - backward, default mode, against the CPU backend: every gradient;
//  - backward, deterministic mode, against the CPU backend, and again under a random schedule:
//    the same bits (deterministic means independent of the order blocks run in);
//  - default and deterministic agree bit for bit on every gradient that does not go through float
//    atomics (all but the input-dependent dB / dC);
//  - no fault of the emulator (launch rejected, misaligned load, divergent collective, deadlock,
//    write outside an allocation or its shared memory), no error returned, no scratch leaked.
// A step case runs two updates in a row on both backends and compares y and the whole state
// buffer; rows of padding must give y = 0 and slots no row names must keep their bits.
//
//   emulate [--filter TEXT] [--list] [--groups] [--shard I/N]
//     --list prints "group: name" per case; --groups prints each group once, in order (the vitest
//     test makes one test per group from it).
#include <chrono>
#include <cstdlib>
#include <set>

#include "cpu/cpu_backend.h"
#include "harness.h"
#include "selftest.h"

namespace emutest {
std::vector<CaseEntry> &caseRegistry() {
  static std::vector<CaseEntry> cases;
  return cases;
}
CaseSource::CaseSource(void (*add)(std::vector<CaseEntry> &)) { add(caseRegistry()); }
}  // namespace emutest

using namespace emutest;

int main(int argc, char **argv) {
  // The oracle's instruction set, unless the caller chose one: the baseline kernels round the same
  // way on every x86-64 machine, so the comparisons (and their margins) do not depend on whether
  // the CI machine has AVX2 or AVX-512.
  setenv("SELECTIVE_SCAN_CPU_ISA", "baseline", 0);
  std::string filter;
  bool list = false, groups = false;
  int shard = 0, shards = 1;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--filter" && i + 1 < argc)
      filter = argv[++i];
    else if (a == "--list")
      list = true;
    else if (a == "--groups")
      groups = true;
    else if (a == "--shard" && i + 1 < argc && std::sscanf(argv[++i], "%d/%d", &shard, &shards) == 2) {
    } else {
      std::fprintf(stderr, "usage: %s [--filter TEXT] [--list] [--groups] [--shard I/N]\n", argv[0]);
      return 2;
    }
  }

  // Every case, as a (group, name, run) triple; the shard takes every shards-th one.
  std::vector<CaseEntry> entries;
  entries.push_back({"emulator self-test", "emulator self-test", [] {
                       CaseResult r;
                       r.group = r.name = "emulator self-test";
                       std::vector<emutest::SelfTestResult> results;
                       emutest::runSelfTests(results);
                       for (const auto &t : results) {
                         Check c;
                         c.what = t.name;
                         c.pass = t.pass;
                         c.detail = t.detail;
                         r.checks.push_back(c);
                       }
                       return r;
                     }});
  entries.insert(entries.end(), caseRegistry().begin(), caseRegistry().end());
  if (groups) {
    std::set<std::string> seen;
    for (const CaseEntry &e : entries)
      if (seen.insert(e.group).second) std::printf("%s\n", e.group.c_str());
    return 0;
  }

  int run = 0, failed = 0;
  const auto start = std::chrono::steady_clock::now();
  for (size_t i = 0; i < entries.size(); ++i) {
    const CaseEntry &e = entries[i];
    if (!filter.empty() && (e.group + " " + e.name).find(filter) == std::string::npos) continue;
    if (int(i % size_t(shards)) != shard) continue;
    if (list) {
      std::printf("%s: %s\n", e.group.c_str(), e.name.c_str());
      continue;
    }
    std::fprintf(stderr, "case: %s: %s\n", e.group.c_str(), e.name.c_str());  // to attribute sanitizer reports
    const auto t0 = std::chrono::steady_clock::now();
    CaseResult r = e.run();
    r.ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    print(r);
    ++run;
    if (!r.pass()) ++failed;
  }
  if (list) return 0;
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const emu::Stats st = emu::stats();
  std::printf(
      "{\"summary\":{\"cases\":%d,\"failed\":%d,\"seconds\":%.2f,\"launches\":%llu,\"blocks\":%llu,"
      "\"threads\":%llu,\"collectives\":%llu,\"vectorLoads\":%llu,\"cpuIsa\":%s}}\n",
      run, failed, seconds, static_cast<unsigned long long>(st.launches), static_cast<unsigned long long>(st.blocks),
      static_cast<unsigned long long>(st.threads), static_cast<unsigned long long>(st.collectives),
      static_cast<unsigned long long>(st.vectorLoads), jsonString(cpu::activeIsaName()).c_str());
  return failed == 0 ? 0 : 1;
}
