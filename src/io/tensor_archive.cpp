#include <cmath>
#include <cstring>
#include <limits>

#include "util/api_guard.h"

#include "dinov3/tensor_file.h"

namespace dinov3 {
namespace {

float half_to_float(uint16_t h) {
  const uint32_t sign = (h >> 15) & 1, exponent = (h >> 10) & 0x1f, mantissa = h & 0x3ff;
  float magnitude;
  if (exponent == 0) {
    magnitude = std::ldexp(static_cast<float>(mantissa), -24);  // subnormal
  } else if (exponent == 31) {
    magnitude = mantissa ? std::numeric_limits<float>::quiet_NaN() : std::numeric_limits<float>::infinity();
  } else {
    magnitude = std::ldexp(static_cast<float>(mantissa | 0x400), static_cast<int>(exponent) - 25);
  }
  return sign ? -magnitude : magnitude;
}

float bf16_to_float(uint16_t b) {
  const uint32_t bits = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// Reads element `index` (in elements from `base`) as float; the archive may not align tensors.
float read_element(const uint8_t* base, int64_t index, DType dtype) {
  const uint8_t* p = base + index * static_cast<int64_t>(dtype_size(dtype));
  switch (dtype) {
    case DType::kF32: {
      float f;
      std::memcpy(&f, p, 4);
      return f;
    }
    case DType::kF64: {
      double d;
      std::memcpy(&d, p, 8);
      return static_cast<float>(d);
    }
    case DType::kF16: {
      uint16_t h;
      std::memcpy(&h, p, 2);
      return half_to_float(h);
    }
    case DType::kBF16: {
      uint16_t b;
      std::memcpy(&b, p, 2);
      return bf16_to_float(b);
    }
    default:
      return 0.0f;
  }
}

Tensor convert_to_f32(const RawTensor& raw) {
  const int64_t numel = raw.numel();
  Tensor out(raw.shape);
  if (raw.contiguous()) {
    if (raw.dtype == DType::kF32) {
      if (numel > 0) std::memcpy(out.ptr(), raw.data, static_cast<size_t>(numel) * 4);
    } else {
      for (int64_t i = 0; i < numel; ++i) out.data[i] = read_element(raw.data, i, raw.dtype);
    }
    return out;
  }
  std::vector<int64_t> idx(raw.shape.size(), 0);
  for (int64_t i = 0; i < numel; ++i) {
    int64_t offset = 0;
    for (size_t d = 0; d < idx.size(); ++d) offset += idx[d] * raw.strides[d];
    out.data[i] = read_element(raw.data, offset, raw.dtype);
    for (size_t d = idx.size(); d-- > 0;) {
      if (++idx[d] < raw.shape[d]) break;
      idx[d] = 0;
    }
  }
  return out;
}

}  // namespace

bool RawTensor::contiguous() const {
  if (strides.size() != shape.size()) return false;  // a RawTensor built without its strides says nothing
  int64_t expected = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    if (shape[i] != 1 && strides[i] != expected) return false;
    expected *= shape[i];
  }
  return true;
}

TensorArchive::TensorArchive(std::shared_ptr<MappedFile> file, std::vector<RawTensor> tensors,
                             std::map<std::string, std::string> metadata)
    : path_(file ? file->path() : std::string()), tensors_(std::move(tensors)), metadata_(std::move(metadata)) {
  if (file) files_.push_back(std::move(file));
  for (size_t i = 0; i < tensors_.size(); ++i) index_.emplace(tensors_[i].name, i);
}

Result<TensorArchive> TensorArchive::merge(const std::string& path, std::vector<TensorArchive> shards) {
  TensorArchive out;
  out.path_ = path;
  for (TensorArchive& shard : shards) {
    for (RawTensor& t : shard.tensors_) {
      if (out.index_.count(t.name) != 0) {
        return make_error(ErrorCode::kFormatError, path + ": tensor '" + t.name + "' is stored in more than one shard (" +
                                                       shard.path() + " and another)");
      }
      out.index_.emplace(t.name, out.tensors_.size());
      out.tensors_.push_back(std::move(t));
    }
    for (auto& f : shard.files_) out.files_.push_back(std::move(f));
    out.metadata_.merge(shard.metadata_);
  }
  return out;
}

const std::string& TensorArchive::path() const { return path_; }

const RawTensor* TensorArchive::find(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

Result<Tensor> TensorArchive::load_f32(std::string_view name) const {
  const RawTensor* raw = find(name);
  if (raw == nullptr) return make_error(ErrorCode::kNotFound, path() + ": no tensor named '" + std::string(name) + "'");
  return load_f32(*raw);
}

Result<Tensor> TensorArchive::load_f32(const RawTensor& raw) const {
  if (raw.dtype != DType::kF32 && raw.dtype != DType::kF16 && raw.dtype != DType::kBF16 && raw.dtype != DType::kF64) {
    return make_error(ErrorCode::kUnsupported, path() + ": tensor '" + raw.name + "' has dtype " +
                                                   dtype_name(raw.dtype) + ", expected a floating type");
  }
  const int64_t numel = raw.numel();
  if (numel < 0 || raw.strides.size() != raw.shape.size()) {
    return make_error(ErrorCode::kFormatError, path() + ": tensor '" + raw.name + "' has an invalid layout");
  }
  // The furthest element the strides reach must lie inside the bytes the reader validated, and the
  // float32 copy may not hold more elements than those bytes: a view repeating elements (stride 0) could
  // otherwise ask for any amount of memory.
  int64_t last = 0;
  for (size_t i = 0; i < raw.shape.size(); ++i) {
    if (raw.strides[i] < 0) return make_error(ErrorCode::kUnsupported, path() + ": tensor '" + raw.name + "' has a negative stride");
    int64_t reach = 0;
    if (raw.shape[i] > 0 && (__builtin_mul_overflow(raw.shape[i] - 1, raw.strides[i], &reach) ||
                             __builtin_add_overflow(last, reach, &last)))
      return make_error(ErrorCode::kFormatError, path() + ": tensor '" + raw.name + "' has strides that overflow");
  }
  const uint64_t spanned = raw.nbytes / dtype_size(raw.dtype);
  if (numel > 0 && static_cast<uint64_t>(last) >= spanned)
    return make_error(ErrorCode::kFormatError, path() + ": tensor '" + raw.name + "' reaches past its storage");
  if (static_cast<uint64_t>(numel) > spanned)
    return make_error(ErrorCode::kFormatError, path() + ": tensor '" + raw.name + "' repeats elements of its storage");
  return guard_api_call("loading a tensor", [&]() -> Result<Tensor> { return convert_to_f32(raw); });
}

void TensorArchive::release(const RawTensor& raw) const {
  for (const auto& f : files_) {
    if (raw.data >= f->data() && raw.data < f->data() + f->size()) f->release(raw.data, raw.nbytes);
  }
}

Result<TensorArchive> open_tensor_file(const std::string& path) {
  DINOV3_ASSIGN_OR_RETURN(std::shared_ptr<MappedFile> file, MappedFile::open(path));
  if (file->size() >= 4 && std::memcmp(file->data(), "PK\x03\x04", 4) == 0) return open_pytorch_bin(path);
  return open_safetensors(path);
}

}  // namespace dinov3
