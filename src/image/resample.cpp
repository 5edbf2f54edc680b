// Coefficients, the scalar kernels and the two-pass driver of Pillow's resampling. The floating-point
// steps below follow Resample.c's expressions operation for operation (and this file is built with
// -ffp-contract=off), because a weight one unit off in the last fixed-point bit can move a pixel.
#include "image/resample.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <new>
#include <string>

#include "image/decoders.h"
#include "util/api_guard.h"
#include "util/cpu_info.h"

namespace dinov3 {
namespace image_detail {
namespace {

double bicubic_filter(double x) {
  constexpr double a = -0.5;
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

double bilinear_filter(double x) {
  if (x < 0.0) x = -x;
  if (x < 1.0) return 1.0 - x;
  return 0.0;
}

inline uint8_t clip8(int32_t sum) {
  const int32_t v = sum >> kPrecisionBits;
  return static_cast<uint8_t>(v < 0 ? 0 : (v > 255 ? 255 : v));
}

}  // namespace

ResampleAxis make_resample_axis(int in_size, int out_size, int window_begin, int window_size,
                                Interpolation interpolation) {
  double (*filter)(double) = interpolation == Interpolation::kBicubic ? bicubic_filter : bilinear_filter;
  const double filter_support = interpolation == Interpolation::kBicubic ? 2.0 : 1.0;
  // Pillow receives the source box as floats (0, in_size) and subtracts them in float.
  const float box_begin = 0.0f, box_end = static_cast<float>(in_size);
  const double scale = static_cast<double>(box_end - box_begin) / out_size;
  const double filter_scale = scale < 1.0 ? 1.0 : scale;
  const double support = filter_support * filter_scale;
  const double inverse_filter_scale = 1.0 / filter_scale;

  ResampleAxis axis;
  axis.taps = static_cast<int>(std::ceil(support)) * 2 + 1;
  axis.first.resize(window_size);
  axis.count.resize(window_size);
  axis.weights.assign(size_t(window_size) * axis.taps, 0);
  std::vector<double> k(axis.taps);
  for (int i = 0; i < window_size; ++i) {
    const int xx = window_begin + i;
    const double center = box_begin + (xx + 0.5) * scale;
    int xmin = static_cast<int>(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int xmax = static_cast<int>(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double ww = 0.0;
    for (int x = 0; x < xmax; ++x) {
      const double w = filter((x + xmin - center + 0.5) * inverse_filter_scale);
      k[x] = w;
      ww += w;
    }
    int32_t* fixed = &axis.weights[size_t(i) * axis.taps];
    for (int x = 0; x < xmax; ++x) {
      const double normalized = ww != 0.0 ? k[x] / ww : k[x];
      // Rounds half away from zero, as normalize_coeffs_8bpc.
      fixed[x] = normalized < 0 ? static_cast<int32_t>(-0.5 + normalized * (1 << kPrecisionBits))
                                : static_cast<int32_t>(0.5 + normalized * (1 << kPrecisionBits));
    }
    axis.first[i] = xmin;
    axis.count[i] = xmax;
  }
  return axis;
}

void horizontal_pass_scalar(const uint8_t* src, size_t src_stride, int rows, const ResampleAxis& axis, uint8_t* dst,
                            size_t dst_stride) {
  constexpr int32_t kHalf = 1 << (kPrecisionBits - 1);
  for (int y = 0; y < rows; ++y) {
    const uint8_t* in = src + y * src_stride;
    uint8_t* out = dst + y * dst_stride;
    for (int i = 0; i < axis.size(); ++i) {
      const uint8_t* p = in + size_t(axis.first[i]) * 3;
      const int32_t* w = &axis.weights[size_t(i) * axis.taps];
      int32_t s0 = kHalf, s1 = kHalf, s2 = kHalf;
      for (int t = 0; t < axis.count[i]; ++t) {
        s0 += p[3 * t + 0] * w[t];
        s1 += p[3 * t + 1] * w[t];
        s2 += p[3 * t + 2] * w[t];
      }
      out[3 * i + 0] = clip8(s0);
      out[3 * i + 1] = clip8(s1);
      out[3 * i + 2] = clip8(s2);
    }
  }
}

void vertical_pass_scalar(const uint8_t* src, size_t src_stride, int row_bytes, const ResampleAxis& axis, uint8_t* dst,
                          size_t dst_stride) {
  constexpr int32_t kHalf = 1 << (kPrecisionBits - 1);
  for (int i = 0; i < axis.size(); ++i) {
    const uint8_t* in = src + size_t(axis.first[i]) * src_stride;
    const int32_t* w = &axis.weights[size_t(i) * axis.taps];
    uint8_t* out = dst + i * dst_stride;
    for (int j = 0; j < row_bytes; ++j) {
      int32_t s = kHalf;
      for (int t = 0; t < axis.count[i]; ++t) s += in[t * src_stride + j] * w[t];
      out[j] = clip8(s);
    }
  }
}

namespace {

struct Kernels {
  HorizontalPassFn horizontal;
  VerticalPassFn vertical;
};

Result<Kernels> select_kernels(ResampleKernel kernel) {
  if (kernel != ResampleKernel::kAuto && kernel != ResampleKernel::kScalar && kernel != ResampleKernel::kAvx2) {
    return make_error(ErrorCode::kInvalidArgument, "resize: resampling kernel " +
                                                       std::to_string(static_cast<int>(kernel)) +
                                                       " is none of auto, scalar and avx2");
  }
  if (kernel == ResampleKernel::kAuto) {
    kernel = resample_kernel_available(ResampleKernel::kAvx2) ? ResampleKernel::kAvx2 : ResampleKernel::kScalar;
  }
  if (!resample_kernel_available(kernel)) {
    return make_error(ErrorCode::kUnsupported, "the AVX2 resampling kernels need a CPU (and OS) with AVX2");
  }
  if (kernel == ResampleKernel::kAvx2) return Kernels{horizontal_pass_avx2, vertical_pass_avx2};
  return Kernels{horizontal_pass_scalar, vertical_pass_scalar};
}

// Runs the horizontal pass over `rows` rows of `in` starting at `first_row`. The kernels may read up to
// kHorizontalOverread bytes past a row's end; the rows below provide them, except near the end of the
// image (one row, or a few when rows are narrower than that), whose rows go through a padded copy.
void run_horizontal(HorizontalPassFn pass, const ImageRGB8& in, int first_row, int rows, const ResampleAxis& axis,
                    uint8_t* dst, size_t dst_stride) {
  const size_t stride = size_t(in.width) * 3;
  auto readable_after = [&](int row) { return size_t(in.height - 1 - row) * stride; };
  int direct_rows = 0;
  while (direct_rows < rows && readable_after(first_row + direct_rows) >= kHorizontalOverread) ++direct_rows;
  if (direct_rows > 0) pass(in.pixels.data() + first_row * stride, stride, direct_rows, axis, dst, dst_stride);
  std::vector<uint8_t> padded(stride + kHorizontalOverread, 0);
  for (int r = direct_rows; r < rows; ++r) {
    std::memcpy(padded.data(), in.pixels.data() + (first_row + r) * stride, stride);
    pass(padded.data(), stride, 1, axis, dst + r * dst_stride, dst_stride);
  }
}

}  // namespace

Result<ImageRGB8> resize_window(const ImageRGB8& in, int out_w, int out_h, const OutputWindow& window,
                                Interpolation interpolation, ResampleKernel kernel) {
  // Both resize_rgb8 and the eval transform come here: any other value would pick bilinear's filter.
  if (interpolation != Interpolation::kBicubic && interpolation != Interpolation::kBilinear) {
    return make_error(ErrorCode::kInvalidArgument, "resize: interpolation " +
                                                       std::to_string(static_cast<int>(interpolation)) +
                                                       " is none of bicubic and bilinear");
  }
  DINOV3_ASSIGN_OR_RETURN(const Kernels kernels, select_kernels(kernel));
  const size_t in_stride = size_t(in.width) * 3;
  ImageRGB8 out;
  DINOV3_RETURN_IF_ERROR(allocate_image(window.width, window.height, &out));
  const size_t out_stride = size_t(out.width) * 3;
  // Pillow skips a pass whose axis keeps its size (its weights would be the identity anyway).
  const bool need_horizontal = out_w != in.width;
  const bool need_vertical = out_h != in.height;

  if (!need_horizontal && !need_vertical) {
    for (int y = 0; y < window.height; ++y) {
      std::memcpy(out.pixels.data() + y * out_stride,
                  in.pixels.data() + (window.y + y) * in_stride + size_t(window.x) * 3, out_stride);
    }
    return out;
  }
  if (!need_vertical) {
    const ResampleAxis horizontal = make_resample_axis(in.width, out_w, window.x, window.width, interpolation);
    run_horizontal(kernels.horizontal, in, window.y, window.height, horizontal, out.pixels.data(), out_stride);
    return out;
  }

  ResampleAxis vertical = make_resample_axis(in.height, out_h, window.y, window.height, interpolation);
  if (!need_horizontal) {
    kernels.vertical(in.pixels.data() + size_t(window.x) * 3, in_stride, int(out_stride), vertical, out.pixels.data(),
                     out_stride);
    return out;
  }
  // Only the source rows the vertical pass will read go through the horizontal pass.
  const int row_begin = vertical.first.front();
  const int row_end = vertical.first.back() + vertical.count.back();
  for (int& first : vertical.first) first -= row_begin;
  const ResampleAxis horizontal = make_resample_axis(in.width, out_w, window.x, window.width, interpolation);
  ImageRGB8 temp;
  DINOV3_RETURN_IF_ERROR(allocate_image(window.width, row_end - row_begin, &temp));
  run_horizontal(kernels.horizontal, in, row_begin, temp.height, horizontal, temp.pixels.data(), out_stride);
  kernels.vertical(temp.pixels.data(), out_stride, int(out_stride), vertical, out.pixels.data(), out_stride);
  return out;
}

}  // namespace image_detail

bool resample_kernel_available(ResampleKernel kernel) {
  switch (kernel) {
    case ResampleKernel::kAuto:
    case ResampleKernel::kScalar: return true;
    case ResampleKernel::kAvx2: return cpu_features().avx2;
  }
  return false;
}

Result<ImageRGB8> resize_rgb8(const ImageRGB8& in, int out_w, int out_h, Interpolation interpolation,
                              ResampleKernel kernel) {
  if (in.width <= 0 || in.height <= 0 || in.pixels.size() != size_t(in.width) * size_t(in.height) * 3) {
    return make_error(ErrorCode::kInvalidArgument,
                      "resize: the input image is empty or its pixel buffer has the wrong size");
  }
  if (out_w <= 0 || out_h <= 0) {
    return make_error(ErrorCode::kInvalidArgument,
                      "resize: output size " + std::to_string(out_w) + "x" + std::to_string(out_h) + " is empty");
  }
  return guard_api_call("resize", [&] {
    return image_detail::resize_window(in, out_w, out_h, {0, 0, out_w, out_h}, interpolation, kernel);
  });
}

}  // namespace dinov3
