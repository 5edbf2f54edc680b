// PCA of patch features (three axes, Eigen's symmetric eigensolver on the covariance, in double), the
// colours it gives, the foreground rule, and the saved form of a fitted PCA.
#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <limits>

#include "analysis/pixel_patches.h"
#include "dinov3/analysis.h"
#include "dinov3/tensor_file.h"
#include "util/finite.h"
#include "util/float_env.h"

namespace dinov3 {
namespace {

// Rows of the covariance update are gathered in blocks of this many patches (a rank-k update per block).
constexpr int64_t kBlockRows = 512;

Status check_patch_sets(const std::vector<const Tensor*>& patches, const std::vector<std::vector<uint8_t>>* masks,
                        int64_t* dim) {
  if (patches.empty()) return make_error(ErrorCode::kInvalidArgument, "PCA: no patch features given");
  if (masks != nullptr && masks->size() != patches.size()) {
    return make_error(ErrorCode::kInvalidArgument, "PCA: one mask per set of patches is needed");
  }
  *dim = 0;
  for (size_t i = 0; i < patches.size(); ++i) {
    const Tensor& t = *patches[i];
    if (t.shape.size() != 2 || t.shape[1] <= 0 || t.numel() != shape_numel(t.shape)) {  // -1 on overflow
      return make_error(ErrorCode::kInvalidArgument, "PCA: patch features must be [P, D], got " + shape_to_string(t.shape));
    }
    if (i == 0) *dim = t.shape[1];
    if (t.shape[1] != *dim) {
      return make_error(ErrorCode::kInvalidArgument, "PCA: patch features of different widths (" +
                                                         std::to_string(*dim) + " and " + std::to_string(t.shape[1]) + ")");
    }
    if (masks != nullptr && (*masks)[i].size() != static_cast<size_t>(t.shape[0])) {
      return make_error(ErrorCode::kInvalidArgument, "PCA: a mask does not match its patches");
    }
  }
  if (*dim < kPcaComponents) {
    return make_error(ErrorCode::kInvalidArgument, "PCA: features of width " + std::to_string(*dim) + " have fewer than " +
                                                       std::to_string(kPcaComponents) + " dimensions");
  }
  return {};
}

// Calls fn(row pointer) for every row the masks keep.
template <class Fn>
void for_each_row(const std::vector<const Tensor*>& patches, const std::vector<std::vector<uint8_t>>* masks, Fn fn) {
  for (size_t i = 0; i < patches.size(); ++i) {
    const Tensor& t = *patches[i];
    for (int64_t p = 0; p < t.shape[0]; ++p) {
      if (masks != nullptr && (*masks)[i][static_cast<size_t>(p)] == 0) continue;
      fn(t.ptr() + p * t.shape[1]);
    }
  }
}

double score(const PatchPca& pca, int k, const float* row) {
  const int64_t D = pca.dim();
  const float* axis = pca.components.data() + k * D;
  double s = 0.0;
  for (int64_t d = 0; d < D; ++d) s += (static_cast<double>(row[d]) - pca.mean[static_cast<size_t>(d)]) * axis[d];
  return s;
}

Status check_pca(const PatchPca& pca) {
  const int64_t D = pca.dim();
  if (D <= 0 || pca.components.size() != static_cast<size_t>(kPcaComponents * D)) {
    return make_error(ErrorCode::kInvalidArgument, "PCA: the mean and the components do not match");
  }
  // A PCA that load_patch_pca would refuse is refused everywhere: saved, applied or drawn.
  for (size_t k = 0; k < kPcaComponents; ++k) {
    if (!std::isfinite(pca.low[k]) || !std::isfinite(pca.high[k]) || !std::isfinite(pca.explained_variance_ratio[k])) {
      return make_error(ErrorCode::kInvalidArgument, "PCA: component " + std::to_string(k) +
                                                         "'s colour range or explained variance is not finite");
    }
  }
  if (first_non_finite(pca.mean.data(), static_cast<int64_t>(pca.mean.size())) >= 0 ||
      first_non_finite(pca.components.data(), static_cast<int64_t>(pca.components.size())) >= 0) {
    return make_error(ErrorCode::kInvalidArgument, "PCA: the mean or the components hold NaN or infinity");
  }
  return {};
}

}  // namespace

Result<PatchPca> fit_patch_pca(const std::vector<const Tensor*>& patches,
                               const std::vector<std::vector<uint8_t>>* masks) {
  const ScopedDefaultFloatEnv float_env;
  int64_t D = 0;
  DINOV3_RETURN_IF_ERROR(check_patch_sets(patches, masks, &D));
  Eigen::VectorXd mean = Eigen::VectorXd::Zero(D);
  int64_t n = 0;
  for_each_row(patches, masks, [&](const float* row) {
    mean += Eigen::Map<const Eigen::VectorXf>(row, D).cast<double>();
    ++n;
  });
  if (n < 2) {
    return make_error(ErrorCode::kInvalidArgument, "PCA needs at least two patches, got " + std::to_string(n));
  }
  mean /= static_cast<double>(n);

  // cov = sum over patches of (x - mean)(x - mean)^T / (n - 1), lower triangle, one rank-k update per block.
  Eigen::MatrixXd cov = Eigen::MatrixXd::Zero(D, D);
  Eigen::MatrixXd block(D, kBlockRows);
  int64_t filled = 0;
  auto flush = [&] {
    if (filled == 0) return;
    cov.selfadjointView<Eigen::Lower>().rankUpdate(block.leftCols(filled));
    filled = 0;
  };
  for_each_row(patches, masks, [&](const float* row) {
    block.col(filled) = Eigen::Map<const Eigen::VectorXf>(row, D).cast<double>() - mean;
    if (++filled == kBlockRows) flush();
  });
  flush();
  cov = cov.selfadjointView<Eigen::Lower>();
  cov /= static_cast<double>(n - 1);
  const double total = cov.trace();
  if (!(total > 0.0) || !std::isfinite(total)) {
    return make_error(ErrorCode::kInvalidArgument, "PCA: the " + std::to_string(n) + " patch features do not vary");
  }

  Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> solver(cov);
  if (solver.info() != Eigen::Success) return make_error(ErrorCode::kInternal, "PCA: the eigensolver did not converge");
  PatchPca pca;
  pca.mean.resize(static_cast<size_t>(D));
  for (int64_t d = 0; d < D; ++d) pca.mean[static_cast<size_t>(d)] = static_cast<float>(mean[d]);
  pca.components.resize(static_cast<size_t>(kPcaComponents * D));
  for (int k = 0; k < kPcaComponents; ++k) {
    const int64_t col = D - 1 - k;  // eigenvalues come in increasing order
    Eigen::VectorXd axis = solver.eigenvectors().col(col);
    Eigen::Index largest = 0;
    axis.cwiseAbs().maxCoeff(&largest);  // the first of equal maxima
    if (axis[largest] < 0) axis = -axis;
    for (int64_t d = 0; d < D; ++d) pca.components[static_cast<size_t>(k * D + d)] = static_cast<float>(axis[d]);
    pca.explained_variance_ratio[static_cast<size_t>(k)] = solver.eigenvalues()[col] / total;
  }
  // The colour scale from the stored (float) mean and axes, so a saved and reloaded PCA colours the same.
  for (int k = 0; k < kPcaComponents; ++k) {
    pca.low[static_cast<size_t>(k)] = std::numeric_limits<float>::infinity();
    pca.high[static_cast<size_t>(k)] = -std::numeric_limits<float>::infinity();
  }
  for_each_row(patches, masks, [&](const float* row) {
    for (int k = 0; k < kPcaComponents; ++k) {
      const auto s = static_cast<float>(score(pca, k, row));
      pca.low[static_cast<size_t>(k)] = std::min(pca.low[static_cast<size_t>(k)], s);
      pca.high[static_cast<size_t>(k)] = std::max(pca.high[static_cast<size_t>(k)], s);
    }
  });
  return pca;
}

Result<Tensor> project_patches(const PatchPca& pca, const Tensor& patches) {
  const ScopedDefaultFloatEnv float_env;
  DINOV3_RETURN_IF_ERROR(check_pca(pca));
  if (patches.shape.size() != 2 || patches.shape[1] != pca.dim() || patches.numel() != shape_numel(patches.shape)) {
    return make_error(ErrorCode::kInvalidArgument, "PCA: patch features " + shape_to_string(patches.shape) +
                                                       " do not have the PCA's width " + std::to_string(pca.dim()));
  }
  const int64_t P = patches.shape[0];
  Tensor scores({P, kPcaComponents});
  for (int64_t p = 0; p < P; ++p) {
    for (int k = 0; k < kPcaComponents; ++k) {
      scores.data[static_cast<size_t>(p * kPcaComponents + k)] = static_cast<float>(score(pca, k, patches.ptr() + p * pca.dim()));
    }
  }
  return scores;
}

std::array<uint8_t, 3> pca_color(const PatchPca& pca, const float* scores) {
  const ScopedDefaultFloatEnv float_env;
  std::array<uint8_t, 3> rgb{};
  for (size_t k = 0; k < 3; ++k) {
    const double low = pca.low[k], high = pca.high[k];
    const double t = high > low ? std::clamp((scores[k] - low) / (high - low), 0.0, 1.0) : 0.0;
    rgb[k] = static_cast<uint8_t>(std::lround(255.0 * t));
  }
  return rgb;
}

Result<std::vector<std::vector<uint8_t>>> foreground_masks(const std::vector<const DenseFeatures*>& images) {
  const ScopedDefaultFloatEnv float_env;
  std::vector<const Tensor*> sets;
  for (const DenseFeatures* f : images) {
    DINOV3_RETURN_IF_ERROR(analysis_detail::check_dense_features(*f));
    sets.push_back(&f->patches);
  }
  DINOV3_ASSIGN_OR_RETURN(const PatchPca all, fit_patch_pca(sets));
  std::vector<std::vector<float>> first(images.size());
  double border_sum = 0.0;
  int64_t border_count = 0;
  for (size_t i = 0; i < images.size(); ++i) {
    const DenseFeatures& f = *images[i];
    first[i].resize(static_cast<size_t>(f.grid_h * f.grid_w));
    for (int64_t r = 0; r < f.grid_h; ++r) {
      for (int64_t c = 0; c < f.grid_w; ++c) {
        const int64_t p = r * f.grid_w + c;
        const double s = score(all, 0, f.patches.ptr() + p * f.dim());
        first[i][static_cast<size_t>(p)] = static_cast<float>(s);
        if (r == 0 || c == 0 || r == f.grid_h - 1 || c == f.grid_w - 1) {
          border_sum += s;
          ++border_count;
        }
      }
    }
  }
  const bool positive = border_sum / static_cast<double>(border_count) <= 0.0;
  std::vector<std::vector<uint8_t>> masks(images.size());
  for (size_t i = 0; i < images.size(); ++i) {
    masks[i].resize(first[i].size());
    for (size_t p = 0; p < first[i].size(); ++p) masks[i][p] = positive ? first[i][p] > 0.0f : first[i][p] < 0.0f;
  }
  return masks;
}

Result<ImageRGB8> render_pca(const DenseFeatures& f, const PatchPca& pca, const std::vector<uint8_t>* mask) {
  const ScopedDefaultFloatEnv float_env;
  DINOV3_RETURN_IF_ERROR(analysis_detail::check_dense_features(f));
  if (mask != nullptr && mask->size() != static_cast<size_t>(f.grid_h * f.grid_w)) {
    return make_error(ErrorCode::kInvalidArgument, f.source + ": the foreground mask does not match the patch grid");
  }
  DINOV3_ASSIGN_OR_RETURN(const Tensor scores, project_patches(pca, f.patches));
  const int64_t P = f.grid_h * f.grid_w;
  std::vector<std::array<uint8_t, 3>> colors(static_cast<size_t>(P), {0, 0, 0});
  for (int64_t p = 0; p < P; ++p) {
    if (mask != nullptr && (*mask)[static_cast<size_t>(p)] == 0) continue;
    colors[static_cast<size_t>(p)] = pca_color(pca, scores.ptr() + p * kPcaComponents);
  }
  const analysis_detail::PixelPatches m = analysis_detail::pixel_patches(f);
  ImageRGB8 out;
  out.width = f.image.width;
  out.height = f.image.height;
  out.pixels.assign(f.image.pixels.size(), 0);
  for (int y = 0; y < out.height; ++y) {
    const int64_t row = m.row[static_cast<size_t>(y)];
    if (row < 0) continue;
    uint8_t* dst = out.pixels.data() + size_t(y) * size_t(out.width) * 3;
    for (int x = 0; x < out.width; ++x) {
      const int64_t col = m.column[static_cast<size_t>(x)];
      if (col < 0) continue;
      const auto& c = colors[static_cast<size_t>(row * f.grid_w + col)];
      std::copy(c.begin(), c.end(), dst + size_t(x) * 3);
    }
  }
  return out;
}

Result<PcaPictures> pca_pictures(const std::vector<const DenseFeatures*>& images, const PcaPictureOptions& options) {
  const ScopedDefaultFloatEnv float_env;
  if (images.empty()) return make_error(ErrorCode::kInvalidArgument, "PCA: no images given");
  PcaPictures out;
  std::vector<const Tensor*> sets;
  for (const DenseFeatures* f : images) {
    DINOV3_RETURN_IF_ERROR(analysis_detail::check_dense_features(*f));
    sets.push_back(&f->patches);
  }
  if (options.foreground) {
    DINOV3_ASSIGN_OR_RETURN(out.masks, foreground_masks(images));
  }
  if (options.reuse != nullptr) {
    DINOV3_RETURN_IF_ERROR(check_pca(*options.reuse));
    if (options.reuse->dim() != images.front()->dim()) {
      return make_error(ErrorCode::kInvalidArgument, "the saved PCA is for features of width " +
                                                         std::to_string(options.reuse->dim()) + ", this model's are " +
                                                         std::to_string(images.front()->dim()));
    }
    out.pca = *options.reuse;
  } else {
    Result<PatchPca> fitted = fit_patch_pca(sets, options.foreground ? &out.masks : nullptr);
    if (!fitted.ok()) {
      return options.foreground ? fitted.status().with_context("over the foreground patches") : fitted.status();
    }
    out.pca = std::move(fitted).value();
  }
  for (size_t i = 0; i < images.size(); ++i) {
    DINOV3_ASSIGN_OR_RETURN(ImageRGB8 picture, render_pca(*images[i], out.pca, options.foreground ? &out.masks[i] : nullptr));
    out.pictures.push_back(std::move(picture));
  }
  return out;
}

Status save_patch_pca(const std::string& path, const PatchPca& pca, const std::map<std::string, std::string>& metadata,
                      bool overwrite) {
  DINOV3_RETURN_IF_ERROR(check_pca(pca));
  const int64_t D = pca.dim();
  const Tensor mean({D}, pca.mean);
  const Tensor components({kPcaComponents, D}, pca.components);
  Tensor ratio({kPcaComponents}), range({kPcaComponents, 2});
  for (size_t k = 0; k < kPcaComponents; ++k) {
    ratio.data[k] = static_cast<float>(pca.explained_variance_ratio[k]);
    range.data[2 * k] = pca.low[k];
    range.data[2 * k + 1] = pca.high[k];
  }
  std::map<std::string, std::string> meta = metadata;
  meta["dim"] = std::to_string(D);
  return save_safetensors(path,
                          {{"mean", &mean}, {"components", &components}, {"explained_variance_ratio", &ratio}, {"range", &range}},
                          meta, overwrite);
}

Result<PatchPca> load_patch_pca(const std::string& path) {
  DINOV3_ASSIGN_OR_RETURN(const TensorArchive archive, open_safetensors(path));
  auto load = [&](const char* name, const Shape& want) -> Result<Tensor> {
    if (archive.find(name) == nullptr) {
      return make_error(ErrorCode::kFormatError, path + ": no tensor '" + name + "' (not a file saved by --components-out)");
    }
    DINOV3_ASSIGN_OR_RETURN(Tensor t, archive.load_f32(name));
    if (t.shape != want) {
      return make_error(ErrorCode::kFormatError, path + ": '" + name + "' is " + shape_to_string(t.shape) + ", expected " +
                                                     shape_to_string(want));
    }
    return t;
  };
  const RawTensor* mean_raw = archive.find("mean");
  if (mean_raw == nullptr || mean_raw->shape.size() != 1 || mean_raw->shape[0] < kPcaComponents) {
    return make_error(ErrorCode::kFormatError, path + ": no [D] tensor 'mean' (not a file saved by --components-out)");
  }
  const int64_t D = mean_raw->shape[0];
  PatchPca pca;
  DINOV3_ASSIGN_OR_RETURN(Tensor mean, load("mean", {D}));
  DINOV3_ASSIGN_OR_RETURN(Tensor components, load("components", {kPcaComponents, D}));
  DINOV3_ASSIGN_OR_RETURN(const Tensor ratio, load("explained_variance_ratio", {kPcaComponents}));
  DINOV3_ASSIGN_OR_RETURN(const Tensor range, load("range", {kPcaComponents, 2}));
  pca.mean = std::move(mean.data);
  pca.components = std::move(components.data);
  for (size_t k = 0; k < kPcaComponents; ++k) {
    pca.explained_variance_ratio[k] = ratio.data[k];
    pca.low[k] = range.data[2 * k];
    pca.high[k] = range.data[2 * k + 1];
  }
  // The colour scale maps [low, high] to [0, 255]: both finite (an infinite end gave NaN colours).
  if (const Status st = check_pca(pca); !st.ok()) return make_error(ErrorCode::kFormatError, path + ": " + st.message());
  return pca;
}

}  // namespace dinov3
