// Errors as values: every fallible library call returns a Status or a Result<T>.
// The library never prints or exits; the CLI decides what a user sees.
#pragma once

#include <cassert>
#include <string>
#include <utility>
#include <variant>

namespace dinov3 {

enum class ErrorCode {
  kOk = 0,
  kInvalidArgument,  // a caller-supplied value is wrong (shape, option, size)
  kNotFound,         // a file, tensor or name does not exist
  kIoError,          // the operating system refused a read or write
  kFormatError,      // a file's bytes do not follow its format
  kUnsupported,      // well-formed, but not something this engine runs
  kOutOfMemory,      // an allocation failed or would exceed a limit
  kInternal,         // a bug: an invariant of the engine itself broke
  kCancelled,        // the caller's own check asked the work to stop (Model::set_stop_check)
};

const char* error_code_name(ErrorCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(ErrorCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status ok_status() { return {}; }

  bool ok() const { return code_ == ErrorCode::kOk; }
  ErrorCode code() const { return code_; }
  const std::string& message() const { return message_; }

  // Prefixes context ("loading model.safetensors: ") to the message, keeping the code.
  Status with_context(const std::string& context) const {
    if (ok()) return *this;
    return {code_, context + ": " + message_};
  }

 private:
  ErrorCode code_ = ErrorCode::kOk;
  std::string message_;
};

inline Status make_error(ErrorCode code, std::string message) { return {code, std::move(message)}; }

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT(google-explicit-constructor)
  Result(Status status) : v_(std::move(status)) {  // NOLINT(google-explicit-constructor)
    assert(!std::get<Status>(v_).ok() && "a Result must not hold an OK status without a value");
  }

  bool ok() const { return std::holds_alternative<T>(v_); }
  explicit operator bool() const { return ok(); }

  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }

  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }

  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace dinov3

#define DINOV3_CONCAT_INNER(a, b) a##b
#define DINOV3_CONCAT(a, b) DINOV3_CONCAT_INNER(a, b)

// Returns the Status from the enclosing function when `expr` fails.
#define DINOV3_RETURN_IF_ERROR(expr)            \
  do {                                          \
    ::dinov3::Status dinov3_status_ = (expr);   \
    if (!dinov3_status_.ok()) return dinov3_status_; \
  } while (0)

#define DINOV3_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                 \
  if (!tmp.ok()) return tmp.status();                \
  lhs = std::move(tmp).value()

// `DINOV3_ASSIGN_OR_RETURN(auto x, f());` declares x from a Result or returns its error.
#define DINOV3_ASSIGN_OR_RETURN(lhs, expr) \
  DINOV3_ASSIGN_OR_RETURN_IMPL(DINOV3_CONCAT(dinov3_result_, __LINE__), lhs, expr)
