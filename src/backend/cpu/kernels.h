// The per-ISA kernel set of the CPU backend. Drivers (gemm/, attention/, cpu_backend.cpp) are compiled for
// baseline x86-64 and call kernels only through a CpuKernels table chosen once at backend creation, so no
// AVX instruction runs before the runtime check.
#pragma once

#include <cstdint>

namespace dinov3::cpu {

enum class Isa { kScalar, kAvx2, kAvx512 };
const char* isa_name(Isa isa);  // "scalar", "avx2", "avx512"

// What the micro-kernel does with acc = A·B (+ bias) when it stores a tile.
enum class TileEpilogue {
  kStore,          // c = acc
  kGelu,           // c = gelu_erf(acc)
  kGeluLowp,       // c = gelu(acc) to within 1.7e-7 |acc| (vec_math.h): what a bf16 or int8 layer reads next
  kScaleAdd,       // c += scale[col] * acc            (LayerScale + residual)
  kSwiglu,         // c = silu(aux[row, col]) * acc    (aux: the gate tile, already biased)
  // Online-softmax P·V: c = (c * row_scale[row] + acc) * row_post[row], where a null row_scale means the
  // old c is not read (first key block) and a null row_post means no final scaling (not the last block).
  kAttentionRows,
};

// One micro-tile: C[rows, cols] (op)= A[rows, k] · B[k, cols] + bias[cols].
// B is one packed panel: k rows of `nr` contiguous floats (nr = the kernel set's panel width), zero-padded
// beyond `cols`, so B loads never need masks; A and C are read/written only inside rows x k / rows x cols.
struct GemmTile {
  const float* a = nullptr;
  int64_t lda = 0;
  const float* b = nullptr;
  int64_t k = 0;
  float* c = nullptr;
  int64_t ldc = 0;
  int rows = 0;  // 1..mr
  int cols = 0;  // 1..nr
  const float* bias = nullptr;  // nr values (zero-padded) or nullptr
  TileEpilogue epilogue = TileEpilogue::kStore;
  const float* scale = nullptr;      // kScaleAdd: cols values
  const float* aux = nullptr;        // kSwiglu: rows x cols, row stride ld_aux
  int64_t ld_aux = 0;
  const float* row_scale = nullptr;  // kAttentionRows: rows values or nullptr
  const float* row_post = nullptr;   // kAttentionRows: rows values or nullptr
  // When set, the stored values also go to c_bf16 (row stride ldc_bf16 elements) rounded to bf16 as
  // lowp/bf16.h does: the operand a bf16 GEMM reading this output would otherwise convert it to.
  uint16_t* c_bf16 = nullptr;
  int64_t ldc_bf16 = 0;
};

struct CpuKernels {
  Isa isa;
  int mr;  // rows per micro-tile
  int nr;  // packed panel width (columns per micro-tile)
  void (*gemm_tile)(const GemmTile& tile);
  // y[r] = (x[r] - mean) / sqrt(var + eps) * gamma + beta for `rows` rows of `dim` (two passes, float32).
  // y_bf16 (optional, row stride ld_bf16): the same values as bf16 (lowp/bf16.h's rounding), dim per row;
  // with y null they go only there.
  void (*layer_norm_rows)(const float* x, float* y, int64_t rows, int64_t dim, const float* gamma,
                          const float* beta, float eps, uint16_t* y_bf16, int64_t ld_bf16);
  // Online-softmax step on a block of scores in base-2 units, s[rows, cols] (row stride lds; the caller
  // folds log2(e) into q): per row, new_max = max(max, row); rescale[r] = 2^(max - new_max);
  // s = 2^(s - new_max) in place; sum = sum * rescale + rowsum(s). A row with max == -inf (first block) gets
  // rescale 0. p_bf16 (optional, row stride ld_p): the new s goes there in bf16 instead (s is left as it
  // was), its 2^x from exp2_for_bf16 (rel. error 7.51e-5, below bf16's rounding); the row sums are
  // those of the weights before that rounding.
  void (*softmax_block)(float* s, int64_t lds, int rows, int cols, float* row_max, float* row_sum, float* rescale,
                        uint16_t* p_bf16, int64_t ld_p);
  // dst[r, :] = RoPE(src[r, :]) * scale for `rows` rows of head_dim values (src row stride ld); table:
  // per row head_dim sines then head_dim cosines, rotate_half([a, b]) = [-b, a]. table == nullptr: no
  // rotation (prefix tokens), only the scale.
  // dst_bf16 (optional): write the rows in bf16 there instead (row stride ld_bf16; dst is then unused).
  // src_bf16 (optional): read the rows in bf16 there instead (row stride ld; src is then unused).
  void (*rope_rows)(const float* src, const uint16_t* src_bf16, int64_t ld, int64_t rows, const float* table,
                    int64_t head_dim, float scale, float* dst, uint16_t* dst_bf16, int64_t ld_bf16);
};

const CpuKernels& cpu_kernels_scalar();
const CpuKernels& cpu_kernels_avx2();
const CpuKernels& cpu_kernels_avx512();
// The AVX-512 set with native bf16 conversions: only where the CPU has AVX512_BF16.
const CpuKernels& cpu_kernels_avx512bf16();

}  // namespace dinov3::cpu
