// main() of every test executable: GoogleTest's, plus --dinov3_list_labels, which prints one line per
// test, "<full name>\t<label>,<label>", for the build to turn into CTest tests (tests/CMakeLists.txt).
#include <gtest/gtest.h>

#include <cstdio>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "test_labels.h"

namespace dinov3::test {
namespace {

using Labels = std::vector<std::string>;

std::map<std::string, Labels>& suite_labels() {
  static std::map<std::string, Labels> m;
  return m;
}
std::map<std::string, Labels>& test_labels() {
  static std::map<std::string, Labels> m;
  return m;
}

const std::set<std::string> kKnownLabels = {"unit", "golden", "hostile", "slow", "fuzz"};

// "Instance/Suite" -> "Suite", "Name/param" -> "Name": labels are given for the code, not its instances.
std::string declared_suite(const std::string& suite) { return suite.substr(suite.find('/') + 1); }
std::string declared_test(const std::string& test) { return test.substr(0, test.find('/')); }

int list_labels() {
  const testing::UnitTest& unit = *testing::UnitTest::GetInstance();
  int missing = 0;
  for (int i = 0; i < unit.total_test_suite_count(); ++i) {
    const testing::TestSuite& suite = *unit.GetTestSuite(i);
    for (int j = 0; j < suite.total_test_count(); ++j) {
      const testing::TestInfo& info = *suite.GetTestInfo(j);
      const std::string s = declared_suite(info.test_suite_name()), t = declared_test(info.name());
      // The most specific declaration wins: this instance, then the test, then its suite.
      const Labels* labels = nullptr;
      for (const std::string& key : {s + "." + info.name(), s + "." + t}) {
        if (auto it = test_labels().find(key); labels == nullptr && it != test_labels().end()) labels = &it->second;
      }
      if (auto it = suite_labels().find(s); labels == nullptr && it != suite_labels().end()) labels = &it->second;
      bool known = labels != nullptr && !labels->empty();
      std::string joined;
      for (size_t k = 0; labels != nullptr && k < labels->size(); ++k) {
        known = known && kKnownLabels.count((*labels)[k]) > 0;
        joined += (k ? "," : "") + (*labels)[k];
      }
      if (!known) {
        std::fprintf(stderr,
                     "%s:%d: test %s.%s has %s label: give its suite one with DINOV3_SUITE_LABELS(%s, \"unit\") "
                     "(labels: unit, golden, hostile, slow, fuzz; see tests/test_labels.h)\n",
                     info.file(), info.line(), info.test_suite_name(), info.name(), labels ? "an unknown" : "no",
                     s.c_str());
        ++missing;
        continue;
      }
      std::printf("%s.%s\t%s\n", info.test_suite_name(), info.name(), joined.c_str());
    }
  }
  return missing == 0 ? 0 : 1;
}

}  // namespace

bool register_suite_labels(const char* suite, std::initializer_list<const char*> labels) {
  suite_labels()[suite] = Labels(labels.begin(), labels.end());
  return true;
}

bool register_test_labels(const char* suite, const char* test, std::initializer_list<const char*> labels) {
  test_labels()[std::string(suite) + "." + test] = Labels(labels.begin(), labels.end());
  return true;
}

}  // namespace dinov3::test

int main(int argc, char** argv) {
  testing::InitGoogleTest(&argc, argv);
  for (int i = 1; i < argc; ++i)
    if (std::string(argv[i]) == "--dinov3_list_labels") return dinov3::test::list_labels();
  return RUN_ALL_TESTS();
}
