// Which patch each image pixel belongs to (see dinov3/analysis.h, "Pixels and patches"). The mapping is
// separable: a pixel's patch column depends only on its x, its patch row only on its y.
#pragma once

#include <cstdint>
#include <vector>

#include "dinov3/analysis.h"

namespace dinov3::analysis_detail {

// Patch column of image column x (patch row of image row y): the patch under the pixel centre, or -1
// when the preprocessing cropped it away.
int64_t patch_column(const DenseFeatures& f, int x);
int64_t patch_row(const DenseFeatures& f, int y);

// The same for every column and row of the image.
struct PixelPatches {
  std::vector<int64_t> column;  // [image width]
  std::vector<int64_t> row;     // [image height]
};
PixelPatches pixel_patches(const DenseFeatures& f);

// Checks that `f` holds a decoded image and [grid_h * grid_w, D] patches.
Status check_dense_features(const DenseFeatures& f);

}  // namespace dinov3::analysis_detail
