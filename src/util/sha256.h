// SHA-256 through libcrypto's EVP interface, for the library's digests (downloaded weights, a model's
// linear layers).
#pragma once

#include <openssl/evp.h>

#include <cstdio>
#include <memory>
#include <string>

namespace dinov3 {

class Sha256 {
 public:
  Sha256() : ctx_(EVP_MD_CTX_new()) { reset(); }
  bool ok() const { return ctx_ != nullptr && ok_; }
  void reset() { ok_ = ctx_ != nullptr && EVP_DigestInit_ex(ctx_.get(), EVP_sha256(), nullptr) == 1; }
  void update(const void* data, size_t n) { ok_ = ok_ && EVP_DigestUpdate(ctx_.get(), data, n) == 1; }
  // The digest in lowercase hex; ends this digest (reset() starts another).
  std::string hex() {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    ok_ = ok_ && EVP_DigestFinal_ex(ctx_.get(), md, &len) == 1;
    std::string out;
    char buf[3];
    for (unsigned int i = 0; i < len; ++i) {
      std::snprintf(buf, sizeof(buf), "%02x", md[i]);
      out += buf;
    }
    return out;
  }

 private:
  struct Free {
    void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
  };
  std::unique_ptr<EVP_MD_CTX, Free> ctx_;
  bool ok_ = false;
};

}  // namespace dinov3
