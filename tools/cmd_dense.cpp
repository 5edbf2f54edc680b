// dinov3 pca and dinov3 similarity: pictures of patch features (dinov3/analysis.h does the work).
#include <algorithm>
#include <array>
#include <cstdio>
#include <filesystem>
#include <map>

#include "cli_common.h"
#include "commands.h"
#include "dinov3/analysis.h"

namespace dinov3::cli {

namespace {

namespace fs = std::filesystem;

// What both commands take besides their own options.
struct DenseOptions {
  ModelOptions model;
  InputSize size;
  bool exif_transpose = false;
  int64_t max_pixels = DecodeOptions{}.max_pixels;
  std::string out;
  bool overwrite = false;
};

void add_dense_options(CLI::App& cmd, DenseOptions* opts) {
  add_model_options(cmd, &opts->model);
  add_size_options(cmd, &opts->size);
  add_decode_options(cmd, &opts->exif_transpose, &opts->max_pixels, "refuse");
  cmd.add_flag("--overwrite", opts->overwrite, "replace existing output files");
}

DecodeOptions decode_options(const DenseOptions& o) {
  DecodeOptions dec;
  dec.exif_transpose = o.exif_transpose;
  dec.max_pixels = o.max_pixels;
  return dec;
}

// <folder>/<stem of input>.<suffix>.png; the input's own folder when `folder` is empty.
std::string picture_path(const std::string& input, const std::string& folder, const std::string& suffix) {
  const fs::path in(input);
  const fs::path dir = folder.empty() ? in.parent_path() : fs::path(folder);
  return (dir / (in.stem().string() + "." + suffix + ".png")).string();
}

// -o names a folder when it is one, or when it ends in '/' (a folder still to be made).
bool names_folder(const std::string& out) {
  std::error_code ec;
  return (!out.empty() && out.back() == '/') || fs::is_directory(out, ec);
}

// Refuses, before any work is done, an output that exists (without --overwrite) or that is an input.
Status check_outputs(const std::vector<std::string>& outputs, const std::vector<std::string>& inputs, bool overwrite) {
  std::map<std::string, size_t> seen;
  for (size_t i = 0; i < outputs.size(); ++i) {
    std::error_code ec;
    std::string key = fs::weakly_canonical(outputs[i], ec).string();
    if (ec) key = outputs[i];
    if (auto it = seen.find(key); it != seen.end()) {
      return make_error(ErrorCode::kInvalidArgument, inputs[it->second] + " and " + inputs[i] +
                                                         " would both be written to " + outputs[i] +
                                                         " (give -o a folder of its own per name, or rename one)");
    }
    seen[key] = i;
    DINOV3_RETURN_IF_ERROR(check_not_written_over(outputs[i], inputs, "an input image"));
    if (!overwrite && fs::exists(outputs[i], ec)) {
      return make_error(ErrorCode::kInvalidArgument, outputs[i] + ": already exists (pass --overwrite to replace it)");
    }
  }
  return {};
}

// A PNG at `out`, its folder made first when missing.
Status write_picture(const std::string& out, const ImageRGB8& picture, bool overwrite) {
  if (const fs::path parent = fs::path(out).parent_path(); !parent.empty()) {
    std::error_code ec;
    fs::create_directories(parent, ec);
    if (ec) return make_error(ErrorCode::kIoError, parent.string() + ": cannot create the folder: " + ec.message());
  }
  return write_png_file(out, picture, overwrite);
}

std::string input_size_text(const DenseFeatures& f) {
  return std::to_string(f.preprocess.width) + "x" + std::to_string(f.preprocess.height) + " input, " +
         std::to_string(f.grid_h) + "x" + std::to_string(f.grid_w) + " patches";
}

// ---- pca ------------------------------------------------------------------------------------------------

struct PcaOptions {
  DenseOptions dense;
  std::vector<std::string> images;
  bool foreground = false;
  std::string components_out;
  std::string components_in;
};

Result<std::vector<std::string>> pca_outputs(const PcaOptions& o) {
  std::vector<std::string> outputs;
  const std::string& out = o.dense.out;
  std::error_code ec;
  if (out.empty()) {
    for (const auto& in : o.images) outputs.push_back(picture_path(in, "", "pca"));
  } else if (o.images.size() == 1 && !names_folder(out)) {
    outputs.push_back(out);
  } else {
    if (fs::exists(out, ec) && !fs::is_directory(out, ec)) {
      return make_error(ErrorCode::kInvalidArgument, "-o " + out + " is a file; with several images -o names a folder");
    }
    for (const auto& in : o.images) outputs.push_back(picture_path(in, out, "pca"));
  }
  DINOV3_RETURN_IF_ERROR(check_outputs(outputs, o.images, o.dense.overwrite));
  if (!o.components_out.empty()) {
    std::vector<std::string> inputs = o.images;
    if (!o.components_in.empty()) inputs.push_back(o.components_in);
    DINOV3_RETURN_IF_ERROR(check_not_written_over(o.components_out, inputs, "an input"));
    DINOV3_RETURN_IF_ERROR(check_not_written_over(o.components_out, outputs, "a picture this command writes"));
    if (!o.dense.overwrite && fs::exists(o.components_out, ec)) {
      return make_error(ErrorCode::kInvalidArgument, o.components_out + ": already exists (pass --overwrite to replace it)");
    }
  }
  return outputs;
}

Result<int> run_pca(const PcaOptions& o) {
  if (o.images.empty()) return make_error(ErrorCode::kInvalidArgument, "no images given");
  DINOV3_ASSIGN_OR_RETURN(const std::vector<std::string> outputs, pca_outputs(o));
  PatchPca reuse;
  if (!o.components_in.empty()) {
    DINOV3_ASSIGN_OR_RETURN(reuse, load_patch_pca(o.components_in));
  }
  DINOV3_ASSIGN_OR_RETURN(LoadedModel loaded, load_model(o.dense.model, o.dense.model.backend));
  describe_model_source(loaded);
  Model& model = *loaded.model;

  std::vector<DenseFeatures> features;
  for (const auto& path : o.images) {
    DINOV3_ASSIGN_OR_RETURN(DenseFeatures f, compute_dense_features(model, path, o.dense.size, decode_options(o.dense)));
    features.push_back(std::move(f));
  }
  std::vector<const DenseFeatures*> views;
  for (const auto& f : features) views.push_back(&f);
  PcaPictureOptions po;
  po.foreground = o.foreground;
  po.reuse = o.components_in.empty() ? nullptr : &reuse;
  DINOV3_ASSIGN_OR_RETURN(const PcaPictures pictures, pca_pictures(views, po));

  const auto& r = pictures.pca.explained_variance_ratio;
  char line[256];
  const std::string fitted = po.reuse ? "components from " + o.components_in
                                      : "3 components over the " + std::string(o.foreground ? "foreground" : "") +
                                            (o.foreground ? " " : "") + "patches of " + std::to_string(features.size()) +
                                            " image(s)";
  std::snprintf(line, sizeof(line), "pca:    %s, explained variance ratio %.4f, %.4f, %.4f\n", fitted.c_str(), r[0],
                r[1], r[2]);
  std::printf("model:  %s (%s)\n%s", model.config().architecture.c_str(), model.directory().c_str(), line);
  for (size_t i = 0; i < features.size(); ++i) {
    const std::string& out = outputs[i];
    DINOV3_RETURN_IF_ERROR(write_picture(out, pictures.pictures[i], o.dense.overwrite));
    std::string fg;
    if (o.foreground) {
      size_t n = 0;
      for (uint8_t m : pictures.masks[i]) n += m;
      fg = ", foreground " + std::to_string(n) + " of " + std::to_string(pictures.masks[i].size()) + " patches";
    }
    std::printf("  %s: %s%s -> %s\n", o.images[i].c_str(), input_size_text(features[i]).c_str(), fg.c_str(), out.c_str());
  }
  if (!o.components_out.empty()) {
    const std::map<std::string, std::string> meta = {
        {"architecture", model.config().architecture},
        {"fitted_on", o.foreground ? "foreground patches" : "all patches"},
        {"color", "channel k = round(255 * clamp((score_k - range[k][0]) / (range[k][1] - range[k][0]), 0, 1))"}};
    DINOV3_RETURN_IF_ERROR(save_patch_pca(o.components_out, pictures.pca, meta, o.dense.overwrite));
    std::printf("saved:  %s (mean, components, explained_variance_ratio, range)\n", o.components_out.c_str());
  }
  return 0;
}

// ---- similarity -----------------------------------------------------------------------------------------

struct SimilarityOptions {
  DenseOptions dense;
  std::string image;
  std::string point;
  std::string to;
  double alpha = 0.5;
};

Result<std::array<int, 2>> parse_point(const std::string& text) {
  int x = 0, y = 0, consumed = 0;
  if (std::sscanf(text.c_str(), "%d,%d%n", &x, &y, &consumed) != 2 || consumed != static_cast<int>(text.size())) {
    return make_error(ErrorCode::kInvalidArgument, "--point must be X,Y in pixels of the image, e.g. 120,80 (got '" +
                                                       text + "')");
  }
  return std::array<int, 2>{x, y};
}

Result<int> run_similarity(const SimilarityOptions& o) {
  DINOV3_ASSIGN_OR_RETURN(const auto point, parse_point(o.point));
  if (!(o.alpha >= 0.0 && o.alpha <= 1.0)) return make_error(ErrorCode::kInvalidArgument, "--alpha must be in [0, 1]");
  const std::string& target_path = o.to.empty() ? o.image : o.to;
  const std::string out = o.dense.out.empty() || names_folder(o.dense.out)
                              ? picture_path(target_path, o.dense.out, "similarity")
                              : o.dense.out;
  std::vector<std::string> inputs = {o.image};
  if (!o.to.empty()) inputs.push_back(o.to);
  DINOV3_RETURN_IF_ERROR(check_outputs({out}, inputs, o.dense.overwrite));
  DINOV3_ASSIGN_OR_RETURN(LoadedModel loaded, load_model(o.dense.model, o.dense.model.backend));
  describe_model_source(loaded);
  Model& model = *loaded.model;

  DINOV3_ASSIGN_OR_RETURN(const DenseFeatures source,
                          compute_dense_features(model, o.image, o.dense.size, decode_options(o.dense)));
  DINOV3_ASSIGN_OR_RETURN(const int64_t patch, patch_for_point(source, point[0], point[1]));
  DenseFeatures other;
  if (!o.to.empty()) {
    DINOV3_ASSIGN_OR_RETURN(other, compute_dense_features(model, o.to, o.dense.size, decode_options(o.dense)));
  }
  const DenseFeatures& target = o.to.empty() ? source : other;
  const int64_t D = source.dim();
  DINOV3_ASSIGN_OR_RETURN(const std::vector<float> sim, patch_similarity(source.patches.ptr() + patch * D, D, target));
  DINOV3_ASSIGN_OR_RETURN(const ImageRGB8 picture, render_similarity(target, sim, o.alpha));
  DINOV3_RETURN_IF_ERROR(write_picture(out, picture, o.dense.overwrite));

  const auto [lo, hi] = std::minmax_element(sim.begin(), sim.end());
  std::printf("model:  %s (%s)\n", model.config().architecture.c_str(), model.directory().c_str());
  std::printf("query:  %s pixel (%d,%d) -> patch row %lld, column %lld (%s)\n", o.image.c_str(), point[0], point[1],
              static_cast<long long>(patch / source.grid_w), static_cast<long long>(patch % source.grid_w),
              input_size_text(source).c_str());
  std::printf("map:    cosine similarity to the %lld patches of %s (%s): min %.4f, max %.4f\n",
              static_cast<long long>(sim.size()), target.source.c_str(), input_size_text(target).c_str(), *lo, *hi);
  std::printf("wrote:  %s (viridis over [min, max], alpha %.2f)\n", out.c_str(), o.alpha);
  return 0;
}

}  // namespace

Command add_pca_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("pca", "PCA of patch features as an RGB picture per image (one PCA over all images)");
  auto opts = std::make_shared<PcaOptions>();
  add_dense_options(*cmd, &opts->dense);
  cmd->add_option("images", opts->images, "image files")->required();
  cmd->add_option("-o,--output", opts->dense.out,
                  "output PNG (one image) or folder (several: <stem>.pca.png in it); default <stem>.pca.png beside each image");
  cmd->add_flag("--foreground", opts->foreground,
                "black out background patches (first component thresholded at its mean) and fit the colours on the rest");
  cmd->add_option("--components-out", opts->components_out, "save the PCA (mean, axes, colour range) as safetensors");
  cmd->add_option("--components-in", opts->components_in, "colour with a saved PCA instead of fitting one");
  return {cmd, [opts]() { return run_pca(*opts); }};
}

Command add_similarity_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("similarity",
                                 "Cosine similarity of the patch under one pixel to every patch, as an overlay picture");
  auto opts = std::make_shared<SimilarityOptions>();
  add_dense_options(*cmd, &opts->dense);
  cmd->add_option("image", opts->image, "the image the point is in")->required();
  cmd->add_option("--point", opts->point, "X,Y: pixel coordinates in the image (0,0 is the top-left pixel)")->required();
  cmd->add_option("--to", opts->to, "compare with the patches of this image instead of the same one");
  cmd->add_option("-o,--output", opts->dense.out,
                  "output PNG, or a folder for <stem>.similarity.png (default: beside the compared image)");
  cmd->add_option("--alpha", opts->alpha, "weight of the colour map over the image")->capture_default_str();
  return {cmd, [opts]() { return run_similarity(*opts); }};
}

}  // namespace dinov3::cli
