#include "dinov3/collection.h"

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "io/file_util.h"

namespace dinov3 {

namespace fs = std::filesystem;

bool has_image_extension(std::string_view path) {
  std::string ext = fs::path(path).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  for (const char* e : {".jpg", ".jpeg", ".png", ".webp", ".bmp"})
    if (ext == e) return true;
  return false;
}

Result<std::vector<std::string>> expand_inputs(const std::vector<std::string>& specs) {
  std::vector<std::string> out;
  for (const auto& spec : specs) {
    DINOV3_RETURN_IF_ERROR(check_path(spec));
    if (!spec.empty() && spec[0] == '@') {
      // Any readable file, a pipe too (@<(find ...)); a line longer than any path ends the read, so
      // /dev/zero or a binary file is an error, not a read without end.
      constexpr std::streamsize kMaxLine = 1 << 16;
      const std::string list = escape_line(spec.substr(1));
      std::ifstream in(spec.substr(1));
      if (!in) return make_error(ErrorCode::kNotFound, list + ": cannot read the input list");
      std::vector<char> buf(static_cast<size_t>(kMaxLine) + 1);
      for (int64_t n = 1;; ++n) {
        in.getline(buf.data(), kMaxLine + 1);
        if (in.fail() && !in.eof() && !in.bad()) {
          return make_error(ErrorCode::kInvalidArgument, list + ": line " + std::to_string(n) + " is longer than " +
                                                             std::to_string(kMaxLine) + " bytes: not a list of paths");
        }
        if (in.gcount() == 0 && in.eof()) break;
        // gcount counts the newline getline took, but not at the end of the file.
        const auto length = static_cast<size_t>(in.gcount()) - (in.eof() ? 0 : 1);
        std::string line(buf.data(), length);
        if (line.find('\0') != std::string::npos) {  // the path would end at it and name another file
          return make_error(ErrorCode::kInvalidArgument,
                            list + ": line " + std::to_string(n) + " holds a NUL byte: not a list of paths");
        }
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (!line.empty()) out.push_back(line);
        if (in.eof() || in.bad()) break;
      }
      if (in.bad()) return make_error(ErrorCode::kIoError, list + ": cannot read the input list");
      continue;
    }
    std::error_code ec;
    if (fs::is_directory(spec, ec)) {
      std::vector<std::string> found;
      for (fs::recursive_directory_iterator it(spec, fs::directory_options::skip_permission_denied, ec), end;
           !ec && it != end; it.increment(ec)) {
        if (!has_image_extension(it->path().native())) continue;
        std::error_code target_ec;
        const fs::file_status target = fs::status(it->path(), target_ec);  // follows links
        const bool broken_link = it->is_symlink(target_ec) && (target.type() == fs::file_type::not_found ||
                                                              target.type() == fs::file_type::none);
        if (fs::is_regular_file(target) || broken_link) found.push_back(it->path().string());
      }
      if (ec) return make_error(ErrorCode::kIoError, escape_line(spec) + ": cannot list: " + ec.message());
      std::sort(found.begin(), found.end());
      out.insert(out.end(), found.begin(), found.end());
    } else {
      out.push_back(spec);
    }
  }
  return out;
}

std::string escape_line(std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (byte < 0x20 || byte == 0x7f) {
      out += "\\x";
      out += kHex[byte >> 4];
      out += kHex[byte & 15];
    } else {
      out += c;
    }
  }
  return out;
}

bool unescape_line(std::string_view line, std::string* out) {
  const auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  out->clear();
  for (size_t i = 0; i < line.size(); ++i) {
    if (line[i] != '\\') {
      *out += line[i];
      continue;
    }
    if (++i == line.size()) return false;
    switch (line[i]) {
      case '\\': *out += '\\'; break;
      case 'n': *out += '\n'; break;
      case 'r': *out += '\r'; break;
      case 't': *out += '\t'; break;
      case 'x': {
        if (line.size() - i < 3 || hex(line[i + 1]) < 0 || hex(line[i + 2]) < 0) return false;
        *out += static_cast<char>(hex(line[i + 1]) * 16 + hex(line[i + 2]));
        i += 2;
        break;
      }
      default: return false;
    }
  }
  return true;
}

std::string path_lines(const std::vector<std::string>& paths) {
  std::string text;
  for (const auto& p : paths) text += escape_line(p) + "\n";
  return text;
}

Result<std::vector<std::string>> parse_path_lines(std::string_view text) {
  std::vector<std::string> paths;
  for (size_t begin = 0; begin < text.size();) {
    const size_t end = text.find('\n', begin);
    if (end == std::string_view::npos) return make_error(ErrorCode::kFormatError, "the last line has no end");
    std::string path;
    if (!unescape_line(text.substr(begin, end - begin), &path))
      return make_error(ErrorCode::kFormatError, "line " + std::to_string(paths.size() + 1) + " is not an escaped path");
    paths.push_back(std::move(path));
    begin = end + 1;
  }
  return paths;
}

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

std::string embed_index_path(const std::string& out) {
  const fs::path p(out);
  return (p.parent_path() / (p.stem().string() + ".index.txt")).string();
}

Status check_embed_output(const std::string& out, bool allow_existing) {
  std::error_code ec;
  if (out.empty() || out.back() == '/' || fs::is_directory(out, ec)) {
    return make_error(ErrorCode::kInvalidArgument, escape_line(out) + ": is a folder; -o names the output file "
                                                                      "(for example " + escape_line((fs::path(out) / "embeddings.npy").string()) + ")");
  }
  if (!allow_existing) {
    for (const std::string& path : {out, embed_index_path(out)})
      if (file_exists(path)) return make_error(ErrorCode::kInvalidArgument, escape_line(path) + ": already exists (pass --overwrite to replace it)");
  }
  for (const std::string& path : {out, embed_index_path(out)}) DINOV3_RETURN_IF_ERROR(check_output_file(path, true));
  return {};
}

Status publish_npy_with_index(const std::string& out, const Shape& shape, const ProduceFn& write_rows,
                              const std::vector<std::string>& paths, bool overwrite) {
  if (shape.empty() || shape[0] != static_cast<int64_t>(paths.size())) {
    return make_error(ErrorCode::kInvalidArgument, "publish: " + std::to_string(paths.size()) + " paths for " +
                                                       (shape.empty() ? std::string("no") : std::to_string(shape[0])) + " rows");
  }
  if (shape.size() > 32 || shape_numel(shape) < 0) {  // numpy reads at most 32 dimensions
    return make_error(ErrorCode::kInvalidArgument, "publish: shape " + shape_to_string(shape) + " is not an array numpy reads");
  }
  if (!write_rows) return make_error(ErrorCode::kInvalidArgument, "publish: no rows to write (an empty producer)");
  const uint64_t bytes = static_cast<uint64_t>(shape_numel(shape)) * sizeof(float);
  const ProduceFn produce_npy = [&](const WriteFn& w) -> Status {
    const std::string header = npy_header(shape);
    DINOV3_RETURN_IF_ERROR(w(header.data(), header.size()));
    uint64_t written = 0;
    DINOV3_RETURN_IF_ERROR(write_rows([&](const void* data, size_t size) -> Status {
      if (written + size > bytes) return make_error(ErrorCode::kInternal, out + ": more row data than the shape holds");
      written += size;
      return w(data, size);
    }));
    if (written != bytes) return make_error(ErrorCode::kInternal, out + ": less row data than the shape holds");
    return {};
  };
  const std::string index = path_lines(paths);
  return write_files_together(
      {{out, produce_npy}, {embed_index_path(out), [&](const WriteFn& w) { return w(index.data(), index.size()); }}},
      overwrite);
}

}  // namespace dinov3
