// Finding a model (a folder, a Meta .pth file, or a hub id looked up offline in the Hugging Face cache and
// /opt/atomgit), and `pull`: downloading a hub repository into that cache.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "dinov3/status.h"

namespace dinov3 {

constexpr const char* kDefaultModelId = "timm/vit_small_patch16_dinov3.lvd1689m";

// The Hugging Face cache root shared by lookup, pull, timm and transformers: $HF_HUB_CACHE, else
// $HF_HOME/hub, else ~/.cache/huggingface/hub; "" when none of HF_HUB_CACHE, HF_HOME, HOME is set.
std::string hub_cache_dir();

struct ModelLocation {
  // The folder holding the model's files, or a checkpoint FILE (a Meta .pth) when `spec` named one.
  std::string dir;
  std::vector<std::string> searched;  // every place looked at, in order
};

// `spec` is a folder or a file (used as is when it exists) or a hub id "owner/name". A hub id is looked
// up in hub_cache_dir() (models--owner--name/snapshots/<revision>/, the revision named by refs/main, else
// the newest snapshot holding a model), then in /opt/atomgit/weight/<name>. A folder holds a model when it
// has config.json with model.safetensors, model.safetensors.index.json or pytorch_model.bin, or exactly
// one *.pth file. The error lists where it looked and how to get the weights (`dinov3 pull <id>`).
Result<ModelLocation> resolve_model(const std::string& spec);

// The files a model at `location` (ModelLocation::dir, or Model::directory()) is read from: a checkpoint
// file itself; for a folder its config.json (even when absent: writing one would change the model) and
// every regular file in it (weights, shards, their index). Outputs are never written over them.
std::vector<std::string> model_files(const std::string& location);

// What pull_repo reports while it works; the library itself never prints.
struct PullEvent {
  enum class Kind {
    kListed,    // the revision's commit and the files to fetch are known (`count`, `message` = commit)
    kCached,    // `file` is already in the cache, complete: nothing is downloaded
    kStart,     // `file` starts downloading; bytes_done > 0 when an earlier partial download is resumed
    kProgress,  // bytes arrived
    kRetry,     // the connection failed; resuming at bytes_done (`message` says why)
    kDone,      // `file` is downloaded, checked and linked into the snapshot
  };
  Kind kind = Kind::kProgress;
  std::string file;
  int index = 0;  // 0-based position of `file` among `count`
  int count = 0;
  int64_t bytes_done = 0;
  int64_t bytes_total = 0;      // -1 when unknown
  bool sha256_checked = false;  // kDone: the file is an LFS file and its sha256 matched
  std::string message;
};

struct PullOptions {
  std::string repo_id;               // "owner/name"
  std::string revision = "main";     // branch, tag or commit sha
  // fnmatch patterns ('*' also crosses '/'; a pattern ending in '/' takes the folder). Empty: the *.json
  // configs, the weights (*.safetensors, *.pth; pytorch_model.bin only when the repository holds no
  // safetensors) and README.md.
  std::vector<std::string> include;
  std::string endpoint;              // "": $HF_ENDPOINT, else https://huggingface.co
  std::string cache_dir;             // "": hub_cache_dir()
  // Sent as "Authorization: Bearer ..." to the endpoint (never to another host a download is redirected
  // to); never appears in a message. "": $HF_TOKEN, else the file $HF_TOKEN_PATH, else $HF_HOME/token
  // (~/.cache/huggingface/token), which `huggingface-cli login` writes.
  std::string token;
  bool offline = false;              // also when HF_HUB_OFFLINE is 1/ON/YES/TRUE: use only the cache
  int max_retries = 5;               // resumes of one file in a row without new bytes before giving up
  std::function<void(const PullEvent&)> on_event;
};

struct PulledFile {
  std::string name;             // path inside the repository
  int64_t size = 0;
  bool downloaded = false;      // false: it was already in the cache
  bool sha256_checked = false;  // an LFS file whose sha256 was checked after download
};

struct PullResult {
  std::string repo_id, revision;
  std::string commit;        // the 40-hex commit the revision named
  std::string snapshot_dir;  // <cache>/models--owner--name/snapshots/<commit>
  std::vector<PulledFile> files;
};

// Downloads the selected files of one revision of a hub model repository into the cache, following the
// hub's protocol as huggingface_hub does: the file list and commit from
// GET {endpoint}/api/models/{repo}/revision/{revision}; per file HEAD {endpoint}/{repo}/resolve/{commit}/{file}
// (relative redirects followed) for X-Repo-Commit, X-Linked-Etag or ETag, X-Linked-Size or Content-Length;
// then GET following redirects into blobs/<etag>.incomplete, resumed with a Range request when the
// connection drops. A file is linked into snapshots/<commit>/ only once complete: its size checked and, for
// LFS files (a sha256 etag), its sha256. A file already in the snapshot is not fetched again. refs/<revision>
// is written once every file is in place (not when the revision is itself the commit). Offline, succeeds
// when the cached snapshot of the revision holds the selected files.
Result<PullResult> pull_repo(const PullOptions& options);

}  // namespace dinov3
