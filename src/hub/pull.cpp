// `pull`: one revision of a hub repository into the Hugging Face cache, as huggingface_hub's
// snapshot_download / hf_hub_download lay it out, so timm, transformers and resolve_model all find it.
#include <fnmatch.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "dinov3/hub.h"
#include "hub/cache.h"
#include "hub/http.h"
#include "io/file_util.h"
#include "io/json_util.h"
#include "util/sha256.h"

namespace dinov3 {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

constexpr const char* kDefaultEndpoint = "https://huggingface.co";
constexpr int kMaxRelativeRedirects = 10;
constexpr auto kRetryDelay = std::chrono::seconds(1);  // huggingface_hub waits as long before resuming

// What every request of one pull shares.
struct Session {
  std::string repo_id, revision;
  std::string endpoint;  // without a trailing '/'
  std::string token;
  std::function<void(const PullEvent&)> on_event;

  // The token goes only to the endpoint itself: a download redirected to another host (the hub's CDN)
  // carries a signed URL and must not see it (huggingface_hub drops it there too).
  std::vector<std::string> headers_for(const std::string& url) const {
    std::vector<std::string> h;
    if (!token.empty() && hub::url_origin(url) == hub::url_origin(endpoint)) h.push_back("Authorization: Bearer " + token);
    return h;
  }
  // No message leaves pull_repo holding the token, whatever a server echoes back.
  std::string redact(std::string message) const {
    if (token.empty()) return message;
    for (size_t at; (at = message.find(token)) != std::string::npos;) message.replace(at, token.size(), "<HF_TOKEN>");
    return message;
  }
  void emit(PullEvent e) const {
    if (!on_event) return;
    e.message = redact(std::move(e.message));
    on_event(e);
  }
  std::string where() const { return repo_id + "@" + revision; }
  // Says how many files the commit gives; returns the event each file's events start from.
  PullEvent announce(size_t count, const std::string& commit) const {
    PullEvent e;
    e.kind = PullEvent::Kind::kListed;
    e.count = static_cast<int>(count);
    e.message = commit;
    emit(e);
    e.message.clear();
    return e;
  }
};

std::string read_token() {
  if (std::string t = hub::env("HF_TOKEN"); !t.empty()) return t;
  fs::path path = hub::env("HF_TOKEN_PATH");
  if (path.empty()) {
    if (std::string home = hub::env("HF_HOME"); !home.empty()) {
      path = fs::path(home) / "token";
    } else if (std::string user = hub::env("HOME"); !user.empty()) {
      path = fs::path(user) / ".cache" / "huggingface" / "token";
    }
  }
  // A regular file of one line: a FIFO or a device there is no token (read_text_file refuses them).
  Result<std::string> text = path.empty() ? Result<std::string>(std::string()) : read_text_file(path.string(), 65536);
  if (!text.ok()) return {};
  std::string token = text->substr(0, text->find('\n'));
  while (!token.empty() && std::isspace(static_cast<unsigned char>(token.back()))) token.pop_back();
  return token;
}

// A path inside the repository or the cache that stays there: relative, no empty, "." or ".." part.
bool is_safe_relative(const std::string& p) {
  if (p.empty() || p.front() == '/' || p.find('\\') != std::string::npos || p.find('\0') != std::string::npos) {
    return false;
  }
  size_t start = 0;
  while (true) {
    const size_t end = p.find('/', start);
    const std::string part = p.substr(start, end == std::string::npos ? std::string::npos : end - start);
    if (part.empty() || part == "." || part == "..") return false;
    if (end == std::string::npos) return true;
    start = end + 1;
  }
}

std::string escape_path(const std::string& p) {
  std::string out;
  size_t start = 0;
  while (true) {
    const size_t end = p.find('/', start);
    out += hub::url_escape(p.substr(start, end == std::string::npos ? std::string::npos : end - start));
    if (end == std::string::npos) return out;
    out += '/';
    start = end + 1;
  }
}

bool glob_match(std::string pattern, const std::string& name) {
  if (!pattern.empty() && pattern.back() == '/') pattern += '*';  // a folder: everything under it
  return ::fnmatch(pattern.c_str(), name.c_str(), 0) == 0;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// The files pull takes from `names`: those matching `include`, else the configs, weights and README.
std::vector<std::string> select_files(const std::vector<std::string>& names, const std::vector<std::string>& include) {
  std::vector<std::string> out;
  if (!include.empty()) {
    for (const auto& n : names) {
      if (std::any_of(include.begin(), include.end(), [&](const std::string& g) { return glob_match(g, n); })) {
        out.push_back(n);
      }
    }
    return out;
  }
  const bool has_safetensors =
      std::any_of(names.begin(), names.end(), [](const std::string& n) { return ends_with(n, ".safetensors"); });
  for (const auto& n : names) {
    if (n.find('/') != std::string::npos) continue;  // top level only: what a model folder holds
    if (ends_with(n, ".json") || ends_with(n, ".safetensors") || ends_with(n, ".pth") || n == "README.md" ||
        (n == "pytorch_model.bin" && !has_safetensors)) {
      out.push_back(n);
    }
  }
  return out;
}

// The hub's answer to a failed request, said plainly. `file` is empty for the repository listing.
Status http_status_error(const Session& s, const hub::HttpResponse& r, const std::string& file) {
  const std::string code = r.header("x-error-code");
  const std::string status = " (HTTP " + std::to_string(r.status) + ")";
  switch (r.status) {
    case 401:
      return make_error(ErrorCode::kInvalidArgument,
                        s.token.empty()
                            ? "authentication required: set HF_TOKEN to a token that can read " + s.repo_id + status +
                                  "; the hub also answers so for a repository that does not exist"
                            : "the token was refused for " + s.repo_id + status +
                                  ": check HF_TOKEN, or whether the repository exists");
    case 403:
      return make_error(ErrorCode::kInvalidArgument,
                        "access to " + s.repo_id + " denied" + status +
                            ": the repository is gated or private; accept its conditions on its hub page and set "
                            "HF_TOKEN to a token of an account that has access");
    case 404:
      if (!file.empty() && code != "RepoNotFound" && code != "RevisionNotFound") {
        return make_error(ErrorCode::kNotFound, "file not found: " + file + " in " + s.where() + status);
      }
      return make_error(ErrorCode::kNotFound, "repository or revision not found: " + s.where() + status);
    default: {
      // The origin only: a download URL carries a signature nobody needs to read.
      const std::string detail = r.header("x-error-message");
      return make_error(ErrorCode::kIoError, "HTTP " + std::to_string(r.status) + " from " + hub::url_origin(r.url) +
                                                 " for " + (file.empty() ? "the listing of " + s.where() : file) +
                                                 (detail.empty() ? "" : ": " + detail));
    }
  }
}

Status unreachable(const Session& s, const Status& transport) {
  return make_error(ErrorCode::kIoError, "cannot reach " + s.endpoint + ": " + transport.message() +
                                             " (HF_HUB_OFFLINE=1 uses only the cache)");
}

struct Listing {
  std::string commit;
  std::vector<std::string> files;
};

Result<Listing> fetch_listing(const Session& s) {
  hub::HttpRequest req;
  req.url = s.endpoint + "/api/models/" + s.repo_id + "/revision/" + hub::url_escape(s.revision);
  req.headers = s.headers_for(req.url);
  req.follow_redirects = true;  // a renamed repository answers with a redirect
  Result<hub::HttpResponse> r = hub::http_request(req);
  if (!r.ok()) return unreachable(s, r.status());
  if (r->status != 200) return http_status_error(s, *r, "");
  const std::string bad = req.url + ": not a hub repository listing";
  Result<json> parsed = io::parse_json(r->body);
  if (!parsed.ok()) return make_error(ErrorCode::kFormatError, bad + " (" + parsed.status().message() + ")");
  const json& j = *parsed;
  if (!j.is_object() || !j.contains("sha") || !j["sha"].is_string() || !j.contains("siblings") ||
      !j["siblings"].is_array()) {
    return make_error(ErrorCode::kFormatError, bad + " (no 'sha' and 'siblings')");
  }
  Listing l;
  l.commit = j["sha"].get<std::string>();
  if (!hub::is_commit_sha(l.commit)) return make_error(ErrorCode::kFormatError, bad + " ('sha' is not a commit)");
  for (const auto& sib : j["siblings"]) {
    if (!sib.is_object() || !sib.contains("rfilename") || !sib["rfilename"].is_string()) {
      return make_error(ErrorCode::kFormatError, bad + " (a sibling without 'rfilename')");
    }
    l.files.push_back(sib["rfilename"].get<std::string>());
  }
  return l;
}

// What the HEAD of one file says: where to download it, its etag (the blob's name), commit and size.
struct FileMeta {
  std::string url;
  std::string etag;
  std::string commit;
  int64_t size = 0;
  bool lfs = false;  // the etag is the content's sha256
};

std::string normalize_etag(std::string etag) {
  if (etag.rfind("W/", 0) == 0) etag.erase(0, 2);
  if (etag.size() >= 2 && etag.front() == '"' && etag.back() == '"') etag = etag.substr(1, etag.size() - 2);
  return etag;
}

bool is_sha256(const std::string& s) {
  return s.size() == 64 && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

bool parse_size(const std::string& text, int64_t* out) {
  if (text.empty() || text.size() > 18 ||
      !std::all_of(text.begin(), text.end(), [](unsigned char c) { return std::isdigit(c); })) {
    return false;
  }
  *out = std::stoll(text);
  return true;
}

Result<FileMeta> fetch_file_meta(const Session& s, const std::string& commit, const std::string& file) {
  std::string url = s.endpoint + "/" + s.repo_id + "/resolve/" + commit + "/" + escape_path(file);
  hub::HttpResponse r;
  for (int hop = 0;; ++hop) {
    hub::HttpRequest req;
    req.method = "HEAD";
    req.url = url;
    req.headers = s.headers_for(url);
    req.headers.push_back("Accept-Encoding: identity");  // the real size, not a compressed one
    Result<hub::HttpResponse> got = hub::http_request(req);
    if (!got.ok()) return unreachable(s, got.status());
    r = std::move(got).value();
    if (r.status >= 400) return http_status_error(s, r, file);
    const std::string location = r.header("location");
    const bool redirect = r.status >= 300 && r.status < 400 && !location.empty();
    // A relative redirect (a renamed repository) is followed; an absolute one (the CDN) is where the
    // GET will go, and this answer already carries the metadata.
    const bool relative = location.find("://") == std::string::npos && location.rfind("//", 0) != 0;
    if (redirect && relative && hop < kMaxRelativeRedirects) {
      url = r.redirect_url;
      continue;
    }
    break;
  }
  FileMeta m;
  const bool redirect = r.status >= 300 && r.status < 400;
  m.url = redirect && !r.redirect_url.empty() ? r.redirect_url : url;
  m.commit = r.header("x-repo-commit");
  const std::string linked = r.header("x-linked-etag");
  m.etag = normalize_etag(linked.empty() ? r.header("etag") : linked);
  m.lfs = !linked.empty() && is_sha256(m.etag);
  const std::string what = file + " at " + url;
  if (m.commit.empty()) {
    return make_error(ErrorCode::kFormatError, what + ": the answer has no X-Repo-Commit: " + s.endpoint +
                                                   " does not look like a Hugging Face hub (check HF_ENDPOINT)");
  }
  if (m.commit != commit) {
    return make_error(ErrorCode::kFormatError, what + ": the hub answered commit " + m.commit + ", not " + commit);
  }
  // The etag names the blob file: nothing that could leave blobs/.
  if (m.etag.empty() || m.etag.front() == '.' ||
      !std::all_of(m.etag.begin(), m.etag.end(), [](unsigned char c) { return std::isalnum(c) || c == '-' || c == '_' || c == '.'; })) {
    return make_error(ErrorCode::kFormatError, what + ": no usable ETag in the answer");
  }
  std::string size = r.header("x-linked-size");
  if (size.empty() && !redirect) size = r.header("content-length");
  if (!parse_size(size, &m.size)) return make_error(ErrorCode::kFormatError, what + ": the answer gives no size");
  return m;
}

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};

Status disk_error(const fs::path& path, const std::string& what) {
  return make_error(ErrorCode::kIoError, path.string() + ": " + what + ": " + std::strerror(errno));
}

// Downloads `m` into `partial`, resuming what an earlier attempt left there, and checks it. On success
// `partial` holds exactly the file; on a checksum mismatch it is removed.
Status download(const Session& s, const FileMeta& m, const fs::path& partial, int max_retries, PullEvent event) {
  std::error_code ec;
  int64_t have = fs::exists(partial, ec) ? static_cast<int64_t>(fs::file_size(partial, ec)) : 0;
  if (ec || have > m.size) {
    fs::remove(partial, ec);
    have = 0;
  }
  Sha256 sha;
  if (m.lfs && have > 0) {  // the bytes an earlier run left count towards the checksum
    std::ifstream in(partial, std::ios::binary);
    std::vector<char> buf(1 << 20);
    int64_t left = have;
    while (left > 0 && in.read(buf.data(), static_cast<std::streamsize>(std::min<int64_t>(left, buf.size())))) {
      sha.update(buf.data(), static_cast<size_t>(in.gcount()));
      left -= in.gcount();
    }
    if (left != 0) return make_error(ErrorCode::kIoError, partial.string() + ": cannot read the partial download");
  }
  std::unique_ptr<std::FILE, FileCloser> out(std::fopen(partial.c_str(), "ab"));
  if (!out) return disk_error(partial, "cannot open for writing");
  event.kind = PullEvent::Kind::kStart;
  event.bytes_done = have;
  event.bytes_total = m.size;
  s.emit(event);

  int failures = 0;  // in a row, without new bytes
  while (have < m.size) {
    const int64_t before = have;
    Status stop;  // why on_body refused the bytes (a disk or protocol error: not worth a retry)
    bool first = true;
    hub::HttpRequest req;
    req.url = m.url;
    req.headers = s.headers_for(m.url);
    if (have > 0) req.headers.push_back("Range: bytes=" + std::to_string(have) + "-");
    req.follow_redirects = true;
    req.on_body = [&](const char* data, size_t n, const hub::HttpResponse& r) {
      if (first) {
        first = false;
        if (have > 0 && r.status != 206) {  // the server ignored the Range: start over
          if (std::fflush(out.get()) != 0 || ::ftruncate(::fileno(out.get()), 0) != 0) {
            stop = disk_error(partial, "cannot truncate");
            return false;
          }
          have = 0;
          sha.reset();
        } else if (have > 0 && r.header("content-range").rfind("bytes " + std::to_string(have) + "-", 0) != 0) {
          stop = make_error(ErrorCode::kFormatError, m.url + ": asked for bytes from " + std::to_string(have) +
                                                         ", got Content-Range '" + r.header("content-range") + "'");
          return false;
        }
      }
      if (have + static_cast<int64_t>(n) > m.size) {
        stop = make_error(ErrorCode::kFormatError, m.url + ": the server sent more than the " +
                                                       std::to_string(m.size) + " bytes the hub announced");
        return false;
      }
      if (std::fwrite(data, 1, n, out.get()) != n) {
        stop = disk_error(partial, "cannot write");
        return false;
      }
      if (m.lfs) sha.update(data, n);
      have += static_cast<int64_t>(n);
      event.kind = PullEvent::Kind::kProgress;
      event.bytes_done = have;
      s.emit(event);
      return true;
    };
    Result<hub::HttpResponse> r = hub::http_request(req);
    if (!stop.ok()) return stop;
    if (r.ok() && r->status >= 300) return http_status_error(s, *r, event.file);
    if (have == m.size) break;  // every byte arrived (a connection lost after the last one does not matter)
    const std::string why = r.ok() ? "the answer ended at byte " + std::to_string(have) + " of " + std::to_string(m.size)
                                   : r.status().message();
    if (have > before) failures = 0;
    if (++failures > max_retries) {
      return make_error(ErrorCode::kIoError, "downloading " + event.file + " failed " + std::to_string(failures) +
                                                 " times in a row without progress: " + why +
                                                 "; run pull again to resume from byte " + std::to_string(have));
    }
    event.kind = PullEvent::Kind::kRetry;
    event.bytes_done = have;
    event.message = why;
    s.emit(event);
    event.message.clear();
    std::this_thread::sleep_for(kRetryDelay);
  }
  if (std::fflush(out.get()) != 0 || ::fsync(::fileno(out.get())) != 0) return disk_error(partial, "cannot flush");
  std::FILE* f = out.release();
  if (std::fclose(f) != 0) return disk_error(partial, "cannot close");
  if (m.lfs) {
    const std::string got = sha.hex();
    if (!sha.ok()) return make_error(ErrorCode::kInternal, "sha256 (libcrypto) failed");
    if (got != m.etag) {
      fs::remove(partial, ec);
      return make_error(ErrorCode::kFormatError, "sha256 mismatch for " + event.file + ": expected " + m.etag +
                                                     ", got " + got + "; the download was removed");
    }
  }
  return {};
}

// snapshots/<commit>/<file> -> ../../blobs/<etag> (one more "../" per folder in `file`), made under a
// temporary name and renamed into place, so the name never points at nothing.
Status link_into_snapshot(const fs::path& repo_dir, const std::string& commit, const std::string& file,
                          const std::string& etag) {
  const fs::path pointer = repo_dir / "snapshots" / commit / file;
  std::error_code ec;
  fs::create_directories(pointer.parent_path(), ec);
  if (ec) return make_error(ErrorCode::kIoError, pointer.parent_path().string() + ": cannot create: " + ec.message());
  std::string target;
  for (size_t i = 0, depth = std::count(file.begin(), file.end(), '/') + 2; i < depth; ++i) target += "../";
  target += "blobs/" + etag;
  const fs::path tmp = pointer.string() + ".tmp." + std::to_string(::getpid());
  fs::remove(tmp, ec);
  fs::create_symlink(target, tmp, ec);
  if (ec) return make_error(ErrorCode::kIoError, tmp.string() + ": cannot create a link: " + ec.message());
  fs::rename(tmp, pointer, ec);
  if (ec) {
    std::error_code ignored;
    fs::remove(tmp, ignored);
    return make_error(ErrorCode::kIoError, pointer.string() + ": cannot link into place: " + ec.message());
  }
  return {};
}

// One file of the snapshot: nothing when it is already there, else HEAD, download, check, link.
Result<PulledFile> pull_file(const Session& s, const fs::path& repo_dir, const std::string& commit,
                             const std::string& file, int max_retries, PullEvent event) {
  PulledFile pf;
  pf.name = file;
  std::error_code ec;
  const fs::path pointer = repo_dir / "snapshots" / commit / file;
  if (fs::is_regular_file(pointer, ec)) {  // follows the link: the blob is there
    pf.size = static_cast<int64_t>(fs::file_size(pointer, ec));
    event.kind = PullEvent::Kind::kCached;
    event.bytes_done = event.bytes_total = pf.size;
    s.emit(event);
    return pf;
  }
  DINOV3_ASSIGN_OR_RETURN(const FileMeta m, fetch_file_meta(s, commit, file));
  pf.size = m.size;
  const fs::path blob = repo_dir / "blobs" / m.etag;
  fs::create_directories(blob.parent_path(), ec);
  if (ec) return make_error(ErrorCode::kIoError, blob.parent_path().string() + ": cannot create: " + ec.message());
  // A blob only ever appears complete and checked, so one of the right size (another commit's copy of the
  // same content) is taken as is.
  const bool have_blob = fs::is_regular_file(blob, ec) && static_cast<int64_t>(fs::file_size(blob, ec)) == m.size;
  if (!have_blob) {
    const fs::path partial = blob.string() + ".incomplete";
    DINOV3_RETURN_IF_ERROR(download(s, m, partial, max_retries, event));
    fs::rename(partial, blob, ec);
    if (ec) return make_error(ErrorCode::kIoError, blob.string() + ": cannot move into place: " + ec.message());
    pf.downloaded = true;
    pf.sha256_checked = m.lfs;
  }
  DINOV3_RETURN_IF_ERROR(link_into_snapshot(repo_dir, commit, file, m.etag));
  event.kind = pf.downloaded ? PullEvent::Kind::kDone : PullEvent::Kind::kCached;
  event.bytes_done = event.bytes_total = m.size;
  event.sha256_checked = pf.sha256_checked;
  s.emit(event);
  return pf;
}

// Every regular file under `dir` (links followed), as paths relative to it with '/'.
std::vector<std::string> list_files(const fs::path& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (fs::is_regular_file(it->path(), ec)) out.push_back(it->path().lexically_relative(dir).generic_string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

Result<PullResult> pull_offline(const Session& s, const PullOptions& o, const fs::path& repo_dir, PullResult result) {
  const std::string hint = "; run `dinov3 pull " + s.repo_id + "` where the hub is reachable";
  result.commit = hub::cached_commit(repo_dir, s.revision);
  if (result.commit.empty()) {
    return make_error(ErrorCode::kNotFound, "offline (HF_HUB_OFFLINE) and " + s.where() + " is not in the cache (no " +
                                                (repo_dir / "refs" / s.revision).string() + ")" + hint);
  }
  const fs::path snap = repo_dir / "snapshots" / result.commit;
  result.snapshot_dir = snap.string();
  const std::vector<std::string> present = list_files(snap);
  for (const auto& g : o.include) {
    if (std::none_of(present.begin(), present.end(), [&](const std::string& n) { return glob_match(g, n); })) {
      return make_error(ErrorCode::kNotFound, "offline (HF_HUB_OFFLINE) and the cached snapshot of " + s.where() +
                                                  " (" + snap.string() + ") holds no file matching '" + g + "'" + hint);
    }
  }
  if (o.include.empty() && !hub::holds_model(snap)) {
    return make_error(ErrorCode::kNotFound, "offline (HF_HUB_OFFLINE) and the cached snapshot of " + s.where() + " (" +
                                                snap.string() + ") holds no model (config.json and weights, or one "
                                                ".pth)" + hint);
  }
  const std::vector<std::string> files = select_files(present, o.include);
  PullEvent event = s.announce(files.size(), result.commit);
  for (size_t i = 0; i < files.size(); ++i) {
    PulledFile pf;
    pf.name = files[i];
    std::error_code ec;
    pf.size = static_cast<int64_t>(fs::file_size(snap / files[i], ec));
    event.kind = PullEvent::Kind::kCached;
    event.file = files[i];
    event.index = static_cast<int>(i);
    event.bytes_done = event.bytes_total = pf.size;
    s.emit(event);
    result.files.push_back(pf);
  }
  return result;
}

Result<PullResult> pull_online(const Session& s, const PullOptions& o, const fs::path& repo_dir, PullResult result) {
  DINOV3_ASSIGN_OR_RETURN(const Listing listing, fetch_listing(s));
  result.commit = listing.commit;
  result.snapshot_dir = (repo_dir / "snapshots" / listing.commit).string();
  const std::vector<std::string> files = select_files(listing.files, o.include);
  if (files.empty()) {
    std::string held;
    for (const auto& f : listing.files) held += (held.empty() ? "" : ", ") + f;
    std::string wanted;
    for (const auto& g : o.include) wanted += (wanted.empty() ? "'" : ", '") + g + "'";
    return make_error(ErrorCode::kNotFound, s.where() + " holds no file " +
                                                (o.include.empty() ? std::string("of a model (configs, weights)")
                                                                   : "matching " + wanted) +
                                                " (it holds: " + (held.empty() ? "nothing" : held) + ")");
  }
  for (const auto& f : files) {
    if (!is_safe_relative(f)) return make_error(ErrorCode::kFormatError, s.where() + ": unsafe file name '" + f + "'");
  }
  PullEvent event = s.announce(files.size(), listing.commit);
  for (size_t i = 0; i < files.size(); ++i) {
    event.file = files[i];
    event.index = static_cast<int>(i);
    DINOV3_ASSIGN_OR_RETURN(PulledFile pf, pull_file(s, repo_dir, listing.commit, files[i], o.max_retries, event));
    result.files.push_back(std::move(pf));
  }
  if (s.revision != listing.commit) {
    const fs::path ref = repo_dir / "refs" / s.revision;
    std::error_code ec;
    fs::create_directories(ref.parent_path(), ec);
    if (ec) return make_error(ErrorCode::kIoError, ref.parent_path().string() + ": cannot create: " + ec.message());
    DINOV3_RETURN_IF_ERROR(write_file_atomic(ref.string(), /*overwrite=*/true, [&](const WriteFn& write) {
      return write(listing.commit.data(), listing.commit.size());
    }));
  }
  return result;
}

}  // namespace

Result<PullResult> pull_repo(const PullOptions& o) {
  if (!hub::is_repo_id(o.repo_id)) {
    return make_error(ErrorCode::kInvalidArgument, "'" + o.repo_id + "' is not a hub repository id (owner/name)");
  }
  if (!is_safe_relative(o.revision)) {
    return make_error(ErrorCode::kInvalidArgument, "'" + o.revision + "' is not a revision (a branch, tag or commit)");
  }
  Session s;
  s.repo_id = o.repo_id;
  s.revision = o.revision;
  s.endpoint = !o.endpoint.empty() ? o.endpoint : hub::env("HF_ENDPOINT");
  if (s.endpoint.empty()) s.endpoint = kDefaultEndpoint;
  while (!s.endpoint.empty() && s.endpoint.back() == '/') s.endpoint.pop_back();
  if (hub::url_origin(s.endpoint).empty()) {
    return make_error(ErrorCode::kInvalidArgument, "endpoint '" + s.endpoint + "' is not an http(s) URL");
  }
  s.token = !o.token.empty() ? o.token : read_token();
  s.on_event = o.on_event;
  const std::string cache = !o.cache_dir.empty() ? o.cache_dir : hub_cache_dir();
  if (cache.empty()) return make_error(ErrorCode::kInvalidArgument, "no cache folder: set HF_HUB_CACHE or HF_HOME");

  PullResult result;
  result.repo_id = o.repo_id;
  result.revision = o.revision;
  const fs::path repo_dir = hub::repo_cache_dir(cache, o.repo_id);
  Result<PullResult> r = (o.offline || hub::env_flag("HF_HUB_OFFLINE")) ? pull_offline(s, o, repo_dir, std::move(result))
                                                                         : pull_online(s, o, repo_dir, std::move(result));
  if (!r.ok()) return make_error(r.status().code(), s.redact(r.status().message()));
  return r;
}

}  // namespace dinov3
