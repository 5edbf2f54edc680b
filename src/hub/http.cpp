#include "hub/http.h"

#include <curl/curl.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <memory>
#include <mutex>

#include "dinov3/version.h"

namespace dinov3::hub {
namespace {

// An error answer's body is kept only to this size: enough for the hub's JSON error, never a whole file.
constexpr size_t kMaxErrorBody = 64 * 1024;
// A listing or config kept in memory; anything larger is not what the hub sends there.
constexpr size_t kMaxKeptBody = 64 * 1024 * 1024;

struct Transfer {
  const HttpRequest* request = nullptr;
  CURL* curl = nullptr;
  HttpResponse response;
  bool stopped = false;  // on_body asked to stop
};

std::string trim(std::string s) {
  const auto not_space = [](unsigned char c) { return !std::isspace(c); };
  s.erase(s.begin(), std::find_if(s.begin(), s.end(), not_space));
  s.erase(std::find_if(s.rbegin(), s.rend(), not_space).base(), s.end());
  return s;
}

size_t on_header(char* data, size_t size, size_t count, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const std::string line(data, size * count);
  if (line.rfind("HTTP/", 0) == 0) {
    t->response.headers.clear();  // a new answer (after a redirect or a 100 Continue)
  } else if (const auto colon = line.find(':'); colon != std::string::npos) {
    std::string name = line.substr(0, colon);
    std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
    t->response.headers[trim(name)] = trim(line.substr(colon + 1));
  }
  return size * count;
}

size_t on_write(char* data, size_t size, size_t count, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const size_t n = size * count;
  curl_easy_getinfo(t->curl, CURLINFO_RESPONSE_CODE, &t->response.status);
  const long s = t->response.status;
  if (s >= 300 && s < 400) return n;  // a redirect's own body
  if (s >= 200 && s < 300 && t->request->on_body) {
    if (!t->request->on_body(data, n, t->response)) {
      t->stopped = true;
      return 0;
    }
    return n;
  }
  const size_t cap = (s >= 200 && s < 300) ? kMaxKeptBody : kMaxErrorBody;
  if (t->response.body.size() + n > cap) {
    if (s >= 200 && s < 300) {
      t->stopped = true;
      return 0;
    }
    t->response.body.append(data, cap - t->response.body.size());
    return n;
  }
  t->response.body.append(data, n);
  return n;
}

void global_init() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct CurlDeleter {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
struct SlistDeleter {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};

}  // namespace

std::string HttpResponse::header(const std::string& lower_name) const {
  const auto it = headers.find(lower_name);
  return it == headers.end() ? std::string() : it->second;
}

Result<HttpResponse> http_request(const HttpRequest& request) {
  global_init();
  std::unique_ptr<CURL, CurlDeleter> curl(curl_easy_init());
  if (!curl) return make_error(ErrorCode::kInternal, "cannot start an HTTP client (curl_easy_init failed)");
  std::unique_ptr<curl_slist, SlistDeleter> headers;
  for (const auto& h : request.headers) {
    curl_slist* appended = curl_slist_append(headers.get(), h.c_str());
    if (appended == nullptr) return make_error(ErrorCode::kOutOfMemory, "cannot build the request headers");
    headers.release();
    headers.reset(appended);
  }
  Transfer t;
  t.request = &request;
  t.curl = curl.get();
  char error[CURL_ERROR_SIZE] = {0};
  const std::string agent = std::string("dinov3/") + version_string();
  CURL* c = curl.get();
  curl_easy_setopt(c, CURLOPT_URL, request.url.c_str());
  curl_easy_setopt(c, CURLOPT_USERAGENT, agent.c_str());
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers.get());
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, request.follow_redirects ? 1L : 0L);
  curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
  // A transfer that moves less than 1 byte/s for 30 s is dropped (and resumed by the caller).
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 30L);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, error);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &t);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_write);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &t);
  if (request.method == "HEAD") {
    curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
  } else if (request.method != "GET") {
    return make_error(ErrorCode::kInternal, "unsupported HTTP method " + request.method);
  }
  const CURLcode rc = curl_easy_perform(c);
  if (t.stopped) return make_error(ErrorCode::kIoError, "transfer stopped");
  if (rc != CURLE_OK) {
    return make_error(ErrorCode::kIoError, error[0] != '\0' ? std::string(error) : curl_easy_strerror(rc));
  }
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &t.response.status);
  char* effective = nullptr;
  if (curl_easy_getinfo(c, CURLINFO_EFFECTIVE_URL, &effective) == CURLE_OK && effective != nullptr) {
    t.response.url = effective;
  }
  char* redirect = nullptr;
  if (curl_easy_getinfo(c, CURLINFO_REDIRECT_URL, &redirect) == CURLE_OK && redirect != nullptr) {
    t.response.redirect_url = redirect;
  }
  return std::move(t.response);
}

std::string url_escape(const std::string& segment) {
  std::string out;
  for (const unsigned char ch : segment) {
    if (std::isalnum(ch) || ch == '-' || ch == '.' || ch == '_' || ch == '~') {
      out += static_cast<char>(ch);
    } else {
      char buf[4];
      std::snprintf(buf, sizeof(buf), "%%%02X", ch);
      out += buf;
    }
  }
  return out;
}

std::string url_origin(const std::string& url) {
  const auto scheme = url.find("://");
  if (scheme == std::string::npos) return {};
  const auto path = url.find_first_of("/?#", scheme + 3);
  std::string origin = url.substr(0, path);
  std::transform(origin.begin(), origin.end(), origin.begin(), [](unsigned char c) { return std::tolower(c); });
  return origin;
}

}  // namespace dinov3::hub
