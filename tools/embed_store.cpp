#include "embed_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "dinov3/tensor_file.h"
#include "dinov3/files.h"

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

std::string join_lines(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += x + "\n";
  return s;
}

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

std::string npy_header(const Shape& shape) {
  // Python's tuple spelling: (N,) for one dimension, (N, D) for two.
  std::string dims;
  for (size_t i = 0; i < shape.size(); ++i) dims += (i ? ", " : "") + std::to_string(shape[i]);
  if (shape.size() == 1) dims += ",";
  std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + dims + "), }";
  const size_t unpadded = 10 + dict.size() + 1;  // magic(6) + version(2) + length(2) + dict + '\n'
  dict.append((64 - unpadded % 64) % 64, ' ');
  dict += '\n';
  std::string h = "\x93NUMPY";
  h += '\x01';
  h += '\x00';
  h += static_cast<char>(dict.size() & 0xff);
  h += static_cast<char>((dict.size() >> 8) & 0xff);
  return h + dict;
}

std::string EmbedStore::index_path(const std::string& out) {
  const fs::path p(out);
  return (p.parent_path() / (p.stem().string() + ".index.txt")).string();
}

std::string EmbedStore::partial_dir(const std::string& out) { return out + ".partial"; }

EmbedStore::~EmbedStore() {
  if (rows_fd_ >= 0) ::close(rows_fd_);
  if (done_fd_ >= 0) ::close(done_fd_);
}

Result<std::unique_ptr<EmbedStore>> EmbedStore::open(const std::string& out, const std::vector<std::string>& inputs,
                                                      const Shape& row_shape, bool resume, bool overwrite) {
  std::unique_ptr<EmbedStore> s(new EmbedStore());
  s->out_ = out;
  s->dir_ = partial_dir(out);
  s->row_shape_ = row_shape;
  s->row_numel_ = shape_numel(row_shape);
  std::error_code ec;
  const bool have_partial = fs::exists(s->dir_, ec);
  if (!overwrite && !resume && file_exists(out)) {
    return make_error(ErrorCode::kInvalidArgument, out + ": already exists (pass --overwrite to replace it)");
  }
  if (have_partial && !resume) {
    if (!overwrite) {
      return make_error(ErrorCode::kInvalidArgument, s->dir_ + ": an interrupted run exists (pass --resume to continue it, "
                                                              "or --overwrite to start over)");
    }
    fs::remove_all(s->dir_, ec);
  }
  const std::string input_list = join_lines(inputs);
  const std::string rows_path = s->dir_ + "/rows.f32", done_path = s->dir_ + "/done.txt";
  if (resume && fs::exists(s->dir_, ec)) {
    if (read_all(s->dir_ + "/inputs.txt") != input_list) {
      return make_error(ErrorCode::kInvalidArgument, s->dir_ + ": the inputs differ from the interrupted run's; give the "
                                                              "same inputs, or --overwrite to start over");
    }
    if (read_all(s->dir_ + "/shape.txt") != shape_to_string(row_shape)) {
      return make_error(ErrorCode::kInvalidArgument, s->dir_ + ": the interrupted run wrote rows of shape " +
                                                              read_all(s->dir_ + "/shape.txt") + ", this one " +
                                                              shape_to_string(row_shape));
    }
    // Keep complete lines only; a kill may have cut the last one.
    std::string text = read_all(done_path);
    text.resize(text.rfind('\n') == std::string::npos ? 0 : text.rfind('\n') + 1);
    std::istringstream lines(text);
    for (std::string line; std::getline(lines, line);) {
      DoneEntry e;
      const auto t1 = line.find('\t');
      e.ok = line.compare(0, t1, "ok") == 0;
      const auto t2 = line.find('\t', t1 + 1);
      e.path = line.substr(t1 + 1, t2 == std::string::npos ? std::string::npos : t2 - t1 - 1);
      if (!e.ok && t2 != std::string::npos) e.reason = line.substr(t2 + 1);
      if (e.ok) ++s->rows_;
      s->done_.push_back(e);
    }
    const uintmax_t need = s->rows_ * static_cast<uintmax_t>(s->row_numel_) * sizeof(float);
    if (fs::file_size(rows_path, ec) < need) {
      return make_error(ErrorCode::kFormatError, rows_path + ": holds fewer rows than done.txt names (the state is damaged; "
                                                             "--overwrite starts over)");
    }
    fs::resize_file(rows_path, need, ec);
    fs::resize_file(done_path, text.size(), ec);
    if (ec) return make_error(ErrorCode::kIoError, s->dir_ + ": cannot trim the partial state: " + ec.message());
  } else {
    fs::create_directories(s->dir_, ec);
    if (ec) return make_error(ErrorCode::kIoError, s->dir_ + ": cannot create: " + ec.message());
    for (const auto& [name, text] : {std::pair{"inputs.txt", input_list}, std::pair{"shape.txt", shape_to_string(row_shape)}}) {
      DINOV3_RETURN_IF_ERROR(write_file_atomic(s->dir_ + "/" + name, true, [&](const WriteFn& w) { return w(text.data(), text.size()); }));
    }
  }
  s->rows_fd_ = ::open(rows_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  s->done_fd_ = ::open(done_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (s->rows_fd_ < 0 || s->done_fd_ < 0) return io_error(s->dir_ + ": cannot open the partial state");
  return s;
}

Status EmbedStore::append(const float* data, size_t n_rows, const std::vector<DoneEntry>& entries) {
  if (n_rows > 0) {
    DINOV3_RETURN_IF_ERROR(write_all(rows_fd_, data, n_rows * static_cast<size_t>(row_numel_) * sizeof(float), dir_ + "/rows.f32"));
    if (::fdatasync(rows_fd_) != 0) return io_error(dir_ + "/rows.f32");
  }
  std::string lines;
  for (const auto& e : entries) lines += (e.ok ? "ok\t" + e.path : "skip\t" + e.path + "\t" + e.reason) + "\n";
  DINOV3_RETURN_IF_ERROR(write_all(done_fd_, lines.data(), lines.size(), dir_ + "/done.txt"));
  if (::fdatasync(done_fd_) != 0) return io_error(dir_ + "/done.txt");
  rows_ += n_rows;
  done_.insert(done_.end(), entries.begin(), entries.end());
  return {};
}

Status EmbedStore::publish(const std::string& format) {
  Shape shape = row_shape_;
  shape.insert(shape.begin(), static_cast<int64_t>(rows_));
  const std::string rows_path = dir_ + "/rows.f32";
  std::string index;
  for (const auto& e : done_)
    if (e.ok) index += e.path + "\n";
  if (format == "safetensors") {
    Tensor all(shape);
    std::ifstream in(rows_path, std::ios::binary);
    in.read(reinterpret_cast<char*>(all.ptr()), static_cast<std::streamsize>(all.data.size() * sizeof(float)));
    if (!in && !all.data.empty()) return make_error(ErrorCode::kIoError, rows_path + ": cannot read rows");
    DINOV3_RETURN_IF_ERROR(save_safetensors(out_, {{"embeddings", &all}}, {}, /*overwrite=*/true));
  } else {
    const std::string header = npy_header(shape);
    DINOV3_RETURN_IF_ERROR(write_file_atomic(out_, /*overwrite=*/true, [&](const WriteFn& w) -> Status {
      DINOV3_RETURN_IF_ERROR(w(header.data(), header.size()));
      std::ifstream in(rows_path, std::ios::binary);
      std::vector<char> buf(1 << 20);
      size_t total = 0;
      while (in) {
        in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
        const auto n = static_cast<size_t>(in.gcount());
        if (n == 0) break;
        DINOV3_RETURN_IF_ERROR(w(buf.data(), n));
        total += n;
      }
      if (total != rows_ * static_cast<size_t>(row_numel_) * sizeof(float))
        return make_error(ErrorCode::kIoError, rows_path + ": holds a different number of rows than recorded");
      return {};
    }));
  }
  DINOV3_RETURN_IF_ERROR(write_file_atomic(index_path(out_), true, [&](const WriteFn& w) { return w(index.data(), index.size()); }));
  std::error_code ec;
  ::close(rows_fd_);
  ::close(done_fd_);
  rows_fd_ = done_fd_ = -1;
  fs::remove_all(dir_, ec);
  return {};
}

}  // namespace dinov3::cli
