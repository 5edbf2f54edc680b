// JSON documents from files a user passed in (config.json, safetensors headers, index files).
// nlohmann's parser keeps its own stack, but printing, comparing and copying a value recurse, so a
// document nested deeper than any format here needs is refused before it is parsed.
#pragma once

#include <nlohmann/json.hpp>
#include <string_view>

#include "dinov3/status.h"

namespace dinov3::io {

// Far deeper than config.json (4 levels) or a safetensors header (3) ever nests.
inline constexpr int kMaxJsonDepth = 64;

// The deepest nesting of arrays and objects in `text`, strings skipped, without parsing it. Counting
// stops once `limit` is exceeded (the result is then limit + 1). Unbalanced text is the parser's to report.
int json_nesting_depth(std::string_view text, int limit);

// Parses a document nested at most `max_depth` deep. kFormatError "not valid JSON: <where and why>" or
// "JSON nested deeper than <max_depth> levels"; the caller adds which file it was.
Result<nlohmann::json> parse_json(std::string_view text, int max_depth = kMaxJsonDepth);

// A document as text, or kInvalidArgument "<what> holds text that is not UTF-8 ..." when one of its
// strings (a path, a tensor name, metadata) is not: JSON cannot carry those bytes, and a file naming another
// file must not name it wrongly. (nlohmann throws there; a report, which only describes, dumps with
// error_handler_t::replace instead.)
Result<std::string> dump_json(const nlohmann::ordered_json& j, const std::string& what, int indent = -1);

}  // namespace dinov3::io
