#include "io/pickle_reader.h"

#include <bit>
#include <cstdio>
#include <iterator>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <variant>

namespace dinov3::io {
namespace {

// Opcode bytes, named as in CPython's pickletools.
enum Opcode : uint8_t {
  // Framing.
  kProto = 0x80,
  kFrame = 0x95,
  kStop = '.',
  // Scalars.
  kNone = 'N',
  kNewTrue = 0x88,
  kNewFalse = 0x89,
  kBinInt = 'J',
  kBinInt1 = 'K',
  kBinInt2 = 'M',
  kLong1 = 0x8a,
  kBinFloat = 'G',
  kBinUnicode = 'X',
  kShortBinUnicode = 0x8c,
  // Containers.
  kMark = '(',
  kEmptyTuple = ')',
  kTuple = 't',
  kTuple1 = 0x85,
  kTuple2 = 0x86,
  kTuple3 = 0x87,
  kEmptyList = ']',
  kAppend = 'a',
  kAppends = 'e',
  kEmptyDict = '}',
  kSetItem = 's',
  kSetItems = 'u',
  // Memo.
  kBinPut = 'q',
  kLongBinPut = 'r',
  kMemoize = 0x94,
  kBinGet = 'h',
  kLongBinGet = 'j',
  // Globals, calls and torch's storages.
  kGlobal = 'c',
  kStackGlobal = 0x93,
  kReduce = 'R',
  kBuild = 'b',
  kBinPersId = 'Q',
};

constexpr int kMaxProtocol = 5;
// Limits far above what any state_dict needs (its MARKs nest three deep), so that a hostile pickle
// fails with an error instead of exhausting memory.
constexpr size_t kMaxMarkDepth = 256;
constexpr size_t kMaxStackDepth = size_t{1} << 20;
constexpr size_t kMaxObjects = size_t{1} << 22;

// The callables a state_dict pickle may name. Storage types are only ever arguments of a persistent id.
enum class Callable { kOrderedDict, kRebuildTensor, kRebuildParameter, kStorageType };

struct Global {
  Callable callable;
  DType dtype = DType::kU8;  // the element type, for storage types
};

struct AllowedGlobal {
  std::string_view module;
  std::string_view name;
  Global global;
};

constexpr AllowedGlobal kAllowedGlobals[] = {
    {"collections", "OrderedDict", {Callable::kOrderedDict}},
    {"torch._utils", "_rebuild_tensor_v2", {Callable::kRebuildTensor}},
    {"torch._utils", "_rebuild_parameter", {Callable::kRebuildParameter}},
    {"torch", "FloatStorage", {Callable::kStorageType, DType::kF32}},
    {"torch", "HalfStorage", {Callable::kStorageType, DType::kF16}},
    {"torch", "BFloat16Storage", {Callable::kStorageType, DType::kBF16}},
    {"torch", "DoubleStorage", {Callable::kStorageType, DType::kF64}},
    {"torch", "LongStorage", {Callable::kStorageType, DType::kI64}},
    {"torch", "IntStorage", {Callable::kStorageType, DType::kI32}},
    {"torch", "ShortStorage", {Callable::kStorageType, DType::kI16}},
    {"torch", "CharStorage", {Callable::kStorageType, DType::kI8}},
    {"torch", "ByteStorage", {Callable::kStorageType, DType::kU8}},
    {"torch", "BoolStorage", {Callable::kStorageType, DType::kBool}},
};

// Objects live in one arena and refer to each other by index, so shared and even cyclic references
// (which a pickle can express) need no ownership graph.
using ObjectId = uint32_t;

struct Tuple {
  std::vector<ObjectId> items;
};
struct List {
  std::vector<ObjectId> items;
};
struct Dict {
  std::vector<std::pair<ObjectId, ObjectId>> items;
};
struct StorageRef {
  size_t index;  // into PickledStateDict::storages
};
struct TensorRef {
  size_t index;  // into Unpickler::tensors_
};

using Object = std::variant<std::monostate, bool, int64_t, double, std::string, Tuple, List, Dict, Global,
                            StorageRef, TensorRef>;
// With their article, for messages.
constexpr const char* kKindNames[] = {"None",   "a bool",   "an int",   "a float",   "a str",   "a tuple",
                                      "a list", "a dict",   "a global", "a storage", "a tensor"};
static_assert(std::size(kKindNames) == std::variant_size_v<Object>);

Status format_error(std::string message) { return make_error(ErrorCode::kFormatError, std::move(message)); }

class Unpickler {
 public:
  explicit Unpickler(std::span<const uint8_t> pickle) : in_(pickle) {}

  Result<PickledStateDict> run() {
    while (pos_ < in_.size()) {
      op_pos_ = pos_;
      const uint8_t opcode = in_[pos_++];
      if (opcode == kStop) return state_dict();
      DINOV3_RETURN_IF_ERROR(step(opcode));
    }
    return format_error("pickle ends without a STOP opcode");
  }

 private:
  Status step(uint8_t opcode);

  // Reading operands.
  Result<std::span<const uint8_t>> take(uint64_t nbytes) {
    if (nbytes > in_.size() - pos_) return format_error("pickle is truncated inside the opcode at byte " +
                                                        std::to_string(op_pos_));
    const auto bytes = in_.subspan(pos_, nbytes);
    pos_ += nbytes;
    return bytes;
  }
  Result<uint64_t> take_le(size_t nbytes) {
    DINOV3_ASSIGN_OR_RETURN(const auto bytes, take(nbytes));
    uint64_t value = 0;
    for (size_t i = nbytes; i-- > 0;) value = (value << 8) | bytes[i];
    return value;
  }
  Result<std::string_view> take_line() {
    const auto rest = in_.subspan(pos_);
    const auto text = std::string_view(reinterpret_cast<const char*>(rest.data()), rest.size());
    const size_t end = text.find('\n');
    if (end == std::string_view::npos)
      return format_error("pickle is truncated inside the opcode at byte " + std::to_string(op_pos_));
    pos_ += end + 1;
    return text.substr(0, end);
  }

  // The stack. Items below the innermost MARK belong to an enclosing construct and cannot be popped.
  size_t floor() const { return marks_.empty() ? 0 : marks_.back(); }
  Status push(Object object) {
    if (objects_.size() >= kMaxObjects) return make_error(ErrorCode::kOutOfMemory, "pickle holds too many objects");
    objects_.push_back(std::move(object));
    return push_id(static_cast<ObjectId>(objects_.size() - 1));
  }
  Status push_id(ObjectId id) {
    if (stack_.size() >= kMaxStackDepth) return make_error(ErrorCode::kOutOfMemory, "pickle stack is too deep");
    stack_.push_back(id);
    return Status::ok_status();
  }
  Result<ObjectId> top() const {
    if (stack_.size() <= floor()) return underflow();
    return stack_.back();
  }
  Result<ObjectId> pop() {
    DINOV3_ASSIGN_OR_RETURN(const ObjectId id, top());
    stack_.pop_back();
    return id;
  }
  // Pops the items pushed since the innermost MARK, and the MARK.
  Result<std::vector<ObjectId>> pop_mark() {
    if (marks_.empty()) return format_error("pickle opcode at byte " + std::to_string(op_pos_) + " needs a MARK");
    const auto begin = stack_.begin() + static_cast<std::ptrdiff_t>(marks_.back());
    std::vector<ObjectId> items(begin, stack_.end());
    stack_.erase(begin, stack_.end());
    marks_.pop_back();
    return items;
  }
  Status underflow() const {
    return format_error("pickle stack underflow at byte " + std::to_string(op_pos_));
  }

  template <typename T>
  T* get(ObjectId id) {
    return std::get_if<T>(&objects_[id]);
  }
  Status wrong_kind(ObjectId id, const std::string& expected) const {
    return format_error("pickle has " + std::string(kKindNames[objects_[id].index()]) + " where " + expected +
                        " belongs (opcode at byte " + std::to_string(op_pos_) + ")");
  }
  Result<Shape> int_tuple(ObjectId id, const char* what);

  // Opcodes with more to them than a push.
  Status push_int(uint64_t raw, size_t nbytes);
  Status push_float();
  Status memo_put(uint64_t index);
  Status memo_get(uint64_t index);
  Status push_tuple(size_t count);
  Status set_items(std::vector<ObjectId> items);
  Status append_items(std::vector<ObjectId> items);
  Status load_global(std::string_view module, std::string_view name);
  Status stack_global();
  Status reduce();
  Status rebuild_tensor(const std::vector<ObjectId>& args);
  Status persistent_load();
  Status build();
  Result<PickledStateDict> state_dict();

  std::span<const uint8_t> in_;
  size_t pos_ = 0;
  size_t op_pos_ = 0;  // where the opcode being run starts, for messages
  std::vector<Object> objects_;
  std::vector<ObjectId> stack_;
  std::vector<size_t> marks_;  // stack sizes at each open MARK
  std::unordered_map<uint64_t, ObjectId> memo_;
  std::vector<PickledStorage> storages_;
  std::vector<PickledTensor> tensors_;  // unnamed until the top-level dict gives them keys
};

Status Unpickler::step(uint8_t opcode) {
  switch (opcode) {
    case kProto: {
      DINOV3_ASSIGN_OR_RETURN(const uint64_t protocol, take_le(1));
      if (protocol > kMaxProtocol)
        return make_error(ErrorCode::kUnsupported, "pickle protocol " + std::to_string(protocol) + " is not supported");
      return Status::ok_status();
    }
    case kFrame:  // protocol 4 framing only hints at read sizes; the whole pickle is in memory
      return take(8).status();
    case kMark:
      if (marks_.size() >= kMaxMarkDepth) return format_error("pickle nests MARKs too deeply");
      marks_.push_back(stack_.size());
      return Status::ok_status();
    case kEmptyDict: return push(Dict{});
    case kEmptyList: return push(List{});
    case kEmptyTuple: return push(Tuple{});
    case kTuple1: return push_tuple(1);
    case kTuple2: return push_tuple(2);
    case kTuple3: return push_tuple(3);
    case kTuple: {
      DINOV3_ASSIGN_OR_RETURN(auto items, pop_mark());
      return push(Tuple{std::move(items)});
    }
    case kNone: return push(std::monostate{});
    case kNewTrue: return push(true);
    case kNewFalse: return push(false);
    case kBinInt: {
      DINOV3_ASSIGN_OR_RETURN(const uint64_t raw, take_le(4));
      return push_int(raw, 4);
    }
    case kBinInt1: {
      DINOV3_ASSIGN_OR_RETURN(const uint64_t value, take_le(1));
      return push(static_cast<int64_t>(value));
    }
    case kBinInt2: {
      DINOV3_ASSIGN_OR_RETURN(const uint64_t value, take_le(2));
      return push(static_cast<int64_t>(value));
    }
    case kLong1: {
      DINOV3_ASSIGN_OR_RETURN(const uint64_t nbytes, take_le(1));
      if (nbytes > 8) return make_error(ErrorCode::kUnsupported, "pickle holds an integer wider than 64 bits");
      DINOV3_ASSIGN_OR_RETURN(const uint64_t raw, take_le(nbytes));
      return push_int(raw, nbytes);
    }
    case kBinFloat: return push_float();
    case kBinUnicode:
    case kShortBinUnicode: {
      DINOV3_ASSIGN_OR_RETURN(const uint64_t length, take_le(opcode == kBinUnicode ? 4 : 1));
      DINOV3_ASSIGN_OR_RETURN(const auto bytes, take(length));
      return push(std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
    }
    case kBinPut:
    case kLongBinPut: {
      DINOV3_ASSIGN_OR_RETURN(const uint64_t index, take_le(opcode == kBinPut ? 1 : 4));
      return memo_put(index);
    }
    case kMemoize: return memo_put(memo_.size());
    case kBinGet:
    case kLongBinGet: {
      DINOV3_ASSIGN_OR_RETURN(const uint64_t index, take_le(opcode == kBinGet ? 1 : 4));
      return memo_get(index);
    }
    case kSetItem: {
      DINOV3_ASSIGN_OR_RETURN(const ObjectId value, pop());
      DINOV3_ASSIGN_OR_RETURN(const ObjectId key, pop());
      return set_items({key, value});
    }
    case kSetItems: {
      DINOV3_ASSIGN_OR_RETURN(auto items, pop_mark());
      return set_items(std::move(items));
    }
    case kAppend: {
      DINOV3_ASSIGN_OR_RETURN(const ObjectId value, pop());
      return append_items({value});
    }
    case kAppends: {
      DINOV3_ASSIGN_OR_RETURN(auto items, pop_mark());
      return append_items(std::move(items));
    }
    case kGlobal: {
      DINOV3_ASSIGN_OR_RETURN(const std::string_view module, take_line());
      DINOV3_ASSIGN_OR_RETURN(const std::string_view name, take_line());
      return load_global(module, name);
    }
    case kStackGlobal: return stack_global();
    case kReduce: return reduce();
    case kBinPersId: return persistent_load();
    case kBuild: return build();
    default: {
      char text[96];
      std::snprintf(text, sizeof(text), "pickle opcode 0x%02x at byte %zu is not supported", opcode, op_pos_);
      return make_error(ErrorCode::kUnsupported, text);
    }
  }
}

// Sign-extends a little-endian two's complement integer of `nbytes` bytes.
Status Unpickler::push_int(uint64_t raw, size_t nbytes) {
  if (nbytes > 0 && nbytes < 8 && (raw >> (8 * nbytes - 1)) & 1) raw |= ~uint64_t{0} << (8 * nbytes);
  return push(static_cast<int64_t>(raw));
}

// BINFLOAT is the one big-endian operand.
Status Unpickler::push_float() {
  DINOV3_ASSIGN_OR_RETURN(const auto bytes, take(8));
  uint64_t bits = 0;
  for (const uint8_t byte : bytes) bits = (bits << 8) | byte;
  return push(std::bit_cast<double>(bits));
}

Status Unpickler::memo_put(uint64_t index) {
  DINOV3_ASSIGN_OR_RETURN(const ObjectId id, top());
  if (memo_.size() >= kMaxObjects && !memo_.contains(index))
    return make_error(ErrorCode::kOutOfMemory, "pickle memo holds too many entries");
  memo_[index] = id;
  return Status::ok_status();
}

Status Unpickler::memo_get(uint64_t index) {
  const auto it = memo_.find(index);
  if (it == memo_.end()) return format_error("pickle memo has no entry " + std::to_string(index));
  return push_id(it->second);
}

Status Unpickler::push_tuple(size_t count) {
  if (stack_.size() - floor() < count) return underflow();
  std::vector<ObjectId> items(stack_.end() - static_cast<std::ptrdiff_t>(count), stack_.end());
  stack_.resize(stack_.size() - count);
  return push(Tuple{std::move(items)});
}

Status Unpickler::set_items(std::vector<ObjectId> items) {
  if (items.size() % 2 != 0) return format_error("pickle SETITEMS has a key without a value");
  DINOV3_ASSIGN_OR_RETURN(const ObjectId target, top());
  Dict* dict = get<Dict>(target);
  if (dict == nullptr) return wrong_kind(target, "a dict");
  for (size_t i = 0; i < items.size(); i += 2) dict->items.emplace_back(items[i], items[i + 1]);
  return Status::ok_status();
}

Status Unpickler::append_items(std::vector<ObjectId> items) {
  DINOV3_ASSIGN_OR_RETURN(const ObjectId target, top());
  List* list = get<List>(target);
  if (list == nullptr) return wrong_kind(target, "a list");
  list->items.insert(list->items.end(), items.begin(), items.end());
  return Status::ok_status();
}

// The only place a pickle could reach code; everything off the allow-list is refused by name.
Status Unpickler::load_global(std::string_view module, std::string_view name) {
  for (const AllowedGlobal& allowed : kAllowedGlobals)
    if (allowed.module == module && allowed.name == name) return push(allowed.global);
  return make_error(ErrorCode::kUnsupported, "pickle refers to a forbidden global '" + std::string(module) + "." +
                                                 std::string(name) + "'; only state_dict contents are accepted");
}

Status Unpickler::stack_global() {
  DINOV3_ASSIGN_OR_RETURN(const ObjectId name_id, pop());
  DINOV3_ASSIGN_OR_RETURN(const ObjectId module_id, pop());
  const std::string* name = get<std::string>(name_id);
  const std::string* module = get<std::string>(module_id);
  if (name == nullptr) return wrong_kind(name_id, "a global's name");
  if (module == nullptr) return wrong_kind(module_id, "a global's module");
  return load_global(*module, *name);
}

Result<Shape> Unpickler::int_tuple(ObjectId id, const char* what) {
  const Tuple* tuple = get<Tuple>(id);
  if (tuple == nullptr) return wrong_kind(id, what);
  Shape values;
  values.reserve(tuple->items.size());
  for (const ObjectId item : tuple->items) {
    const int64_t* value = get<int64_t>(item);
    if (value == nullptr) return wrong_kind(item, what);
    values.push_back(*value);
  }
  return values;
}

Status Unpickler::reduce() {
  DINOV3_ASSIGN_OR_RETURN(const ObjectId args_id, pop());
  DINOV3_ASSIGN_OR_RETURN(const ObjectId callable_id, pop());
  const Global* global = get<Global>(callable_id);
  if (global == nullptr) return wrong_kind(callable_id, "a callable");
  const Tuple* args = get<Tuple>(args_id);
  if (args == nullptr) return wrong_kind(args_id, "an argument tuple");
  switch (global->callable) {
    case Callable::kOrderedDict:
      if (!args->items.empty()) return format_error("pickle builds an OrderedDict from arguments");
      return push(Dict{});
    case Callable::kRebuildTensor: return rebuild_tensor(args->items);
    case Callable::kRebuildParameter: {
      // _rebuild_parameter(data, requires_grad, backward_hooks): a Parameter is its tensor here.
      if (args->items.size() != 3 || get<TensorRef>(args->items[0]) == nullptr)
        return format_error("pickle calls _rebuild_parameter with unexpected arguments");
      return push_id(args->items[0]);
    }
    case Callable::kStorageType: break;
  }
  return format_error("pickle constructs a storage directly; storages must come from persistent ids");
}

// _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata]).
// Only the layout is kept; the numbers are checked against the storage record by the caller.
Status Unpickler::rebuild_tensor(const std::vector<ObjectId>& args) {
  if (args.size() != 6 && args.size() != 7)
    return format_error("pickle calls _rebuild_tensor_v2 with " + std::to_string(args.size()) + " arguments");
  const StorageRef* storage = get<StorageRef>(args[0]);
  if (storage == nullptr) return wrong_kind(args[0], "a tensor's storage");
  const int64_t* offset = get<int64_t>(args[1]);
  if (offset == nullptr) return wrong_kind(args[1], "a tensor's storage offset");
  PickledTensor tensor;
  tensor.storage = storage->index;
  tensor.offset = *offset;
  DINOV3_ASSIGN_OR_RETURN(tensor.shape, int_tuple(args[2], "a tensor's size"));
  DINOV3_ASSIGN_OR_RETURN(tensor.strides, int_tuple(args[3], "a tensor's stride"));
  if (tensor.shape.size() != tensor.strides.size())
    return format_error("pickle gives a tensor " + std::to_string(tensor.shape.size()) + " sizes but " +
                        std::to_string(tensor.strides.size()) + " strides");
  tensors_.push_back(std::move(tensor));
  return push(TensorRef{tensors_.size() - 1});
}

// torch.save replaces each storage with the persistent id ('storage', storage_type, key, location, numel).
Status Unpickler::persistent_load() {
  DINOV3_ASSIGN_OR_RETURN(const ObjectId pid_id, pop());
  const auto not_storage = [&] {
    return format_error("pickle has a persistent id that is not a torch storage (opcode at byte " +
                        std::to_string(op_pos_) + ")");
  };
  const Tuple* pid = get<Tuple>(pid_id);
  if (pid == nullptr || pid->items.size() != 5) return not_storage();
  const auto& items = pid->items;
  const std::string* tag = get<std::string>(items[0]);
  const Global* type = get<Global>(items[1]);
  const std::string* key = get<std::string>(items[2]);
  const int64_t* numel = get<int64_t>(items[4]);
  if (tag == nullptr || *tag != "storage" || type == nullptr || type->callable != Callable::kStorageType ||
      key == nullptr || get<std::string>(items[3]) == nullptr || numel == nullptr)
    return not_storage();
  storages_.push_back({type->dtype, *key, *numel});
  return push(StorageRef{storages_.size() - 1});
}

// A pickled OrderedDict state_dict carries its `_metadata` attribute (per-module versions) as BUILD
// state; loading weights does not need it.
Status Unpickler::build() {
  DINOV3_RETURN_IF_ERROR(pop().status());
  DINOV3_ASSIGN_OR_RETURN(const ObjectId target, top());
  if (get<Dict>(target) == nullptr) return wrong_kind(target, "a dict with attributes");
  return Status::ok_status();
}

Result<PickledStateDict> Unpickler::state_dict() {
  DINOV3_ASSIGN_OR_RETURN(const ObjectId root, top());
  const Dict* dict = get<Dict>(root);
  if (dict == nullptr)
    return format_error("pickle holds " + std::string(kKindNames[objects_[root].index()]) + ", not a state_dict");
  PickledStateDict result;
  std::unordered_set<std::string_view> seen;
  for (const auto& [key_id, value_id] : dict->items) {
    const std::string* key = get<std::string>(key_id);
    if (key == nullptr) return wrong_kind(key_id, "a state_dict key");
    const TensorRef* tensor = get<TensorRef>(value_id);
    if (tensor == nullptr) continue;
    if (!seen.insert(*key).second) return format_error("pickle names tensor '" + *key + "' twice");
    result.tensors.push_back(tensors_[tensor->index]);
    result.tensors.back().name = *key;
  }
  result.storages = std::move(storages_);
  return result;
}

}  // namespace

Result<PickledStateDict> read_state_dict_pickle(std::span<const uint8_t> pickle) { return Unpickler(pickle).run(); }

}  // namespace dinov3::io
