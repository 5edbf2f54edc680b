// Dense features you can see: one image's patch features at a chosen resolution, their PCA as RGB
// pictures, and patch-to-patch cosine similarity maps. The linear algebra is Eigen's; pictures are
// ImageRGB8 at the image's own size (write them with write_png_file).
//
// Pixels and patches. Image pixel (x, y) is taken at its centre (x + 0.5, y + 0.5) and carried into the
// model input by the preprocessing (image_to_input: the resize ratio, then the crop offset); it belongs
// to patch (floor(v / patch), floor(u / patch)) when that position (u, v) is inside the input, and to no
// patch when the preprocessing cropped it away. Pictures colour each pixel with its patch (nearest
// neighbour: one flat block per patch).
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "dinov3/image.h"
#include "dinov3/model.h"
#include "dinov3/pipeline.h"
#include "dinov3/status.h"
#include "dinov3/tensor.h"

namespace dinov3 {

// One image's patch features and how its pixels reached them.
struct DenseFeatures {
  std::string source;           // where the image came from (used in messages)
  ImageRGB8 image;              // the decoded image
  PreprocessConfig preprocess;  // how it became the model input (preprocess.height x preprocess.width)
  PreprocessGeometry geometry;  // where its pixels went
  int patch_size = 16;
  int64_t grid_h = 0, grid_w = 0;  // patch rows and columns
  Tensor patches;                  // [grid_h * grid_w, D]: final-normed patch tokens (no cls, no registers)

  int64_t dim() const { return patches.shape.size() == 2 ? patches.shape[1] : 0; }
};

// Preprocesses `image` for `model` at `size` (preprocess_config_for_image; without a size, the model's own
// preprocessing) and keeps its patch features. An image smaller than one patch is an error.
Result<DenseFeatures> compute_dense_features(Model& model, ImageRGB8 image, const InputSize& size,
                                             const std::string& source = "image");
// decode_image_file + compute_dense_features.
Result<DenseFeatures> compute_dense_features(Model& model, const std::string& path, const InputSize& size,
                                             const DecodeOptions& options = {});

// The patch under image pixel (x, y): its row in `patches`, or -1 when the pixel is outside the image or
// cropped away by the preprocessing.
int64_t patch_at_pixel(const DenseFeatures& f, int x, int y);
// Same, with an error that says which part of the image the model sees when (x, y) is outside it.
Result<int64_t> patch_for_point(const DenseFeatures& f, int x, int y);

// ---- PCA ------------------------------------------------------------------------------------------------

constexpr int kPcaComponents = 3;

// Three principal axes of a set of patch features and the colour scale that goes with them.
//
// Fit: the patches are centred on their mean; the axes are the eigenvectors of the D x D covariance with
// the three largest eigenvalues (Eigen's SelfAdjointEigenSolver, in double). Sign: each axis is flipped so
// that its coefficient of largest magnitude is positive (the first such coefficient on a tie).
// explained_variance_ratio[k] = eigenvalue k / the sum of all D eigenvalues (the total variance).
// Colour: channel k of a patch = round(255 * clamp((score_k - low[k]) / (high[k] - low[k]), 0, 1)), with
// score_k = (x - mean) . axis_k and low / high the minimum and maximum score_k over the fitted patches
// (channel 0 when high == low); R, G, B are components 1, 2, 3.
struct PatchPca {
  std::vector<float> mean;        // [D]
  std::vector<float> components;  // [3, D], row k = axis k (unit length), largest variance first
  std::array<double, kPcaComponents> explained_variance_ratio{};
  std::array<float, kPcaComponents> low{}, high{};

  int64_t dim() const { return static_cast<int64_t>(mean.size()); }
};

// Fits over the rows of every [P_i, D] tensor together, leaving out row p of tensor i where
// (*masks)[i][p] == 0 when masks are given. Needs two patches that differ.
Result<PatchPca> fit_patch_pca(const std::vector<const Tensor*>& patches,
                               const std::vector<std::vector<uint8_t>>* masks = nullptr);

// scores[p, k] = (row p - mean) . axis k, in double, stored as float: [P, 3].
Result<Tensor> project_patches(const PatchPca& pca, const Tensor& patches);

// The colour of one patch from its three scores (the mapping above).
std::array<uint8_t, 3> pca_color(const PatchPca& pca, const float* scores);

// Foreground patches of each image, by thresholding the first principal component of all their patches
// together (fit_patch_pca without masks) at 0, i.e. at the mean. Which side is foreground: the side the
// border patches (first and last grid row and column, all images) are not on on average; so foreground =
// score_1 > 0 when the border's mean score_1 is <= 0, else score_1 < 0. 1 marks foreground.
Result<std::vector<std::vector<uint8_t>>> foreground_masks(const std::vector<const DenseFeatures*>& images);

// The PCA picture of one image at its own size: each pixel the pca_color of its patch, black where the
// pixel was cropped away or its patch is masked out (mask[p] == 0).
Result<ImageRGB8> render_pca(const DenseFeatures& f, const PatchPca& pca, const std::vector<uint8_t>* mask = nullptr);

// `dinov3 pca` in one call. Without `reuse`, one PCA is fitted over the patches of all images together
// (over the foreground patches only, with `foreground`), so colours compare across images; with `reuse`
// (a saved PatchPca) its axes and colour scale are applied as they are.
struct PcaPictureOptions {
  bool foreground = false;
  const PatchPca* reuse = nullptr;
};
struct PcaPictures {
  PatchPca pca;                              // the one used
  std::vector<ImageRGB8> pictures;           // one per image
  std::vector<std::vector<uint8_t>> masks;   // with `foreground`: one per image
};
Result<PcaPictures> pca_pictures(const std::vector<const DenseFeatures*>& images, const PcaPictureOptions& options);

// A PatchPca as safetensors: "mean" [D], "components" [3, D], "explained_variance_ratio" [3], "range" [3, 2]
// (low, high per component), metadata from `metadata` plus "dim".
Status save_patch_pca(const std::string& path, const PatchPca& pca, const std::map<std::string, std::string>& metadata,
                      bool overwrite);
Result<PatchPca> load_patch_pca(const std::string& path);

// ---- similarity -----------------------------------------------------------------------------------------

// Cosine similarity of `query` (dim values) to every patch of `target`, in double: [grid_h * grid_w]
// (0 where either vector is zero). An error for a null query or one with a NaN or infinite value.
Result<std::vector<float>> patch_similarity(const float* query, int64_t dim, const DenseFeatures& target);

// The 256-entry viridis colormap (matplotlib's, CC0), entry i = round(255 * the published RGB).
std::array<uint8_t, 3> viridis_color(int index);

// A similarity map over `target` at its own size: t = (s - min) / (max - min) over the map's values (0 when
// they are all equal), colour = viridis_color(round(255 * t)), and each pixel = round((1 - alpha) * image +
// alpha * colour) per channel. Pixels the preprocessing cropped away keep the image's own colour. An error for a
// map holding a NaN or infinite value.
Result<ImageRGB8> render_similarity(const DenseFeatures& target, const std::vector<float>& similarity, double alpha);

}  // namespace dinov3
