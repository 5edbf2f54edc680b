// Every test says what kind of test it is, where it is defined, as its CTest label(s):
//   unit     one function, class or command against an independent computation
//   golden   end to end against timm's numbers in ../shared/fixtures
//   hostile  broken or malicious input must give a clear error, never a crash
//   slow     a minute or more under the sanitizers; left out of the sanitizer run (scripts/test.sh)
//   fuzz     replays fuzz corpora and reproducers (the fuzz/ harnesses)
// A suite's labels cover all its tests, and a test may give its own instead:
//   DINOV3_SUITE_LABELS(Infer, "golden");
//   DINOV3_TEST_LABELS(LowpCli, AccuracyBf16Passes, "golden", "slow");
// For TEST_P suites name the fixture class (CpuBackendTest), not the instantiation; one instance of a
// parameterized test may be labelled apart: DINOV3_TEST_LABELS(GoldenTest, MatchesTimm/vits16_ref, "slow").
// Each test executable
// lists its tests with their labels (--dinov3_list_labels, tests/test_main.cpp) and the build turns that
// list into CTest tests; a test without a label, or with an unknown one, fails the build, naming it.
#pragma once

#include <initializer_list>

#include "dinov3/status.h"  // DINOV3_CONCAT

namespace dinov3::test {

bool register_suite_labels(const char* suite, std::initializer_list<const char*> labels);
bool register_test_labels(const char* suite, const char* test, std::initializer_list<const char*> labels);

}  // namespace dinov3::test

#define DINOV3_SUITE_LABELS(suite_name, ...)                                         \
  [[maybe_unused]] static const bool DINOV3_CONCAT(dinov3_suite_labels_, __LINE__) = \
      ::dinov3::test::register_suite_labels(#suite_name, {__VA_ARGS__})
#define DINOV3_TEST_LABELS(suite_name, test_name, ...)                              \
  [[maybe_unused]] static const bool DINOV3_CONCAT(dinov3_test_labels_, __LINE__) = \
      ::dinov3::test::register_test_labels(#suite_name, #test_name, {__VA_ARGS__})
