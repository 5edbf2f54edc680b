// Which process an object that owns worker threads belongs to. A child made by fork() holds a copy of the
// parent's memory but only the thread that called fork: an object whose workers were started before the
// fork has none of them there, and its locks may have been copied held by a thread that no longer exists.
// Such an object records fork_epoch() when it starts its threads and compares it before it waits for them,
// signals them or joins them (the CPU backend's thread pool, the image prefetcher).
#pragma once

#include <cstdint>

namespace dinov3 {

// 0 in the process that first called it, one more in each child forked after that (a pthread_atfork child
// handler, registered by the first call: so before any object that recorded a value could be copied by a
// fork). Equal values: the same process. One atomic load.
uint64_t fork_epoch();

}  // namespace dinov3
