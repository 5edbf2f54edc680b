#include "fuzz_util.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace dinov3::fuzz {
namespace {

namespace fs = std::filesystem;

std::string make_scratch_dir() {
  std::error_code ec;
  const fs::path base = fs::is_directory("/dev/shm", ec) ? fs::path("/dev/shm") : fs::temp_directory_path();
  std::string tmpl = (base / "dinov3_fuzz_XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr) {
    std::perror("dinov3 fuzz: mkdtemp");
    std::abort();
  }
  return tmpl;
}

}  // namespace

const std::string& scratch_dir() {
  // Never destroyed: the exit handler that removes the folder runs after static destructors would.
  static const std::string* dir = [] {
    auto* d = new std::string(make_scratch_dir());
    std::atexit([] {
      std::error_code ec;
      fs::remove_all(*dir, ec);
    });
    return d;
  }();
  return *dir;
}

std::string write_file(const std::string& name, std::string_view bytes) {
  const std::string path = scratch_dir() + "/" + name;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  expect(static_cast<bool>(out), "cannot write into the scratch folder");
  return path;
}

void remove_file(const std::string& name) { ::unlink((scratch_dir() + "/" + name).c_str()); }

std::vector<std::string_view> split(const uint8_t* data, size_t size, size_t count) {
  std::string_view rest(reinterpret_cast<const char*>(data), size);
  std::vector<std::string_view> parts;
  while (parts.size() + 1 < count) {
    const size_t nul = rest.find('\0');
    if (nul == std::string_view::npos) break;
    parts.push_back(rest.substr(0, nul));
    rest.remove_prefix(nul + 1);
  }
  parts.push_back(rest);
  parts.resize(count);
  return parts;
}

void expect(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "dinov3 fuzz: property violated: %s\n", what);
  std::abort();
}

void load_every_tensor(const TensorArchive& archive, size_t input_size) {
  for (const RawTensor& raw : archive.tensors()) {
    expect(raw.nbytes <= input_size, "a tensor spans more bytes than the input");
    Result<Tensor> t = archive.load_f32(raw);
    if (!t.ok()) continue;
    expect(t->numel() == raw.numel(), "a loaded tensor has the wrong number of values");
    expect(static_cast<uint64_t>(t->numel()) * dtype_size(raw.dtype) <= raw.nbytes,
           "a tensor holds more elements than its bytes");
  }
}

}  // namespace dinov3::fuzz
