// Numbers the toolkit reports: latency statistics and the agreement between two outputs.
#pragma once

#include <cstddef>
#include <vector>

#include "dinov3/status.h"

namespace dinov3 {

struct LatencyStats {
  size_t count = 0;
  double mean = 0, stddev = 0, min = 0, max = 0, p50 = 0, p90 = 0, p99 = 0;  // same unit as the samples
};

// stddev is the sample standard deviation (n - 1); percentiles interpolate linearly between the
// closest ranks, as numpy.percentile does by default. An error for a sample that is NaN or infinite.
Result<LatencyStats> summarize_latencies(std::vector<double> samples);

struct Agreement {
  double rel_error = 0;     // ||a - b|| / ||b||, b the baseline
  double cosine = 0;        // a.b / (||a|| ||b||)
  double mse = 0;           // mean of (a - b)^2
  double max_abs_diff = 0;  // max |a - b|
};

// Accumulated in double over n values.
Agreement compare_outputs(const float* a, const float* baseline, size_t n);

// A batch compared image by image (`images` blocks of `per_image` values), and the worst of each metric over
// the images: the largest rel_error, mse and max_abs_diff, the smallest cosine. A NaN in any image is the
// worst value (it stays NaN, so every threshold comparison fails).
struct BatchAgreement {
  Agreement worst;
  size_t worst_image = 0;  // the image with the largest relative error (the first NaN one)
  std::vector<Agreement> per_image;
};
BatchAgreement compare_images(const float* a, const float* baseline, size_t images, size_t per_image);

}  // namespace dinov3
