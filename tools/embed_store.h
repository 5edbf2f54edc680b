// The output side of `dinov3 embed`: rows appended to a resumable partial state, then published as a
// .npy (or .safetensors) together with an index of input paths, both or neither.
//
// State folder <out>.partial/:
//   inputs.txt  the full input list, one path per line (to check a resume uses the same one)
//   shape.txt   one row's shape, "[384]"
//   rows.f32    finished rows, raw float32
//   done.txt    one line per input handled, in input order: "ok\t<path>" or "skip\t<path>\t<reason>"
// Paths and reasons are written with escape_line (dinov3/collection.h), so any byte a file name can hold
// round-trips, newlines and tabs included; the index beside the output is written the same way. Rows are
// flushed to disk before their done lines, so after a kill at any moment rows.f32 holds at least as many
// rows as done.txt names; a resume keeps the complete lines, checks each names the input at its position,
// and truncates both files to them.
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "dinov3/collection.h"
#include "dinov3/status.h"
#include "dinov3/tensor.h"

namespace dinov3::cli {

struct DoneEntry {
  std::string path;
  bool ok = true;
  std::string reason;  // why it was skipped
};

// Where an interrupted run stopped, as its partial state records it.
struct ResumePoint {
  std::vector<DoneEntry> done;  // the inputs handled, in input order
  size_t rows = 0;              // those that produced a row
  size_t done_bytes = 0;        // length of done.txt's complete lines
};

// Reads a partial state from its files' contents (`rows_bytes`: the size of rows.f32) for a run over
// `inputs` with rows of `row_shape`. Errors name `dir` and say what differs or is damaged.
Result<ResumePoint> read_resume_point(const std::string& dir, std::string_view inputs_txt, std::string_view shape_txt,
                                      std::string_view done_txt, uint64_t rows_bytes,
                                      const std::vector<std::string>& inputs, const Shape& row_shape);

class EmbedStore {
 public:
  ~EmbedStore();
  // Refuses an output a run may not write before any work is done: a folder (or a name ending in '/'),
  // an existing output or index without `overwrite`, an interrupted run's state without `resume` or
  // `overwrite`.
  static Status check_output(const std::string& out, bool resume, bool overwrite);
  // Opens (resume) or creates the partial state for `out`. `row_shape` is one row's shape ([D], [T, D]...).
  static Result<std::unique_ptr<EmbedStore>> open(const std::string& out, const std::vector<std::string>& inputs,
                                                  const Shape& row_shape, bool resume, bool overwrite);

  const std::vector<DoneEntry>& done() const { return done_; }
  size_t rows() const { return rows_; }
  // Appends finished rows (n * row_numel floats), then records the inputs they and the skips belong to.
  Status append(const float* data, size_t n_rows, const std::vector<DoneEntry>& entries);
  // Writes <out> (npy or safetensors by `format`) and its index, moves both into place together, then
  // removes the partial state. On failure neither is replaced and the partial state stays.
  Status publish(const std::string& format);

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

}  // namespace dinov3::cli
