// Pillow's separable resampling (libImaging/Resample.c, Pillow 9.4) for 8-bit RGB, split into the
// coefficient tables and the two passes that apply them. Every kernel does the same integer
// arithmetic, so all of them produce identical bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "dinov3/image.h"

namespace dinov3::image_detail {

// Weights are fixed point with this many fraction bits: 32 bits less 8 for the pixel value and 2 for
// the overshoot of negative lobes, as Pillow's PRECISION_BITS.
constexpr int kPrecisionBits = 32 - 8 - 2;

// One axis of a resize, for a window [begin, begin + size) of its output indices: output index i
// (0-based within the window) reads `count[i]` inputs from `first[i]`, weighted by
// weights[i * taps ...] (zero past count[i]).
struct ResampleAxis {
  int taps = 0;  // Pillow's ksize: room for the widest filter footprint
  std::vector<int> first;
  std::vector<int> count;
  std::vector<int32_t> weights;

  int size() const { return static_cast<int>(first.size()); }
};

// Pillow's precompute_coeffs + normalize_coeffs_8bpc for in_size -> out_size, restricted to the
// output window. Bicubic is the a = -0.5 cubic, bilinear the triangle; both widen by the downscale
// factor so that shrinking averages every input pixel (antialiasing).
ResampleAxis make_resample_axis(int in_size, int out_size, int window_begin, int window_size,
                                Interpolation interpolation);

// The horizontal kernels may read this many bytes past the last pixel a row's weights use; the caller
// makes sure that memory is readable (the rows that follow, or padding).
constexpr size_t kHorizontalOverread = 8;

// dst row r, pixel i = clip8(sum_t weights[i][t] * src row r, pixel first[i] + t), per channel.
using HorizontalPassFn = void (*)(const uint8_t* src, size_t src_stride, int rows, const ResampleAxis& axis,
                                  uint8_t* dst, size_t dst_stride);
// dst row i, byte j = clip8(sum_t weights[i][t] * src row first[i] + t, byte j) for j < row_bytes.
using VerticalPassFn = void (*)(const uint8_t* src, size_t src_stride, int row_bytes, const ResampleAxis& axis,
                                uint8_t* dst, size_t dst_stride);

void horizontal_pass_scalar(const uint8_t* src, size_t src_stride, int rows, const ResampleAxis& axis, uint8_t* dst,
                            size_t dst_stride);
void vertical_pass_scalar(const uint8_t* src, size_t src_stride, int row_bytes, const ResampleAxis& axis, uint8_t* dst,
                          size_t dst_stride);
void horizontal_pass_avx2(const uint8_t* src, size_t src_stride, int rows, const ResampleAxis& axis, uint8_t* dst,
                          size_t dst_stride);
void vertical_pass_avx2(const uint8_t* src, size_t src_stride, int row_bytes, const ResampleAxis& axis, uint8_t* dst,
                        size_t dst_stride);

// A rectangle of a resize's output: x, y of its top-left corner, its width and height.
struct OutputWindow {
  int x = 0, y = 0, width = 0, height = 0;
};

// Image.resize((out_w, out_h)) cut to `window`: the same bytes as resizing the whole image and then
// cropping, without computing what the crop would throw away.
Result<ImageRGB8> resize_window(const ImageRGB8& in, int out_w, int out_h, const OutputWindow& window,
                                Interpolation interpolation, ResampleKernel kernel);

}  // namespace dinov3::image_detail
