// Host tensors: a float32 buffer with a row-major shape.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

namespace dinov3 {

using Shape = std::vector<int64_t>;

// Number of elements of `shape` (1 for a scalar); -1 if a dimension is negative or the product overflows.
int64_t shape_numel(const Shape& shape);
std::string shape_to_string(const Shape& shape);  // "[2, 3, 64, 64]"

struct Tensor {
  Shape shape;
  std::vector<float> data;  // row-major, shape_numel(shape) values

  Tensor() = default;
  // Zeros. A shape with no valid element count (a negative dimension, or a product past int64) gets no values:
  // the shape and the values disagree, which the entry points that take a Tensor refuse with an error.
  explicit Tensor(Shape s)
      : shape(std::move(s)), data(static_cast<size_t>(std::max<int64_t>(shape_numel(shape), 0)), 0.0f) {}
  Tensor(Shape s, std::vector<float> d) : shape(std::move(s)), data(std::move(d)) {}

  int64_t numel() const { return static_cast<int64_t>(data.size()); }
  int64_t dim(size_t i) const { return shape.at(i); }
  float* ptr() { return data.data(); }
  const float* ptr() const { return data.data(); }
};

}  // namespace dinov3
