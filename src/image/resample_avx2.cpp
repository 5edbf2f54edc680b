// AVX2 versions of the resampling passes (compiled for AVX2 through target attributes; resample.cpp calls
// them only when cpuid and XCR0 say AVX2 is usable). They do Pillow's exact integer arithmetic: 32-bit
// products of 8-bit pixels and Q22 weights, summed in 32 bits, so the bytes equal the scalar kernels'.
#include <immintrin.h>

#include <cstring>
#include <vector>

#include "image/resample.h"

namespace dinov3::image_detail {
namespace {

constexpr int32_t kHalf = 1 << (kPrecisionBits - 1);

inline uint8_t clip8(int32_t sum) {
  const int32_t v = sum >> kPrecisionBits;
  return static_cast<uint8_t>(v < 0 ? 0 : (v > 255 ? 255 : v));
}

// Per output pixel, its weights as pairs of taps spread over eight int32 lanes: {w0, w0, w0, 0, w1, w1,
// w1, 0}, matching two RGB pixels widened to {R0, G0, B0, -, R1, G1, B1, -}. Odd counts end with a zero
// weight, so the extra pixel read there contributes nothing.
struct PairedWeights {
  int pairs = 0;  // pair slots per output pixel
  std::vector<int32_t> lanes;
};

PairedWeights pair_weights(const ResampleAxis& axis) {
  PairedWeights out;
  out.pairs = (axis.taps + 1) / 2;
  out.lanes.assign(size_t(axis.size()) * out.pairs * 8, 0);
  for (int i = 0; i < axis.size(); ++i) {
    const int32_t* w = &axis.weights[size_t(i) * axis.taps];
    int32_t* dst = &out.lanes[size_t(i) * out.pairs * 8];
    for (int t = 0; t < axis.count[i]; ++t) {
      int32_t* lane = dst + (t / 2) * 8 + (t % 2) * 4;
      lane[0] = lane[1] = lane[2] = w[t];
    }
  }
  return out;
}

// Saturates four Q22 sums to bytes: the same result as clip8 on each lane.
inline uint32_t pack_rgbx(__m128i sum) {
  const __m128i v = _mm_srai_epi32(sum, kPrecisionBits);
  const __m128i words = _mm_packs_epi32(v, v);
  return static_cast<uint32_t>(_mm_cvtsi128_si32(_mm_packus_epi16(words, words)));
}

// Two RGB pixels at p widened to int32 lanes {R0, G0, B0, 0, R1, G1, B1, 0}: eight bytes broadcast to
// both 128-bit lanes, then a byte shuffle that picks pixel 0 in the low lane, pixel 1 in the high one.
__attribute__((target("avx2"))) inline __m256i load_pixel_pair(const uint8_t* p) {
  const __m256i spread = _mm256_setr_epi8(0, -1, -1, -1, 1, -1, -1, -1, 2, -1, -1, -1, -1, -1, -1, -1,  //
                                          3, -1, -1, -1, 4, -1, -1, -1, 5, -1, -1, -1, -1, -1, -1, -1);
  return _mm256_shuffle_epi8(_mm256_broadcastq_epi64(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))), spread);
}

// Eight bytes at p widened to int32.
__attribute__((target("avx2"))) inline __m256i load_widened(const uint8_t* p) {
  return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
}

// acc + a * b in 32-bit lanes.
__attribute__((target("avx2"))) inline __m256i multiply_add(__m256i acc, __m256i a, __m256i b) {
  return _mm256_add_epi32(acc, _mm256_mullo_epi32(a, b));
}

}  // namespace

__attribute__((target("avx2"))) void horizontal_pass_avx2(const uint8_t* src, size_t src_stride, int rows,
                                                          const ResampleAxis& axis, uint8_t* dst, size_t dst_stride) {
  const PairedWeights weights = pair_weights(axis);
  const __m128i half = _mm_set1_epi32(kHalf);
  const int out_w = axis.size();
  for (int y = 0; y < rows; ++y) {
    const uint8_t* in = src + y * src_stride;
    uint8_t* out = dst + y * dst_stride;
    for (int i = 0; i < out_w; ++i) {
      const uint8_t* p = in + size_t(axis.first[i]) * 3;
      const __m256i* w = reinterpret_cast<const __m256i*>(&weights.lanes[size_t(i) * weights.pairs * 8]);
      const int pairs = (axis.count[i] + 1) / 2;
      // Two accumulators keep two multiplies in flight.
      __m256i acc0 = _mm256_setzero_si256(), acc1 = _mm256_setzero_si256();
      int j = 0;
      for (; j + 2 <= pairs; j += 2) {
        acc0 = multiply_add(acc0, load_pixel_pair(p + 6 * j), _mm256_loadu_si256(w + j));
        acc1 = multiply_add(acc1, load_pixel_pair(p + 6 * j + 6), _mm256_loadu_si256(w + j + 1));
      }
      if (j < pairs) acc0 = multiply_add(acc0, load_pixel_pair(p + 6 * j), _mm256_loadu_si256(w + j));
      const __m256i acc = _mm256_add_epi32(acc0, acc1);
      const __m128i sum =
          _mm_add_epi32(_mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1)), half);
      const uint32_t rgbx = pack_rgbx(sum);
      std::memcpy(out + 3 * i, &rgbx, 3);
    }
  }
}

__attribute__((target("avx2"))) void vertical_pass_avx2(const uint8_t* src, size_t src_stride, int row_bytes,
                                                        const ResampleAxis& axis, uint8_t* dst, size_t dst_stride) {
  const __m256i half = _mm256_set1_epi32(kHalf);
  // packs/packus interleave the two 128-bit lanes; this puts the four 8-byte groups back in order.
  const __m256i unshuffle = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  for (int i = 0; i < axis.size(); ++i) {
    const uint8_t* in = src + size_t(axis.first[i]) * src_stride;
    const int32_t* w = &axis.weights[size_t(i) * axis.taps];
    const int count = axis.count[i];
    uint8_t* out = dst + i * dst_stride;
    int j = 0;
    for (; j + 32 <= row_bytes; j += 32) {
      __m256i a0 = half, a1 = half, a2 = half, a3 = half;
      for (int t = 0; t < count; ++t) {
        const uint8_t* row = in + t * src_stride + j;
        const __m256i wt = _mm256_set1_epi32(w[t]);
        a0 = multiply_add(a0, load_widened(row + 0), wt);
        a1 = multiply_add(a1, load_widened(row + 8), wt);
        a2 = multiply_add(a2, load_widened(row + 16), wt);
        a3 = multiply_add(a3, load_widened(row + 24), wt);
      }
      const __m256i w01 =
          _mm256_packs_epi32(_mm256_srai_epi32(a0, kPrecisionBits), _mm256_srai_epi32(a1, kPrecisionBits));
      const __m256i w23 =
          _mm256_packs_epi32(_mm256_srai_epi32(a2, kPrecisionBits), _mm256_srai_epi32(a3, kPrecisionBits));
      const __m256i bytes = _mm256_permutevar8x32_epi32(_mm256_packus_epi16(w01, w23), unshuffle);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + j), bytes);
    }
    for (; j + 8 <= row_bytes; j += 8) {
      __m256i a = half;
      for (int t = 0; t < count; ++t) {
        a = multiply_add(a, load_widened(in + t * src_stride + j), _mm256_set1_epi32(w[t]));
      }
      const __m256i v = _mm256_srai_epi32(a, kPrecisionBits);
      const __m128i words = _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
      _mm_storel_epi64(reinterpret_cast<__m128i*>(out + j), _mm_packus_epi16(words, words));
    }
    for (; j < row_bytes; ++j) {
      int32_t s = kHalf;
      for (int t = 0; t < count; ++t) s += in[t * src_stride + j] * w[t];
      out[j] = clip8(s);
    }
  }
}

}  // namespace dinov3::image_detail
