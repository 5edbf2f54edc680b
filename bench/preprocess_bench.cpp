// Times image decode + timm preprocessing (256x256 bicubic, the DINOv3 eval transform) on one core, for
// a 640x427 and a 4000x3000 JPEG written at quality 90 into a temporary folder. With --photo the
// images are that photo resized to each size (realistic JPEG entropy); otherwise a synthetic scene of
// gradients, edges and grain.
//
//   preprocess_bench [--photo PATH] [--runs N]
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

// jpeglib.h needs size_t and FILE declared before it.
#include <jpeglib.h>

#include "dinov3/image.h"

namespace {

using dinov3::ImageRGB8;

ImageRGB8 synthetic_scene(int w, int h) {
  ImageRGB8 im{w, h, std::vector<uint8_t>(size_t(w) * h * 3)};
  uint32_t state = 12345;
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      const double u = double(x) / w, v = double(y) / h;
      const bool disc = (u - 0.6) * (u - 0.6) + (v - 0.4) * (v - 0.4) < 0.04;
      for (int c = 0; c < 3; ++c) {
        state = state * 1664525u + 1013904223u;
        const double grain = double(state >> 24) / 255.0 * 24.0 - 12.0;
        double level = 110 + 70 * std::sin(6.0 * u + 2.0 * c) * std::cos(4.0 * v - c) + grain;
        if (disc) level = 220 - 40 * c + grain;
        if (((x / 97) + (y / 61)) % 7 == 0) level *= 0.6;
        im.pixels[(size_t(y) * w + x) * 3 + c] = static_cast<uint8_t>(std::clamp(level, 0.0, 255.0));
      }
    }
  }
  return im;
}

bool write_jpeg(const ImageRGB8& im, int quality, const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return false;
  jpeg_compress_struct cinfo;
  jpeg_error_mgr jerr;
  cinfo.err = jpeg_std_error(&jerr);
  jpeg_create_compress(&cinfo);
  jpeg_stdio_dest(&cinfo, f);
  cinfo.image_width = im.width;
  cinfo.image_height = im.height;
  cinfo.input_components = 3;
  cinfo.in_color_space = JCS_RGB;
  jpeg_set_defaults(&cinfo);
  jpeg_set_quality(&cinfo, quality, TRUE);
  jpeg_start_compress(&cinfo, TRUE);
  while (cinfo.next_scanline < cinfo.image_height) {
    JSAMPROW row = const_cast<uint8_t*>(&im.pixels[size_t(cinfo.next_scanline) * im.width * 3]);
    jpeg_write_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_compress(&cinfo);
  jpeg_destroy_compress(&cinfo);
  return std::fclose(f) == 0;
}

double now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

struct Stats {
  double median = 0, min = 0, max = 0;
};

Stats summarize(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return {v[v.size() / 2], v.front(), v.back()};
}

template <typename F>
Stats time_runs(int runs, F&& f) {
  f();  // warm-up: page cache, allocator, code
  std::vector<double> ms;
  for (int i = 0; i < runs; ++i) {
    const double t0 = now_ms();
    f();
    ms.push_back(now_ms() - t0);
  }
  return summarize(ms);
}

int fail(const std::string& message) {
  std::fprintf(stderr, "preprocess_bench: %s\n", message.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::string photo;
  int runs = 9;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--photo") && i + 1 < argc) {
      photo = argv[++i];
    } else if (!std::strcmp(argv[i], "--runs") && i + 1 < argc) {
      runs = std::max(1, std::atoi(argv[++i]));
    } else {
      return fail("usage: preprocess_bench [--photo PATH] [--runs N]");
    }
  }
  ImageRGB8 source;
  if (!photo.empty()) {
    dinov3::Result<ImageRGB8> decoded = dinov3::decode_image_file(photo);
    if (!decoded.ok()) return fail(decoded.status().message());
    source = std::move(decoded).value();
  }

  char dir_template[] = "/tmp/dinov3_preprocess_bench_XXXXXX";
  if (!mkdtemp(dir_template)) return fail("cannot create a temporary folder");
  const std::string dir = dir_template;
  const dinov3::PreprocessConfig config;  // 256x256, bicubic, crop_pct 1.0: the DINOv3 eval transform
  std::printf("decode + preprocess to 3x%dx%d %s, median of %d runs (min..max), one thread, resample kernel %s\n",
              config.height, config.width, dinov3::interpolation_name(config.interpolation), runs,
              dinov3::resample_kernel_available(dinov3::ResampleKernel::kAvx2) ? "avx2" : "scalar");

  int status = 0;
  for (auto [w, h] : {std::pair{640, 427}, std::pair{4000, 3000}}) {
    ImageRGB8 image;
    if (source.width > 0) {
      dinov3::Result<ImageRGB8> scaled = dinov3::resize_rgb8(source, w, h, dinov3::Interpolation::kBicubic);
      if (!scaled.ok()) return fail(scaled.status().message());
      image = std::move(scaled).value();
    } else {
      image = synthetic_scene(w, h);
    }
    const std::string path = dir + "/" + std::to_string(w) + "x" + std::to_string(h) + ".jpg";
    if (!write_jpeg(image, 90, path)) return fail("cannot write " + path);
    struct stat st {};
    stat(path.c_str(), &st);

    bool ok = true;
    const Stats decode = time_runs(runs, [&] { ok &= dinov3::decode_image_file(path).ok(); });
    const Stats total = time_runs(runs, [&] { ok &= dinov3::preprocess_image_file(path, config).ok(); });
    if (!ok) status = fail("preprocessing " + path + " failed");
    std::printf("%5dx%-5d jpeg %6.2f MB  decode %7.2f ms (%.2f..%.2f)  decode+preprocess %7.2f ms (%.2f..%.2f)\n", w, h,
                st.st_size / 1e6, decode.median, decode.min, decode.max, total.median, total.min, total.max);

    dinov3::Result<ImageRGB8> decoded = dinov3::decode_image_file(path);
    if (!decoded.ok()) return fail(decoded.status().message());
    const int short_side = std::min(w, h);
    const int rw = w <= h ? 256 : int(256.0 * w / short_side), rh = w <= h ? int(256.0 * h / short_side) : 256;
    for (dinov3::ResampleKernel kernel : {dinov3::ResampleKernel::kScalar, dinov3::ResampleKernel::kAvx2}) {
      if (!dinov3::resample_kernel_available(kernel)) continue;
      const Stats resize =
          time_runs(runs, [&] { ok &= dinov3::resize_rgb8(*decoded, rw, rh, config.interpolation, kernel).ok(); });
      std::printf("            full resize to %dx%d, %-6s kernel %7.2f ms (%.2f..%.2f)\n", rw, rh,
                  kernel == dinov3::ResampleKernel::kAvx2 ? "avx2" : "scalar", resize.median, resize.min, resize.max);
    }
    unlink(path.c_str());
  }
  rmdir(dir.c_str());
  return status;
}
