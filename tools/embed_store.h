// The output side of `dinov3 embed`: rows appended to a resumable partial state, then published
// atomically as a .npy (or .safetensors) plus an index of input paths.
//
// State folder <out>.partial/: inputs.txt (the full input list, to check a resume uses the same one),
// rows.f32 (finished rows, raw float32), done.txt (one line per input handled, in order:
// "ok\t<path>" or "skip\t<path>\t<reason>"). Rows are flushed to disk before their done lines, so after a
// kill at any moment rows.f32 holds at least as many rows as done.txt names, and a resume truncates both
// to the last complete line.
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "dinov3/status.h"
#include "dinov3/tensor.h"

namespace dinov3::cli {

struct DoneEntry {
  std::string path;
  bool ok = true;
  std::string reason;  // why it was skipped
};

class EmbedStore {
 public:
  ~EmbedStore();
  // Opens (resume) or creates the partial state for `out`. `row_shape` is one row's shape ([D], [T, D]...).
  static Result<std::unique_ptr<EmbedStore>> open(const std::string& out, const std::vector<std::string>& inputs,
                                                  const Shape& row_shape, bool resume, bool overwrite);

  const std::vector<DoneEntry>& done() const { return done_; }
  size_t rows() const { return rows_; }
  // Appends finished rows (n * row_numel floats), then records the inputs they and the skips belong to.
  Status append(const float* data, size_t n_rows, const std::vector<DoneEntry>& entries);
  // Writes <out> (npy or safetensors by `format`) and its index atomically, then removes the partial state.
  Status publish(const std::string& format);

  static std::string index_path(const std::string& out);
  static std::string partial_dir(const std::string& out);

 private:
  EmbedStore() = default;
  std::string out_, dir_;
  Shape row_shape_;
  int64_t row_numel_ = 0;
  std::vector<DoneEntry> done_;
  size_t rows_ = 0;
  int rows_fd_ = -1, done_fd_ = -1;
};

// The .npy v1.0 header for a C-order float32 array of `shape` (padded so the data is 64-byte aligned).
std::string npy_header(const Shape& shape);

}  // namespace dinov3::cli
