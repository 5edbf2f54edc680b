// The backend registry: one line per backend. An accelerator backend adds its folder under src/backend/
// and a line to kBuiltins; the model code does not change.
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "backend/reference/reference_backend.h"
#include "dinov3/backend.h"

namespace dinov3 {
namespace {

struct Registry {
  std::mutex mutex;
  std::map<std::string, BackendFactory> factories;
  std::vector<std::string> order;  // registration order, for listings

  Registry() {
    add("cpu", create_cpu_backend);
    add("reference", create_reference_backend);
  }
  void add(const std::string& name, BackendFactory factory) {
    if (factories.find(name) == factories.end()) order.push_back(name);
    factories[name] = std::move(factory);
  }
};

Registry& registry() {
  static Registry r;
  return r;
}

}  // namespace

const char* precision_name(Precision p) {
  switch (p) {
    case Precision::kF32: return "fp32";
    case Precision::kBF16: return "bf16";
    case Precision::kInt8: return "int8";
  }
  return "unknown";
}

bool precision_from_name(const std::string& name, Precision* out) {
  for (Precision p : {Precision::kF32, Precision::kBF16, Precision::kInt8}) {
    if (name == precision_name(p)) {
      *out = p;
      return true;
    }
  }
  return false;
}

std::vector<std::string> backend_names() {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  return r.order;
}

const char* default_backend_name() { return "cpu"; }

Result<std::unique_ptr<Backend>> create_backend(const std::string& name, const BackendOptions& options) {
  BackendFactory factory;
  {
    Registry& r = registry();
    std::lock_guard<std::mutex> lock(r.mutex);
    auto it = r.factories.find(name);
    if (it == r.factories.end()) {
      std::string known;
      for (const auto& n : r.order) known += (known.empty() ? "" : ", ") + n;
      return make_error(ErrorCode::kNotFound, "unknown backend '" + name + "' (available: " + known + ")");
    }
    factory = it->second;
  }
  if (!factory) return make_error(ErrorCode::kInvalidArgument, "backend '" + name + "' was registered without a factory");
  if (options.threads < 0) {
    return make_error(ErrorCode::kInvalidArgument, "threads must be >= 0, got " + std::to_string(options.threads));
  }
  if (Precision p; !precision_from_name(precision_name(options.precision), &p)) {  // a cast of another number
    return make_error(ErrorCode::kInvalidArgument, "precision " + std::to_string(static_cast<int>(options.precision)) +
                                                       " is none of fp32, bf16 and int8");
  }
  return factory(options);
}

void register_backend(const std::string& name, BackendFactory factory) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  r.add(name, std::move(factory));
}

}  // namespace dinov3
