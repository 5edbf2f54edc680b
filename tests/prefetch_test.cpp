// ImagePrefetcher (pipeline.h): the decode-ahead stage of embed and Python's Model.embed hands out every
// file in input order, each equal to preprocess_image_file's tensor, the unreadable ones with their reason.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "dinov3/pipeline.h"
#include "test_labels.h"
#include "test_util.h"

namespace dinov3 {
namespace {

std::vector<std::string> mixed_inputs() {
  return {test::fixture("images/chelsea.png"), test::fixture("images/bad/truncated.jpg"),
          test::fixture("images/rocket.jpg"), test::fixture("images/no_such_file.png"),
          test::fixture("images/camera.png"), test::fixture("images/bad/empty.jpg")};
}

PreprocessConfig small_config() {
  PreprocessConfig pc;
  pc.height = pc.width = 64;
  return pc;
}

DINOV3_SUITE_LABELS(ImagePrefetcher, "unit");

TEST(ImagePrefetcher, HandsOutEveryFileInOrder) {
  const std::vector<std::string> paths = mixed_inputs();
  for (int workers : {1, 3}) {
    for (size_t window : {size_t{1}, size_t{4}, size_t{100}}) {
      ImagePrefetcher prefetch(paths, 0, window, workers, small_config());
      ASSERT_EQ(prefetch.paths(), paths);
      for (size_t i = 0; i < paths.size(); ++i) {
        ImagePrefetcher::Item item = prefetch.take(i);
        Result<Tensor> want = preprocess_image_file(paths[i], small_config());
        ASSERT_EQ(item.ok, want.ok()) << paths[i];
        if (item.ok) {
          EXPECT_EQ(item.chw.shape, (Shape{3, 64, 64}));
          EXPECT_EQ(item.chw.data, want->data) << paths[i];
          EXPECT_TRUE(item.reason.empty());
        } else {
          EXPECT_EQ(item.reason, want.status().message());
          EXPECT_NE(item.reason.find(std::filesystem::path(paths[i]).filename().string()), std::string::npos)
              << item.reason;
        }
      }
    }
  }
}

TEST(ImagePrefetcher, StartsAtFirstAndStopsEarly) {
  const std::vector<std::string> paths = mixed_inputs();
  {
    ImagePrefetcher prefetch(paths, 2, 2, 2, small_config());
    ImagePrefetcher::Item item = prefetch.take(2);
    ASSERT_TRUE(item.ok);
    EXPECT_EQ(item.chw.data, preprocess_image_file(paths[2], small_config())->data);
  }  // destroyed with items still pending: the workers stop and join
  ImagePrefetcher none({}, 0, 4, 2, small_config());
  EXPECT_TRUE(none.paths().empty());
}

DINOV3_SUITE_LABELS(L2NormalizeRows, "unit");

TEST(L2NormalizeRows, UnitRowsAndZeroRowsStayZero) {
  std::vector<float> v = {3, 4, 0, 0, 0, 0, 1, 1, 1};
  l2_normalize_rows(v.data(), 3, 3);
  EXPECT_FLOAT_EQ(v[0], 0.6f);
  EXPECT_FLOAT_EQ(v[1], 0.8f);
  EXPECT_EQ(v[3], 0.0f);
  EXPECT_EQ(v[5], 0.0f);
  EXPECT_FLOAT_EQ(v[6], 1.0f / std::sqrt(3.0f));
}

DINOV3_SUITE_LABELS(ImagePrefetcher, "unit");
DINOV3_SUITE_LABELS(L2NormalizeRows, "unit");

}  // namespace
}  // namespace dinov3
