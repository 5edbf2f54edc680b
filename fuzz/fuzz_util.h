// What the harnesses share: a scratch folder for entry points that read files, splitting one input into
// several parts, and stopping loudly when a property the code promises does not hold.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "dinov3/tensor_file.h"

namespace dinov3::fuzz {

// Writes `bytes` to <scratch>/<name> (the scratch folder is made once per process, on /dev/shm when it
// exists, and removed at exit) and returns the path.
std::string write_file(const std::string& name, std::string_view bytes);
// Removes <scratch>/<name> if it exists.
void remove_file(const std::string& name);
// The scratch folder itself.
const std::string& scratch_dir();

// `count` parts of the input, split at its first count - 1 NUL bytes (missing parts are empty; NUL
// never occurs in the text formats split this way).
std::vector<std::string_view> split(const uint8_t* data, size_t size, size_t count);

// Aborts with `what` when `ok` is false: the fuzzer records the input as a finding.
void expect(bool ok, const char* what);

// Converts every tensor of an archive read from `input_size` bytes, checking what a reader promises: no
// tensor spans more bytes than the input, and none holds more elements than the bytes it spans (memory
// follows the bytes present).
void load_every_tensor(const TensorArchive& archive, size_t input_size);

}  // namespace dinov3::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);
