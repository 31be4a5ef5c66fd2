// The emulator's own tests (selftest.cu), run by the driver as one more group of cases.
#pragma once
#include <string>
#include <vector>

namespace emutest {

struct SelfTestResult {
  std::string name;
  bool pass;
  std::string detail;
};

void runSelfTests(std::vector<SelfTestResult> &results);

}  // namespace emutest
