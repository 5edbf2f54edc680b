// The `embed --resume` state reader on any state: inputs.txt, shape.txt, done.txt and rows.f32 (only its
// length matters), split at NUL bytes. The resumed run's inputs are what inputs.txt lists, so the reader
// gets past its first check and reads done.txt; what it accepts must name those inputs in order and hold
// the rows it counts. Also: escape_line keeps any bytes on one line and gives them back.
#include "embed_store.h"
#include "cli_common.h"
#include "fuzz_util.h"

using namespace dinov3;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view all(reinterpret_cast<const char*>(data), size);
  const std::string escaped = escape_line(all);
  fuzz::expect(escaped.find_first_of(std::string_view("\n\r\t\0", 4)) == std::string::npos,
               "escape_line leaves a line break, tab or NUL");
  std::string back;
  fuzz::expect(unescape_line(escaped, &back) && back == all, "escape_line does not round-trip");

  const std::vector<std::string_view> parts = fuzz::split(data, size, 4);
  Result<std::vector<std::string>> inputs = parse_path_lines(parts[0]);
  if (!inputs.ok()) return 0;
  const Shape row_shape{4};
  Result<cli::ResumePoint> point = cli::read_resume_point("state", path_lines(*inputs), parts[1], parts[2],
                                                          parts[3].size(), *inputs, row_shape);
  if (!point.ok()) return 0;
  fuzz::expect(point->done.size() <= inputs->size(), "more inputs done than given");
  size_t rows = 0;
  for (size_t i = 0; i < point->done.size(); ++i) {
    fuzz::expect(point->done[i].path == (*inputs)[i], "a done entry names another input");
    rows += point->done[i].ok ? 1 : 0;
  }
  fuzz::expect(rows == point->rows, "the row count differs from the ok entries");
  fuzz::expect(point->rows * 4 * sizeof(float) <= parts[3].size(), "rows counted that rows.f32 does not hold");
  fuzz::expect(point->done_bytes <= parts[2].size(), "done.txt kept past its end");
  return 0;
}
