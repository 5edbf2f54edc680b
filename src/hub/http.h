// A thin layer over libcurl: one request, its final status and headers, the body streamed or kept.
// Nothing here knows the hub; pull.cpp speaks its protocol through this.
#pragma once

#include <cstddef>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "dinov3/status.h"

namespace dinov3::hub {

struct HttpResponse {
  long status = 0;
  std::map<std::string, std::string> headers;  // the last answer's headers, names lower-cased
  std::string body;                            // the body when not streamed; an error answer's first bytes
  std::string url;                             // the URL that answered (after followed redirects)
  std::string redirect_url;                    // a 3xx answer's Location, made absolute

  std::string header(const std::string& lower_name) const;  // "" when absent
};

struct HttpRequest {
  std::string method = "GET";        // GET or HEAD
  std::string url;
  std::vector<std::string> headers;  // "Name: value"
  bool follow_redirects = false;
  // Receives the body of a 2xx answer as it arrives (the status and headers are already in `r`); returning
  // false stops the transfer. Without it the body is kept in HttpResponse::body.
  std::function<bool(const char* data, size_t n, const HttpResponse& r)> on_body;
};

// An error Status means no complete HTTP answer arrived (connection refused, dropped, timed out, or
// on_body stopped it); its message is curl's reason alone (a signed download URL can be kilobytes long,
// so the caller says what it was fetching), never a request header's value.
// An HTTP error status (4xx, 5xx) is an answer, returned as a value.
Result<HttpResponse> http_request(const HttpRequest& request);

// Percent-encodes one URL path segment ("refs/pr/1" -> "refs%2Fpr%2F1").
std::string url_escape(const std::string& segment);
// "scheme://host[:port]" of an absolute URL ("" when it has none).
std::string url_origin(const std::string& url);

}  // namespace dinov3::hub
