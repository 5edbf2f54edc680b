// ImagePrefetcher (pipeline.h): the decode-ahead stage of embed and Python's Model.embed hands out every
// file in input order, each equal to preprocess_image_file's tensor, the unreadable ones with their reason.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
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

TEST(ImagePrefetcher, IndicesNoWorkerDecodesAreItemsNotHangs) {
  // Each of these waited forever: skipping past the window, an index past the end, one taken twice, and a
  // window of SIZE_MAX ("no limit"), where consume + window wrapped.
  std::vector<std::string> paths;
  for (int i = 0; i < 40; ++i) paths.push_back(test::fixture(i % 2 ? "images/rocket.jpg" : "images/chelsea.png"));
  for (const size_t window : {size_t{4}, SIZE_MAX}) {
    ImagePrefetcher prefetch(paths, 0, window, 2, small_config());
    ASSERT_TRUE(prefetch.take(0).ok);
    const ImagePrefetcher::Item again = prefetch.take(0);
    EXPECT_FALSE(again.ok);
    EXPECT_NE(again.reason.find("image 0: already taken"), std::string::npos) << again.reason;
    const ImagePrefetcher::Item skipped_to = prefetch.take(10);  // past the window of 4
    ASSERT_TRUE(skipped_to.ok) << skipped_to.reason;
    EXPECT_EQ(skipped_to.chw.data, preprocess_image_file(paths[10], small_config())->data);
    EXPECT_FALSE(prefetch.take(5).ok);  // skipped: gone
    for (size_t i = 11; i < paths.size(); ++i) ASSERT_TRUE(prefetch.take(i).ok) << i;
    const ImagePrefetcher::Item past = prefetch.take(paths.size());
    EXPECT_FALSE(past.ok);
    EXPECT_NE(past.reason.find("past the last of the 40 paths"), std::string::npos) << past.reason;
  }
  ImagePrefetcher late(paths, 50, 4, 1, small_config());  // first past the end
  EXPECT_FALSE(late.take(0).ok);
  EXPECT_FALSE(late.take(50).ok);
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
