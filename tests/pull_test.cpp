// `pull` against an imitation of the hub (tests/hub_server.py on 127.0.0.1), and model lookup in the cache
// it fills: the cache layout huggingface_hub writes, CDN and relative redirects, resume after a dropped
// connection, sha256 checks, clear errors, the token kept out of every message, offline mode, and
// `dinov3 infer --model OWNER/NAME` from the cache with the network gone.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "dinov3/hub.h"
#include "dinov3/tensor_file.h"
#include "test_labels.h"
#include "test_util.h"

namespace dinov3 {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

const std::string kTiny = test::fixture("models/tiny");
const std::string kRepo = "timm/tiny-test";

std::string hex(const unsigned char* md, unsigned int n) {
  std::string out;
  char buf[3];
  for (unsigned int i = 0; i < n; ++i) {
    std::snprintf(buf, sizeof(buf), "%02x", md[i]);
    out += buf;
  }
  return out;
}

std::string digest(const EVP_MD* md, const std::string& bytes) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EXPECT_EQ(EVP_Digest(bytes.data(), bytes.size(), out, &n, md, nullptr), 1);
  return hex(out, n);
}
// The two etags the hub gives: an LFS file's sha256, a small file's git blob id.
std::string sha256_of(const std::string& bytes) { return digest(EVP_sha256(), bytes); }
std::string git_blob_id(const std::string& bytes) {
  return digest(EVP_sha1(), "blob " + std::to_string(bytes.size()) + std::string(1, '\0') + bytes);
}

// tests/hub_server.py serving kTiny as kRepo (model.safetensors and pytorch_model.bin as LFS files), on
// 127.0.0.1 with a port the system picks; stopped when the object dies.
class HubServer {
 public:
  explicit HubServer(std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"/usr/bin/python3", std::string(DINOV3_SOURCE_DIR) + "/tests/hub_server.py",
                                     "--repo", kRepo, "--dir", kTiny, "--lfs", "model.safetensors", "--lfs",
                                     "pytorch_model.bin", "--log", dir_.file("requests.log")};
    args.insert(args.end(), extra.begin(), extra.end());
    int fds[2];
    if (::pipe(fds) != 0) throw std::runtime_error("pipe failed");
    const std::string err = dir_.file("server.err");
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(fds[1], 1);
      const int fd = ::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (fd >= 0) ::dup2(fd, 2);
      ::close(fds[0]);
      ::close(fds[1]);
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    ::close(fds[1]);
    std::string line;
    pollfd p{fds[0], POLLIN, 0};
    char c;
    while (::poll(&p, 1, 10000) > 0 && ::read(fds[0], &c, 1) == 1 && c != '\n') line += c;
    ::close(fds[0]);
    if (line.empty()) throw std::runtime_error("hub_server.py did not start: " + test::read_file(err));
    port_ = line;
  }
  ~HubServer() { stop(); }
  HubServer(const HubServer&) = delete;
  HubServer& operator=(const HubServer&) = delete;

  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  std::string endpoint() const { return "http://127.0.0.1:" + port_; }

  // Every request the server answered, in order.
  std::vector<json> requests() const {
    std::vector<json> out;
    std::error_code ec;
    if (!fs::exists(dir_.file("requests.log"), ec)) return out;
    std::istringstream in(test::read_file(dir_.file("requests.log")));
    for (std::string line; std::getline(in, line);) out.push_back(json::parse(line));
    return out;
  }
  size_t count(const std::string& method, const std::string& path_part) const {
    size_t n = 0;
    for (const auto& r : requests()) {
      if (r["method"] == method && r["path"].get<std::string>().find(path_part) != std::string::npos) ++n;
    }
    return n;
  }

 private:
  test::TempDir dir_;
  pid_t pid_ = -1;
  std::string port_;
};

class Pull : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* v : {"HF_TOKEN", "HF_HUB_OFFLINE", "HF_ENDPOINT", "HF_HUB_CACHE", "HF_HOME"}) ::unsetenv(v);
    // No token a developer's own login left on this machine.
    ::setenv("HF_TOKEN_PATH", cache_.file("no-token").c_str(), 1);
  }
  void TearDown() override {
    for (const char* v : {"HF_TOKEN_PATH", "HF_HUB_OFFLINE", "HF_HUB_CACHE"}) ::unsetenv(v);
  }

  PullOptions options(const HubServer& server, const std::string& repo = kRepo) {
    PullOptions o;
    o.repo_id = repo;
    o.endpoint = server.endpoint();
    o.cache_dir = cache_.path();
    o.on_event = [this](const PullEvent& e) { events_.push_back(e); };
    return o;
  }
  fs::path repo_dir(const std::string& repo = kRepo) const {
    std::string folder = "models--" + repo;
    folder.replace(folder.find('/'), 1, "--");
    return fs::path(cache_.path()) / folder;
  }
  // The file is a relative link to ../(..)/blobs/<etag> holding exactly `bytes`.
  void expect_linked(const fs::path& snapshot, const std::string& name, const std::string& bytes,
                     const std::string& etag) {
    const fs::path p = snapshot / name;
    ASSERT_TRUE(fs::is_symlink(p)) << p;
    std::string up;
    for (size_t i = 0; i < static_cast<size_t>(std::count(name.begin(), name.end(), '/')) + 2; ++i) up += "../";
    EXPECT_EQ(fs::read_symlink(p).string(), up + "blobs/" + etag) << name;
    EXPECT_EQ(test::read_file(p.string()), bytes) << name;
  }
  std::vector<std::string> blob_names() const {
    std::vector<std::string> out;
    std::error_code ec;
    for (fs::directory_iterator it(repo_dir() / "blobs", ec), end; !ec && it != end; it.increment(ec)) {
      out.push_back(it->path().filename().string());
    }
    return out;
  }
  const PullEvent* find_event(PullEvent::Kind kind, const std::string& file) const {
    for (const auto& e : events_) {
      if (e.kind == kind && e.file == file) return &e;
    }
    return nullptr;
  }

  test::TempDir cache_;
  std::vector<PullEvent> events_;
  const std::string config_ = test::read_file(kTiny + "/config.json");
  const std::string weights_ = test::read_file(kTiny + "/model.safetensors");
};

DINOV3_SUITE_LABELS(Pull, "unit");

TEST_F(Pull, FillsTheCacheAsHuggingFaceHubDoes) {
  HubServer server;
  Result<PullResult> r = pull_repo(options(server));
  ASSERT_TRUE(r.ok()) << r.status().message();
  ASSERT_EQ(r->commit.size(), 40u);
  const fs::path snap = repo_dir() / "snapshots" / r->commit;
  EXPECT_EQ(r->snapshot_dir, snap.string());
  // The default selection: configs, weights (pytorch_model.bin not, as safetensors exist) and README.
  std::vector<std::string> names;
  for (const auto& f : r->files) names.push_back(f.name);
  EXPECT_EQ(names, (std::vector<std::string>{"README.md", "config.json", "model.safetensors"}));
  EXPECT_FALSE(fs::exists(snap / "pytorch_model.bin"));
  EXPECT_FALSE(fs::exists(snap / ".gitattributes"));
  EXPECT_FALSE(fs::exists(snap / "nested"));

  expect_linked(snap, "config.json", config_, git_blob_id(config_));       // non-LFS: git blob id etag
  expect_linked(snap, "model.safetensors", weights_, sha256_of(weights_));  // LFS: sha256 etag
  EXPECT_EQ(test::read_file((repo_dir() / "refs" / "main").string()), r->commit);
  for (const auto& b : blob_names()) EXPECT_EQ(b.find(".incomplete"), std::string::npos) << b;
  EXPECT_TRUE(r->files[2].downloaded);
  EXPECT_TRUE(r->files[2].sha256_checked);
  EXPECT_EQ(r->files[2].size, static_cast<int64_t>(weights_.size()));
  EXPECT_FALSE(r->files[1].sha256_checked);
  const PullEvent* done = find_event(PullEvent::Kind::kDone, "model.safetensors");
  ASSERT_NE(done, nullptr);
  EXPECT_TRUE(done->sha256_checked);
  EXPECT_EQ(done->bytes_done, static_cast<int64_t>(weights_.size()));

  // The LFS file came from the "CDN": another host and path, without the token header.
  size_t cdn = 0;
  for (const auto& q : server.requests()) {
    if (q["path"].get<std::string>().rfind("/cdn/", 0) != 0) continue;
    ++cdn;
    EXPECT_EQ(q["host"].get<std::string>().rfind("localhost:", 0), 0u) << q.dump();
    EXPECT_EQ(q["status"], 200);
  }
  EXPECT_EQ(cdn, 1u);
  EXPECT_EQ(server.count("HEAD", "/resolve/" + r->commit + "/"), 3u);  // one HEAD per file, at the commit

  // The cache is what lookup reads.
  ::setenv("HF_HUB_CACHE", cache_.path().c_str(), 1);
  Result<ModelLocation> loc = resolve_model(kRepo);
  ASSERT_TRUE(loc.ok()) << loc.status().message();
  EXPECT_EQ(loc->dir, snap.string());

  // Pulling again downloads nothing: only the listing is asked for.
  const size_t before = server.requests().size();
  events_.clear();
  Result<PullResult> again = pull_repo(options(server));
  ASSERT_TRUE(again.ok()) << again.status().message();
  const std::vector<json> all = server.requests();
  ASSERT_EQ(all.size(), before + 1);
  EXPECT_EQ(all.back()["path"], "/api/models/" + kRepo + "/revision/main");
  for (const auto& f : again->files) EXPECT_FALSE(f.downloaded) << f.name;
  EXPECT_NE(find_event(PullEvent::Kind::kCached, "model.safetensors"), nullptr);
}

TEST_F(Pull, IncludeGlobsTagsAndNestedFiles) {
  HubServer server;
  PullOptions o = options(server);
  o.revision = "v1.0";
  o.include = {"nested/", "*.bin"};
  Result<PullResult> r = pull_repo(o);
  ASSERT_TRUE(r.ok()) << r.status().message();
  const fs::path snap = repo_dir() / "snapshots" / r->commit;
  const std::string notes = "notes kept in a folder\n";
  expect_linked(snap, "nested/deeper/notes.txt", notes, git_blob_id(notes));  // ../../../../blobs/<id>
  const std::string bin = test::read_file(kTiny + "/pytorch_model.bin");
  expect_linked(snap, "pytorch_model.bin", bin, sha256_of(bin));
  EXPECT_FALSE(fs::exists(snap / "config.json"));
  EXPECT_EQ(test::read_file((repo_dir() / "refs" / "v1.0").string()), r->commit);
  EXPECT_FALSE(fs::exists(repo_dir() / "refs" / "main"));

  // A commit as the revision writes no ref; a pattern matching nothing is an error naming it.
  o.revision = r->commit;
  o.include = {"config.json"};
  ASSERT_TRUE(pull_repo(o).ok());
  EXPECT_FALSE(fs::exists(repo_dir() / "refs" / r->commit));
  expect_linked(snap, "config.json", config_, git_blob_id(config_));
  o.include = {"*.onnx"};
  Result<PullResult> none = pull_repo(o);
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.status().message().find("no file matching '*.onnx'"), std::string::npos) << none.status().message();
}

TEST_F(Pull, ResumesADroppedConnectionWithARangeRequest) {
  HubServer server({"--drop-once", "model.safetensors"});
  Result<PullResult> r = pull_repo(options(server));
  ASSERT_TRUE(r.ok()) << r.status().message();
  expect_linked(fs::path(r->snapshot_dir), "model.safetensors", weights_, sha256_of(weights_));
  const int64_t half = static_cast<int64_t>(weights_.size()) / 2;
  const PullEvent* retry = find_event(PullEvent::Kind::kRetry, "model.safetensors");
  ASSERT_NE(retry, nullptr);
  EXPECT_EQ(retry->bytes_done, half);
  std::vector<std::string> ranges;
  for (const auto& q : server.requests()) {
    if (q["path"].get<std::string>().rfind("/cdn/", 0) == 0) ranges.push_back(q["range"]);
  }
  EXPECT_EQ(ranges, (std::vector<std::string>{"", "bytes=" + std::to_string(half) + "-"}));
}

TEST_F(Pull, GivesUpAfterBoundedRetriesAndResumesOnTheNextRun) {
  const int64_t half = static_cast<int64_t>(weights_.size()) / 2;
  std::string commit;
  {
    HubServer server({"--cut-then-refuse", "model.safetensors"});
    PullOptions o = options(server);
    o.max_retries = 1;
    Result<PullResult> r = pull_repo(o);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find("downloading model.safetensors failed 2 times in a row"), std::string::npos)
        << r.status().message();
    const fs::path partial = repo_dir() / "blobs" / (sha256_of(weights_) + ".incomplete");
    ASSERT_TRUE(fs::exists(partial));
    EXPECT_EQ(static_cast<int64_t>(fs::file_size(partial)), half);
    EXPECT_FALSE(fs::exists(repo_dir() / "refs" / "main"));
    for (const auto& s : fs::directory_iterator(repo_dir() / "snapshots")) {
      EXPECT_FALSE(fs::exists(s.path() / "model.safetensors"));
      commit = s.path().filename().string();
    }
  }
  HubServer server;
  events_.clear();
  Result<PullResult> r = pull_repo(options(server));
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->commit, commit);
  expect_linked(fs::path(r->snapshot_dir), "model.safetensors", weights_, sha256_of(weights_));
  const PullEvent* start = find_event(PullEvent::Kind::kStart, "model.safetensors");
  ASSERT_NE(start, nullptr);
  EXPECT_EQ(start->bytes_done, half);
  EXPECT_EQ(server.count("GET", "/cdn/"), 1u);
  EXPECT_EQ(server.requests().back()["range"], "bytes=" + std::to_string(half) + "-");
}

TEST_F(Pull, ABodyWithTheWrongSha256LeavesNothing) {
  HubServer server({"--corrupt", "model.safetensors"});
  Result<PullResult> r = pull_repo(options(server));
  ASSERT_FALSE(r.ok());
  const std::string sha = sha256_of(weights_);
  EXPECT_NE(r.status().message().find("sha256 mismatch for model.safetensors: expected " + sha), std::string::npos)
      << r.status().message();
  for (const auto& b : blob_names()) EXPECT_EQ(b.find(sha), std::string::npos) << b;
  for (const auto& s : fs::directory_iterator(repo_dir() / "snapshots")) {
    EXPECT_FALSE(fs::exists(s.path() / "model.safetensors"));
    EXPECT_FALSE(fs::is_symlink(s.path() / "model.safetensors"));
  }
  EXPECT_FALSE(fs::exists(repo_dir() / "refs" / "main"));
}

TEST_F(Pull, ClearErrors) {
  {
    HubServer server({"--token", "hf_right"});
    Result<PullResult> r = pull_repo(options(server));
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find("authentication required: set HF_TOKEN"), std::string::npos)
        << r.status().message();
    EXPECT_NE(r.status().message().find("HTTP 401"), std::string::npos);
    PullOptions o = options(server);
    o.token = "hf_wrong";
    r = pull_repo(o);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find("token was refused"), std::string::npos) << r.status().message();
    EXPECT_EQ(r.status().message().find("hf_wrong"), std::string::npos);
  }
  {
    HubServer server({"--forbid"});
    Result<PullResult> r = pull_repo(options(server));
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find("access to " + kRepo + " denied (HTTP 403)"), std::string::npos)
        << r.status().message();
  }
  HubServer server({"--ghost", "ghost.json"});
  Result<PullResult> r = pull_repo(options(server, "timm/no-such-repo"));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("repository or revision not found: timm/no-such-repo@main (HTTP 404)"),
            std::string::npos)
      << r.status().message();
  PullOptions o = options(server);
  o.revision = "no-such-branch";
  r = pull_repo(o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("repository or revision not found: " + kRepo + "@no-such-branch"),
            std::string::npos)
      << r.status().message();
  o.revision = "main";
  r = pull_repo(o);  // the listing names ghost.json, resolve does not find it
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("file not found: ghost.json in " + kRepo + "@main (HTTP 404)"),
            std::string::npos)
      << r.status().message();
  o.repo_id = "../etc";
  r = pull_repo(o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("not a hub repository id"), std::string::npos);

  const std::string endpoint = server.endpoint();
  server.stop();  // nothing listens there now
  o = options(server);
  r = pull_repo(o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("cannot reach " + endpoint), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("HF_HUB_OFFLINE=1"), std::string::npos);
}

// A cache that cannot be written (here blobs/ is a file: root ignores permissions) is an error naming the path.
TEST_F(Pull, ADiskErrorNamesThePath) {
  HubServer server;
  fs::create_directories(repo_dir());
  test::write_file((repo_dir() / "blobs").string(), "in the way");
  Result<PullResult> r = pull_repo(options(server));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find((repo_dir() / "blobs").string() + ": cannot create"), std::string::npos)
      << r.status().message();
  EXPECT_FALSE(fs::exists(repo_dir() / "snapshots"));
  EXPECT_FALSE(fs::exists(repo_dir() / "refs"));
}

TEST_F(Pull, FollowsTheRelativeRedirectsOfARenamedRepository) {
  HubServer server({"--renamed", "timm/old-name"});
  Result<PullResult> r = pull_repo(options(server, "timm/old-name"));
  ASSERT_TRUE(r.ok()) << r.status().message();
  const fs::path snap = repo_dir("timm/old-name") / "snapshots" / r->commit;
  EXPECT_EQ(r->snapshot_dir, snap.string());
  EXPECT_EQ(test::read_file((snap / "config.json").string()), config_);
  EXPECT_EQ(test::read_file((snap / "model.safetensors").string()), weights_);
  EXPECT_EQ(server.count("HEAD", "/timm/old-name/resolve/"), 3u);  // each answered 307 ...
  EXPECT_EQ(server.count("HEAD", "/" + kRepo + "/resolve/"), 3u);  // ... and followed
}

// The CLI in its own process: the token goes out as a bearer header and never comes back in any output.
TEST_F(Pull, TheTokenIsSentAndNeverShown) {
  const std::string token = "hf_SeCrEt0123456789";
  HubServer server({"--token", token});
  const std::string env = "HF_HUB_CACHE=" + cache_.path() + " HF_ENDPOINT=" + server.endpoint() +
                          " HF_TOKEN_PATH=" + cache_.file("no-token") + " ";
  test::CommandResult ok = test::run_command(env + "HF_TOKEN=" + token + " " + test::cli_path() + " pull " + kRepo);
  EXPECT_EQ(ok.exit_code, 0) << ok.out;
  EXPECT_EQ(ok.out.find(token), std::string::npos) << ok.out;
  // Not a terminal: one line per file, no progress bar.
  EXPECT_EQ(ok.out.find('\r'), std::string::npos);
  EXPECT_NE(ok.out.find("[3/3] model.safetensors  600.7 kB  downloaded"), std::string::npos) << ok.out;
  EXPECT_NE(ok.out.find("sha256 ok"), std::string::npos) << ok.out;
  size_t with_token = 0;
  for (const auto& q : server.requests()) {
    const bool cdn = q["path"].get<std::string>().rfind("/cdn/", 0) == 0;
    EXPECT_EQ(q["auth"], cdn ? "" : "Bearer " + token) << q.dump();
    with_token += cdn ? 0 : 1;
  }
  EXPECT_GE(with_token, 4u);  // the listing and three HEADs

  HubServer other({"--token", "hf_another"});
  const std::string other_env = "HF_HUB_CACHE=" + cache_.path() + " HF_ENDPOINT=" + other.endpoint() +
                                " HF_TOKEN_PATH=" + cache_.file("no-token") + " ";
  test::CommandResult refused =
      test::run_command(other_env + "HF_TOKEN=" + token + " " + test::cli_path() + " pull " + kRepo);
  EXPECT_EQ(refused.exit_code, 1) << refused.out;
  EXPECT_NE(refused.out.find("token was refused"), std::string::npos) << refused.out;
  EXPECT_EQ(refused.out.find(token), std::string::npos) << refused.out;
}

TEST_F(Pull, OfflineUsesOnlyTheCache) {
  std::string commit;
  {
    HubServer server;
    Result<PullResult> r = pull_repo(options(server));
    ASSERT_TRUE(r.ok()) << r.status().message();
    commit = r->commit;
  }
  ::setenv("HF_HUB_OFFLINE", "1", 1);
  PullOptions o;
  o.repo_id = kRepo;
  o.endpoint = "http://127.0.0.1:9";  // never asked
  o.cache_dir = cache_.path();
  Result<PullResult> r = pull_repo(o);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->commit, commit);
  std::vector<std::string> names;
  for (const auto& f : r->files) {
    names.push_back(f.name);
    EXPECT_FALSE(f.downloaded);
  }
  EXPECT_EQ(names, (std::vector<std::string>{"README.md", "config.json", "model.safetensors"}));

  o.include = {"*.bin"};  // never pulled
  r = pull_repo(o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("holds no file matching '*.bin'"), std::string::npos) << r.status().message();

  test::TempDir empty;
  o.include.clear();
  o.cache_dir = empty.path();
  r = pull_repo(o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("offline (HF_HUB_OFFLINE) and " + kRepo + "@main is not in the cache"),
            std::string::npos)
      << r.status().message();
  EXPECT_NE(r.status().message().find("dinov3 pull " + kRepo), std::string::npos);
}

TEST_F(Pull, InferRunsFromThePulledCacheWithTheNetworkGone) {
  {
    HubServer server;
    ASSERT_TRUE(pull_repo(options(server)).ok());
  }  // stopped
  test::TempDir out;
  const std::string image = test::fixture("images/rocket.jpg");
  const std::string common = " infer --image " + image + " --threads 1 --runs 1 --warmup 0 --output-dir " + out.path();
  test::CommandResult cached = test::run_command("HF_HUB_CACHE=" + cache_.path() + " HF_HUB_OFFLINE=1 " +
                                                 test::cli_path() + common + " --model " + kRepo + " --save " +
                                                 out.file("cached.safetensors"));
  ASSERT_EQ(cached.exit_code, 0) << cached.out;
  test::CommandResult folder =
      test::run_command(test::cli_path() + common + " --model " + kTiny + " --save " + out.file("folder.safetensors"));
  ASSERT_EQ(folder.exit_code, 0) << folder.out;
  Result<TensorArchive> a = open_safetensors(out.file("cached.safetensors"));
  Result<TensorArchive> b = open_safetensors(out.file("folder.safetensors"));
  ASSERT_TRUE(a.ok() && b.ok());
  for (const char* name : {"features", "pooled"}) {
    const Tensor x = *a->load_f32(name), y = *b->load_f32(name);
    ASSERT_EQ(x.shape, y.shape) << name;
    EXPECT_EQ(x.data, y.data) << name;  // the same weights through the same code: the same bits
  }
}

// Lookup recognises every layout from the files: timm and Hugging Face folders (one file or a shard
// index), a folder holding one Meta .pth, and a .pth file given directly.
DINOV3_SUITE_LABELS(Lookup, "unit");

TEST(Lookup, EveryLayout) {
  test::TempDir cache;
  ::setenv("HF_HUB_CACHE", cache.path().c_str(), 1);
  auto snapshot = [&](const std::string& repo, const std::vector<std::string>& files) {
    const fs::path dir = fs::path(cache.path()) / ("models--facebook--" + repo) / "snapshots" / "abc";
    fs::create_directories(dir);
    for (const auto& f : files) test::write_file((dir / f).string(), "x");
    return dir;
  };
  const fs::path sharded = snapshot("sharded", {"config.json", "model.safetensors.index.json"});
  const fs::path meta = snapshot("meta", {"dinov3_vits16_pretrain.pth", "README.md"});
  snapshot("two-pth", {"a.pth", "b.pth"});
  snapshot("no-weights", {"config.json", "preprocessor_config.json"});
  Result<ModelLocation> r = resolve_model("facebook/sharded");
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->dir, sharded.string());
  r = resolve_model("facebook/meta");
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->dir, meta.string());
  for (const char* id : {"facebook/two-pth", "facebook/no-weights"}) {
    r = resolve_model(id);
    ASSERT_FALSE(r.ok()) << id;
    EXPECT_NE(r.status().message().find(std::string("dinov3 pull ") + id), std::string::npos) << r.status().message();
  }
  const std::string file = (meta / "dinov3_vits16_pretrain.pth").string();
  r = resolve_model(file);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->dir, file);
  ::unsetenv("HF_HUB_CACHE");
}

DINOV3_SUITE_LABELS(Pull, "unit");
DINOV3_TEST_LABELS(Pull, ClearErrors, "hostile");
DINOV3_TEST_LABELS(Pull, ABodyWithTheWrongSha256LeavesNothing, "hostile");
DINOV3_TEST_LABELS(Pull, ADiskErrorNamesThePath, "hostile");
DINOV3_SUITE_LABELS(Lookup, "unit");

}  // namespace
}  // namespace dinov3
