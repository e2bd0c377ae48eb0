// main() of every GoogleTest executable: the tests run with TMPDIR pointing at a folder of
// their own (made under the machine's temp folder, removed at exit), so the temp files they
// and the processes they start make never pile up in /tmp, and parallel test processes never
// meet in it.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <string>
#include <system_error>

int main(int argc, char** argv) {
  testing::InitGoogleTest(&argc, argv);
  std::string tmpl = (std::filesystem::temp_directory_path() / "dsv3_test_XXXXXX").string();
  const char* dir = mkdtemp(tmpl.data());
  if (dir != nullptr) setenv("TMPDIR", dir, 1);
  const int rc = RUN_ALL_TESTS();
  if (dir != nullptr) {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  return rc;
}
