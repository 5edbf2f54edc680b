#include "io/json_util.h"

#include <string>

namespace dinov3::io {

int json_nesting_depth(std::string_view text, int limit) {
  int depth = 0, deepest = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;  // the escaped character cannot end the string
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > deepest && (deepest = depth) > limit) return deepest;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return deepest;
}

Result<nlohmann::json> parse_json(std::string_view text, int max_depth) {
  if (json_nesting_depth(text, max_depth) > max_depth) {
    return make_error(ErrorCode::kFormatError, "JSON nested deeper than " + std::to_string(max_depth) + " levels");
  }
  try {
    return nlohmann::json::parse(text.begin(), text.end());
  } catch (const nlohmann::json::exception& e) {
    // what() is "[json.exception.parse_error.101] parse error at line 1, column 2: ..."; keep the part after the tag.
    std::string why = e.what();
    if (const size_t tag_end = why.find("] "); why.rfind("[json.exception.", 0) == 0 && tag_end != std::string::npos)
      why.erase(0, tag_end + 2);
    return make_error(ErrorCode::kFormatError, "not valid JSON: " + why);
  }
}

Result<std::string> dump_json(const nlohmann::ordered_json& j, const std::string& what, int indent) {
  try {
    return j.dump(indent);
  } catch (const nlohmann::json::type_error& e) {
    return make_error(ErrorCode::kInvalidArgument,
                      what + " holds text that is not UTF-8, which JSON cannot carry (" + e.what() + ")");
  }
}

}  // namespace dinov3::io
