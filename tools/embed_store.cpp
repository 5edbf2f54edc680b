#include "embed_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string_view>

#include "cli_common.h"
#include "dinov3/files.h"
#include "dinov3/tensor_file.h"

namespace dinov3::cli {

namespace {

namespace fs = std::filesystem;

Status io_error(const std::string& what) { return make_error(ErrorCode::kIoError, what + ": " + std::strerror(errno)); }

Status write_all(int fd, const void* data, size_t size, const std::string& what) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t n = ::write(fd, p, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return io_error(what);
    }
    p += n;
    size -= static_cast<size_t>(n);
  }
  return {};
}

// A state file's contents; an error naming it when it cannot be read (a resume needs every one).
Result<std::string> read_state_file(const std::string& path) {
  if (!file_exists(path))
    return make_error(ErrorCode::kFormatError, path + ": missing from the interrupted run's state (--overwrite starts over)");
  // Regular files only (a FIFO would block, /dev/zero never end); a state file is as large as it is.
  Result<std::string> text = read_text_file(path, std::numeric_limits<size_t>::max());
  if (!text.ok()) return make_error(ErrorCode::kFormatError, text.status().message() + " (--overwrite starts over)");
  return text;
}

// The files a run keeps in its state folder (write_bytes_atomic's temporary files start with their names).
constexpr std::string_view kInputsFile = "inputs.txt", kShapeFile = "shape.txt", kDoneFile = "done.txt",
                           kRowsFile = "rows.f32";
constexpr std::array<std::string_view, 4> kStateFiles = {kInputsFile, kShapeFile, kDoneFile, kRowsFile};

// `dir`/`name`.
std::string in_dir(const std::string& dir, std::string_view name) { return dir + "/" + std::string(name); }

// A state folder holds only a run's state files, each a regular file: anything else (a user's folder that
// happens to be called OUT.partial, a FIFO in place of rows.f32) is neither resumed nor deleted.
Status check_state_folder(const std::string& dir) {
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    const bool ours = std::any_of(kStateFiles.begin(), kStateFiles.end(), [&](std::string_view f) {
      return name == f || (name.size() > f.size() && name.compare(0, f.size(), f) == 0 && name[f.size()] == '.');
    });
    std::error_code type_ec;
    if (!ours || !it->is_regular_file(type_ec)) {
      return make_error(ErrorCode::kInvalidArgument, dir + ": holds " + name + ", which is not an interrupted run's " +
                                                         "state: the folder is left as it is (move it, or choose " +
                                                         "another output)");
    }
  }
  if (ec) return make_error(ErrorCode::kIoError, dir + ": cannot list: " + ec.message());
  return {};
}

Status damaged(const std::string& dir, const std::string& what) {
  return make_error(ErrorCode::kFormatError, dir + ": the interrupted run's state is damaged: " + what +
                                                 " (--overwrite starts over)");
}

// Splits a done.txt line at its tabs (escaped fields hold none).
std::vector<std::string_view> fields_of(std::string_view line) {
  std::vector<std::string_view> fields;
  for (size_t begin = 0;;) {
    const size_t tab = line.find('\t', begin);
    fields.push_back(line.substr(begin, tab == std::string_view::npos ? std::string_view::npos : tab - begin));
    if (tab == std::string_view::npos) return fields;
    begin = tab + 1;
  }
}

}  // namespace

Result<ResumePoint> read_resume_point(const std::string& dir, std::string_view inputs_txt, std::string_view shape_txt,
                                      std::string_view done_txt, uint64_t rows_bytes,
                                      const std::vector<std::string>& inputs, const Shape& row_shape) {
  if (inputs_txt != path_lines(inputs)) {
    return make_error(ErrorCode::kInvalidArgument, dir + ": the inputs differ from the interrupted run's; give the "
                                                         "same inputs, or --overwrite to start over");
  }
  if (shape_txt != shape_to_string(row_shape)) {
    return make_error(ErrorCode::kInvalidArgument, dir + ": the interrupted run wrote rows of shape " +
                                                       escape_line(shape_txt.substr(0, 64)) + ", this one " +
                                                       shape_to_string(row_shape));
  }
  ResumePoint point;
  // Complete lines only: a kill may have cut the last one.
  const size_t last_newline = done_txt.rfind('\n');
  point.done_bytes = last_newline == std::string_view::npos ? 0 : last_newline + 1;
  for (size_t begin = 0; begin < point.done_bytes;) {
    const size_t end = done_txt.find('\n', begin);
    const std::vector<std::string_view> f = fields_of(done_txt.substr(begin, end - begin));
    begin = end + 1;
    const std::string line = "done.txt line " + std::to_string(point.done.size() + 1);
    DoneEntry e;
    e.ok = f[0] == "ok";
    if (!(e.ok && f.size() == 2) && !(f[0] == "skip" && f.size() == 3))
      return damaged(dir, line + " is neither \"ok<TAB>path\" nor \"skip<TAB>path<TAB>reason\"");
    if (!unescape_line(f[1], &e.path) || (!e.ok && !unescape_line(f[2], &e.reason)))
      return damaged(dir, line + " holds a malformed escape");
    const size_t index = point.done.size();
    if (index >= inputs.size() || e.path != inputs[index])
      return damaged(dir, line + " names " + escape_line(e.path) + ", not the input at that position");
    point.rows += e.ok ? 1 : 0;
    point.done.push_back(std::move(e));
  }
  const uint64_t row_bytes = static_cast<uint64_t>(shape_numel(row_shape)) * sizeof(float);
  if (row_bytes == 0 || rows_bytes / row_bytes < point.rows)
    return damaged(dir, "rows.f32 holds fewer rows than done.txt names");
  return point;
}

std::string EmbedStore::partial_dir(const std::string& out) { return out + ".partial"; }

EmbedStore::~EmbedStore() {
  if (rows_fd_ >= 0) ::close(rows_fd_);
  if (done_fd_ >= 0) ::close(done_fd_);
}

Status EmbedStore::check_output(const std::string& out, bool resume, bool overwrite) {
  DINOV3_RETURN_IF_ERROR(check_embed_output(out, /*allow_existing=*/true));
  std::error_code ec;
  const std::string dir = partial_dir(out);
  const bool have_partial = fs::exists(dir, ec);
  if (have_partial && !fs::is_directory(dir, ec))
    return make_error(ErrorCode::kInvalidArgument, dir + ": exists and is not an interrupted run's state folder");
  if (have_partial && (resume || overwrite)) DINOV3_RETURN_IF_ERROR(check_state_folder(dir));
  if (have_partial && !resume && !overwrite) {
    return make_error(ErrorCode::kInvalidArgument, dir + ": an interrupted run exists (pass --resume to continue it, "
                                                         "or --overwrite to start over)");
  }
  // A resumed run may finish what the interrupted one was allowed to write; anything else needs --overwrite.
  return check_embed_output(out, /*allow_existing=*/overwrite || (resume && have_partial));
}

Result<std::unique_ptr<EmbedStore>> EmbedStore::open(const std::string& out, const std::vector<std::string>& inputs,
                                                      const Shape& row_shape, bool resume, bool overwrite) {
  DINOV3_RETURN_IF_ERROR(check_output(out, resume, overwrite));
  std::unique_ptr<EmbedStore> s(new EmbedStore());
  s->out_ = out;
  s->dir_ = partial_dir(out);
  s->row_shape_ = row_shape;
  s->row_numel_ = shape_numel(row_shape);
  std::error_code ec;
  const bool have_partial = fs::exists(s->dir_, ec);
  if (have_partial && !resume) fs::remove_all(s->dir_, ec);  // --overwrite (check_output refused otherwise)
  const std::string rows_path = in_dir(s->dir_, kRowsFile), done_path = in_dir(s->dir_, kDoneFile);
  if (resume && have_partial) {
    DINOV3_ASSIGN_OR_RETURN(const std::string inputs_txt, read_state_file(in_dir(s->dir_, kInputsFile)));
    DINOV3_ASSIGN_OR_RETURN(const std::string shape_txt, read_state_file(in_dir(s->dir_, kShapeFile)));
    DINOV3_ASSIGN_OR_RETURN(const std::string done_txt, read_state_file(done_path));
    const uintmax_t rows_bytes = fs::file_size(rows_path, ec);
    if (ec) return damaged(s->dir_, "rows.f32 cannot be read: " + ec.message());
    DINOV3_ASSIGN_OR_RETURN(ResumePoint point,
                            read_resume_point(s->dir_, inputs_txt, shape_txt, done_txt, rows_bytes, inputs, row_shape));
    s->done_ = std::move(point.done);
    s->rows_ = point.rows;
    fs::resize_file(rows_path, s->rows_ * static_cast<uintmax_t>(s->row_numel_) * sizeof(float), ec);
    if (!ec) fs::resize_file(done_path, point.done_bytes, ec);
    if (ec) return make_error(ErrorCode::kIoError, s->dir_ + ": cannot trim the partial state: " + ec.message());
  } else {
    fs::create_directories(s->dir_, ec);
    if (ec) return make_error(ErrorCode::kIoError, s->dir_ + ": cannot create: " + ec.message());
    const std::string input_list = path_lines(inputs), shape_text = shape_to_string(row_shape);
    for (const auto& [name, text] : {std::pair{kInputsFile, &input_list}, std::pair{kShapeFile, &shape_text}})
      DINOV3_RETURN_IF_ERROR(write_bytes_atomic(in_dir(s->dir_, name), /*overwrite=*/true, *text));
  }
  s->rows_fd_ = ::open(rows_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  s->done_fd_ = ::open(done_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (s->rows_fd_ < 0 || s->done_fd_ < 0) return io_error(s->dir_ + ": cannot open the partial state");
  return s;
}

Status EmbedStore::append(const float* data, size_t n_rows, const std::vector<DoneEntry>& entries) {
  if (n_rows > 0) {
    DINOV3_RETURN_IF_ERROR(write_all(rows_fd_, data, n_rows * static_cast<size_t>(row_numel_) * sizeof(float), in_dir(dir_, kRowsFile)));
    if (::fdatasync(rows_fd_) != 0) return io_error(in_dir(dir_, kRowsFile));
  }
  std::string lines;
  for (const auto& e : entries) {
    lines += (e.ok ? "ok\t" + escape_line(e.path) : "skip\t" + escape_line(e.path) + "\t" + escape_line(e.reason)) + "\n";
  }
  DINOV3_RETURN_IF_ERROR(write_all(done_fd_, lines.data(), lines.size(), in_dir(dir_, kDoneFile)));
  if (::fdatasync(done_fd_) != 0) return io_error(in_dir(dir_, kDoneFile));
  rows_ += n_rows;
  done_.insert(done_.end(), entries.begin(), entries.end());
  return {};
}

Status EmbedStore::publish(const std::string& format) {
  Shape shape = row_shape_;
  shape.insert(shape.begin(), static_cast<int64_t>(rows_));
  const std::string rows_path = in_dir(dir_, kRowsFile);
  const size_t rows_bytes = rows_ * static_cast<size_t>(row_numel_) * sizeof(float);
  std::vector<std::string> paths;
  for (const auto& e : done_)
    if (e.ok) paths.push_back(e.path);

  const ProduceFn produce_rows = [&](const WriteFn& w) -> Status {
    std::ifstream in(rows_path, std::ios::binary);
    std::vector<char> buf(1 << 20);
    size_t total = 0;
    while (in && total < rows_bytes) {
      in.read(buf.data(), static_cast<std::streamsize>(std::min(buf.size(), rows_bytes - total)));
      const auto n = static_cast<size_t>(in.gcount());
      if (n == 0) break;
      DINOV3_RETURN_IF_ERROR(w(buf.data(), n));
      total += n;
    }
    if (total != rows_bytes) return make_error(ErrorCode::kIoError, rows_path + ": holds fewer rows than recorded");
    return {};
  };
  // Both files are written in full before either replaces anything: a disk that fills up leaves the
  // previous output and index as they were.
  if (format == "safetensors") {
    Tensor all(shape);
    DINOV3_RETURN_IF_ERROR(produce_rows([&, at = size_t{0}](const void* data, size_t size) mutable -> Status {
      std::memcpy(reinterpret_cast<char*>(all.ptr()) + at, data, size);
      at += size;
      return {};
    }));
    const std::string index = path_lines(paths);
    DINOV3_RETURN_IF_ERROR(write_files_together(
        {{out_, [&](const WriteFn& w) { return write_safetensors(w, {{"embeddings", &all}}, {}); }},
         {embed_index_path(out_), [&](const WriteFn& w) { return w(index.data(), index.size()); }}},
        /*overwrite=*/true));
  } else {
    DINOV3_RETURN_IF_ERROR(publish_npy_with_index(out_, shape, produce_rows, paths, /*overwrite=*/true));
  }
  std::error_code ec;
  ::close(rows_fd_);
  ::close(done_fd_);
  rows_fd_ = done_fd_ = -1;
  fs::remove_all(dir_, ec);
  return {};
}

}  // namespace dinov3::cli
