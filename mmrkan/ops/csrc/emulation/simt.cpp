// The SIMT emulator (simt.h): launch checks, the worker pool, barriers, warp exchanges, shared
// memory. Threads synchronise only through the barriers' atomics, so ThreadSanitizer sees exactly
// the happens-before edges that __syncthreads() and the shuffles create, and nothing more.
#include "simt.h"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <sstream>
#include <thread>

thread_local uint3 threadIdx;
thread_local uint3 blockIdx;
thread_local dim3 blockDim;
thread_local dim3 gridDim;

namespace mmrkan {
namespace simt {
namespace {

// Limits of every CUDA GPU since compute capability 3.0 (CUDA C++ Programming Guide, "Technical
// Specifications per Compute Capability").
constexpr unsigned kMaxThreadsPerBlock = 1024;
constexpr unsigned kMaxBlockDim[3] = {1024, 1024, 64};
constexpr unsigned kMaxGridDim[3] = {2147483647u, 65535, 65535};
constexpr unsigned char kSharedMemoryPoison = 0xff;

std::string str(const dim3& d) {
  std::ostringstream out;
  out << "(" << d.x << ", " << d.y << ", " << d.z << ")";
  return out.str();
}

size_t round_up(size_t n, size_t multiple) { return (n + multiple - 1) / multiple * multiple; }

// Thrown on the other threads of a launch once one has faulted: unwinds them out of the kernel.
struct Aborted {};

// Sleeps while *word == value (Linux futex: no lost wake-ups, no mutex convoy on wake-up).
void futex_wait(std::atomic<uint32_t>& word, uint32_t value) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(&word), FUTEX_WAIT_PRIVATE, value, nullptr,
          nullptr, 0);
}

void futex_wake_all(std::atomic<uint32_t>& word) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(&word), FUTEX_WAKE_PRIVATE, INT_MAX, nullptr,
          nullptr, 0);
}

// A barrier's arrivals in its current round; the round ends when `expected` threads arrived.
// The arrivals' acq_rel increments and the round's release/acquire make every thread's writes
// before the barrier visible to every thread after it (the edges ThreadSanitizer checks).
struct Barrier {
  std::atomic<int> arrived{0};
  std::atomic<uint32_t> round{0};
};

struct Launch {
  dim3 grid, block;
  int64_t num_blocks = 0;
  std::vector<int64_t> block_order;  // linear block indices in the order they run
  int threads = 0;
  int warps = 0;
  size_t dynamic_smem = 0;
  size_t smem_limit = 0;
  size_t static_smem = 0;  // as allocated by thread 0
  const std::function<void()>* body = nullptr;
  std::unique_ptr<unsigned char[]> smem;  // dynamic part first, then the static arrays
  std::vector<uint64_t> shuffle_slots;    // [warp][round parity][lane]

  Barrier block_barrier;  // __syncthreads()
  std::unique_ptr<Barrier[]> warp_barriers;
  Barrier block_end;  // every thread of the block returned; starts the next block
  std::atomic<int> waiting{0};  // threads asleep in any barrier (never over the true count)
  std::atomic<bool> failed{false};

  std::mutex mutex;  // guards error and workers_done
  std::string error;
  int workers_done = 0;
  std::condition_variable all_done;

  // Records the first failure and wakes every barrier (its round changes, so no sleeper stays).
  // Only the first failure moves the rounds: several threads may fault, and the moves must not
  // add up to a whole turn of the 32-bit counter (a sleeper would see its round again).
  void fail(const std::string& message) {
    {
      std::lock_guard<std::mutex> lock(mutex);
      if (error.empty()) error = message;
    }
    if (failed.exchange(true)) return;
    for (Barrier* barrier : barriers()) {
      barrier->round.fetch_add(1);
      futex_wake_all(barrier->round);
    }
  }

  std::vector<Barrier*> barriers() {
    std::vector<Barrier*> all = {&block_barrier, &block_end};
    for (int w = 0; w < warps; ++w) all.push_back(&warp_barriers[w]);
    return all;
  }

  std::string deadlock_message(const char* where) {
    std::ostringstream out;
    out << "deadlock in block " << str(dim3(blockIdx.x, blockIdx.y, blockIdx.z))
        << ": every thread waits, but not at the same barrier (the last arrived at " << where
        << "): " << block_barrier.arrived.load() << " at __syncthreads(), "
        << block_end.arrived.load() << " returned from the kernel";
    for (int w = 0; w < warps; ++w) {
      if (warp_barriers[w].arrived.load() > 0) {
        out << ", " << warp_barriers[w].arrived.load() << " of warp " << w
            << " at a warp shuffle";
      }
    }
    out << ". A barrier or full-mask shuffle must be reached by all threads (lanes) it covers";
    return out.str();
  }

  // Counts this thread in `barrier`'s round; the `expected`-th arrival ends the round, the others
  // wait for it. `on_last` runs in the last arrival before the others are released. Returns
  // false if the launch failed.
  template <typename OnLast>
  bool arrive_and_wait(Barrier& barrier, int expected, const char* where, OnLast&& on_last) {
    // Read the round before checking `failed`: fail() sets `failed`, then changes every round.
    const uint32_t round = barrier.round.load(std::memory_order_acquire);
    if (failed.load()) return false;
    if (barrier.arrived.fetch_add(1, std::memory_order_acq_rel) + 1 == expected) {
      on_last();
      barrier.arrived.store(0, std::memory_order_relaxed);
      waiting.fetch_sub(expected - 1);
      barrier.round.fetch_add(1, std::memory_order_acq_rel);
      futex_wake_all(barrier.round);
      return !failed.load();
    }
    if (waiting.fetch_add(1) + 1 == threads) {
      fail(deadlock_message(where));
      return false;
    }
    while (barrier.round.load(std::memory_order_acquire) == round) futex_wait(barrier.round, round);
    return !failed.load();
  }

  bool arrive_and_wait(Barrier& barrier, int expected, const char* where) {
    return arrive_and_wait(barrier, expected, where, [] {});
  }
};

struct ThreadContext {
  Launch* launch = nullptr;
  int linear_id = 0;
  int warp = 0;
  int lane = 0;
  unsigned shuffles = 0;      // warp exchanges so far in this block: selects the slot parity
  size_t static_smem_end = 0;  // end of this thread's static shared arrays so far
};

thread_local ThreadContext context;

ThreadContext& current_thread(const char* what) {
  if (context.launch == nullptr) {
    throw std::logic_error(std::string(what) + " called outside an emulated kernel");
  }
  return context;
}

std::string thread_name() {
  std::ostringstream out;
  out << "block " << str(dim3(blockIdx.x, blockIdx.y, blockIdx.z)) << " thread "
      << str(dim3(threadIdx.x, threadIdx.y, threadIdx.z));
  return out.str();
}

// Runs this worker's thread `linear_id` in every block of the launch, in the launch's order.
void run_thread(Launch& launch, int linear_id) {
  context = ThreadContext();
  context.launch = &launch;
  context.linear_id = linear_id;
  context.warp = linear_id / kWarpSize;
  context.lane = linear_id % kWarpSize;
  blockDim = launch.block;
  gridDim = launch.grid;
  threadIdx.x = linear_id % launch.block.x;
  threadIdx.y = linear_id / launch.block.x % launch.block.y;
  threadIdx.z = linear_id / (launch.block.x * launch.block.y);
  for (const int64_t b : launch.block_order) {
    blockIdx.x = static_cast<unsigned>(b % launch.grid.x);
    blockIdx.y = static_cast<unsigned>(b / launch.grid.x % launch.grid.y);
    blockIdx.z = static_cast<unsigned>(b / (static_cast<int64_t>(launch.grid.x) * launch.grid.y));
    context.shuffles = 0;
    context.static_smem_end = round_up(launch.dynamic_smem, 16);
    try {
      (*launch.body)();
    } catch (const Aborted&) {
    } catch (const std::exception& e) {
      launch.fail(thread_name() + ": " + e.what());
    }
    if (linear_id == 0) {
      launch.static_smem = context.static_smem_end - round_up(launch.dynamic_smem, 16);
    }
    // The last thread to return poisons the shared memory for the next block.
    const bool next =
        launch.arrive_and_wait(launch.block_end, launch.threads, "the kernel's end", [&] {
          std::memset(launch.smem.get(), kSharedMemoryPoison, launch.smem_limit);
        });
    if (!next) break;
  }
  context = ThreadContext();
}

// Host threads reused across launches; worker i runs CUDA thread i of every block.
class WorkerPool {
 public:
  void run(Launch& launch) {
    std::unique_lock<std::mutex> lock(mutex_);
    while (static_cast<int>(workers_.size()) < launch.threads) {
      const int index = static_cast<int>(workers_.size());
      workers_.emplace_back([this, index] { work(index); });
    }
    launch_ = &launch;
    ++launch_id_;
    wake_.notify_all();
    lock.unlock();
    {
      std::unique_lock<std::mutex> launch_lock(launch.mutex);
      launch.all_done.wait(launch_lock, [&] { return launch.workers_done == launch.threads; });
    }
    lock.lock();
    launch_ = nullptr;
  }

 private:
  void work(int index) {
    uint64_t seen = 0;
    for (;;) {
      Launch* launch;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return launch_ != nullptr && launch_id_ != seen; });
        seen = launch_id_;
        launch = launch_;
        if (index >= launch->threads) continue;
      }
      run_thread(*launch, index);
      std::lock_guard<std::mutex> lock(launch->mutex);
      if (++launch->workers_done == launch->threads) launch->all_done.notify_one();
    }
  }

  std::mutex mutex_;
  std::condition_variable wake_;
  // Never joined: the pool lives as long as the process (it is never destroyed).
  std::vector<std::thread> workers_;
  Launch* launch_ = nullptr;
  uint64_t launch_id_ = 0;
};

// 0, 1, ..., count - 1, or a permutation of them seeded by `seed` (a fixed generator, so a seed
// gives the same order on every machine).
std::vector<int64_t> make_block_order(int64_t count, uint64_t seed) {
  std::vector<int64_t> order(count);
  for (int64_t i = 0; i < count; ++i) order[i] = i;
  uint64_t state = seed;
  for (int64_t i = count - 1; seed != 0 && i > 0; --i) {  // Fisher-Yates with splitmix64
    state += 0x9e3779b97f4a7c15ull;
    uint64_t z = state;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    std::swap(order[i], order[static_cast<int64_t>(z % static_cast<uint64_t>(i + 1))]);
  }
  return order;
}

// x moved up by `ulps` units in the last place (toward +infinity), or x itself if not finite.
float add_ulps(float x, int ulps) {
  for (int i = 0; i < ulps && std::isfinite(x); ++i) x = std::nextafter(x, INFINITY);
  return x;
}

float flush_denormal(float x) { return std::fpclassify(x) == FP_SUBNORMAL ? std::copysign(0.f, x) : x; }

std::mutex launch_mutex;  // one launch at a time; guards the log
std::vector<LaunchRecord> log_records;

void check_configuration(dim3 grid, dim3 block, size_t dynamic_smem, size_t smem_limit) {
  const unsigned grid_dims[3] = {grid.x, grid.y, grid.z};
  const unsigned block_dims[3] = {block.x, block.y, block.z};
  const char* axes = "xyz";
  std::ostringstream problem;
  for (int i = 0; i < 3; ++i) {
    if (grid_dims[i] == 0 || grid_dims[i] > kMaxGridDim[i]) {
      problem << "grid." << axes[i] << " = " << grid_dims[i] << " is outside [1, "
              << kMaxGridDim[i] << "]";
    } else if (block_dims[i] == 0 || block_dims[i] > kMaxBlockDim[i]) {
      problem << "block." << axes[i] << " = " << block_dims[i] << " is outside [1, "
              << kMaxBlockDim[i] << "]";
    }
    if (problem.tellp() > 0) break;
  }
  const uint64_t threads = static_cast<uint64_t>(block.x) * block.y * block.z;
  if (problem.tellp() == 0 && threads > kMaxThreadsPerBlock) {
    problem << "a block of " << threads << " threads is over the limit of "
            << kMaxThreadsPerBlock;
  }
  if (problem.tellp() == 0 && dynamic_smem > smem_limit) {
    problem << dynamic_smem << " bytes of dynamic shared memory are over the per-block limit of "
            << smem_limit;
  }
  if (problem.tellp() > 0) {
    throw std::runtime_error("emulated launch of grid " + str(grid) + ", block " + str(block) +
                             ": " + problem.str() + "; a GPU refuses this launch");
  }
}

}  // namespace

void launch(dim3 grid, dim3 block, size_t dynamic_smem, size_t smem_per_block_limit,
            const std::function<void()>& kernel_body, uint64_t block_order) {
  static WorkerPool* pool = new WorkerPool();  // never destroyed: its threads never exit
  std::lock_guard<std::mutex> serial(launch_mutex);
  check_configuration(grid, block, dynamic_smem, smem_per_block_limit);
  Launch launch;
  launch.grid = grid;
  launch.block = block;
  launch.num_blocks = static_cast<int64_t>(grid.x) * grid.y * grid.z;
  launch.block_order = make_block_order(launch.num_blocks, block_order);
  launch.threads = static_cast<int>(block.x * block.y * block.z);
  launch.warps = (launch.threads + kWarpSize - 1) / kWarpSize;
  launch.dynamic_smem = dynamic_smem;
  launch.smem_limit = smem_per_block_limit;
  launch.body = &kernel_body;
  launch.smem.reset(new unsigned char[std::max<size_t>(smem_per_block_limit, 1)]);
  std::memset(launch.smem.get(), kSharedMemoryPoison, smem_per_block_limit);
  launch.shuffle_slots.assign(static_cast<size_t>(launch.warps) * 2 * kWarpSize, 0);
  launch.warp_barriers.reset(new Barrier[launch.warps]);
  pool->run(launch);
  log_records.push_back({grid, block, dynamic_smem, launch.static_smem});
  if (launch.failed) {
    throw std::runtime_error("emulated launch of grid " + str(grid) + ", block " + str(block) +
                             " failed: " + launch.error);
  }
}

std::vector<LaunchRecord> launch_log() {
  std::lock_guard<std::mutex> lock(launch_mutex);
  return log_records;
}

void clear_launch_log() {
  std::lock_guard<std::mutex> lock(launch_mutex);
  log_records.clear();
}

void fault(const std::string& message) { throw Fault(message); }

void sync_block() {
  ThreadContext& self = current_thread("__syncthreads()");
  Launch& launch = *self.launch;
  if (!launch.arrive_and_wait(launch.block_barrier, launch.threads, "__syncthreads()")) {
    throw Aborted();
  }
}

int lane_id() { return current_thread("a warp intrinsic").lane; }

namespace {

// The checks every warp-wide intrinsic makes; returns the caller's context.
ThreadContext& check_warp_intrinsic(unsigned mask, int width, const char* intrinsic) {
  ThreadContext& self = current_thread(intrinsic);
  Launch& launch = *self.launch;
  if (mask != kFullMask) {
    std::ostringstream out;
    out << intrinsic << " with mask 0x" << std::hex << mask
        << ": the emulator supports only the full-warp mask 0xffffffff";
    fault(out.str());
  }
  if (width != kWarpSize) {
    fault(std::string(intrinsic) + " with width " + std::to_string(width) +
          ": the emulator supports only width 32");
  }
  const int lanes = std::min(kWarpSize, launch.threads - self.warp * kWarpSize);
  if (lanes != kWarpSize) {
    fault(std::string(intrinsic) + " with the full mask in a warp of " + std::to_string(lanes) +
          " threads (the block's " + std::to_string(launch.threads) +
          " threads are not a multiple of 32): undefined on a GPU");
  }
  return self;
}

}  // namespace

void warp_exchange(unsigned mask, int width, const char* intrinsic, const void* value,
                   void* result, size_t bytes, int src_lane) {
  ThreadContext& self = check_warp_intrinsic(mask, width, intrinsic);
  Launch& launch = *self.launch;
  // Two slot sets used in turn: a lane can be at most one exchange ahead of the others, because
  // the next exchange's round cannot end before every lane has read this one.
  uint64_t* slots =
      launch.shuffle_slots.data() + (self.warp * 2 + (self.shuffles++ & 1)) * kWarpSize;
  std::memcpy(&slots[self.lane], value, bytes);
  if (!launch.arrive_and_wait(launch.warp_barriers[self.warp], kWarpSize, intrinsic)) {
    throw Aborted();
  }
  std::memcpy(result, &slots[src_lane], bytes);
}

void check_vector_access(const void* ptr, size_t bytes, const char* what) {
  if (reinterpret_cast<uintptr_t>(ptr) % bytes != 0) {
    std::ostringstream out;
    out << "misaligned address: " << bytes << "-byte vector " << what << " at " << ptr
        << " (a GPU stops the kernel with cudaErrorMisalignedAddress)";
    fault(out.str());
  }
}

float ex2_approx(float x) {
  return flush_denormal(add_ulps(static_cast<float>(std::exp2(static_cast<double>(flush_denormal(x)))), 2));
}

float rcp_approx(float x) {
  return flush_denormal(add_ulps(static_cast<float>(1.0 / static_cast<double>(flush_denormal(x))), 1));
}

void* allocate_static_shared(size_t bytes, size_t alignment) {
  ThreadContext& self = current_thread("a __shared__ array");
  Launch& launch = *self.launch;
  const size_t offset = round_up(self.static_smem_end, alignment);
  self.static_smem_end = offset + bytes;
  if (self.static_smem_end > launch.smem_limit) {
    fault("shared memory: " + std::to_string(launch.dynamic_smem) + " bytes dynamic + at least " +
          std::to_string(self.static_smem_end - round_up(launch.dynamic_smem, 16)) +
          " bytes of __shared__ arrays are over the per-block limit of " +
          std::to_string(launch.smem_limit) + " bytes; a GPU refuses this launch");
  }
  return launch.smem.get() + offset;
}

void* dynamic_shared_memory() { return current_thread("dynamic shared memory").launch->smem.get(); }

}  // namespace simt
}  // namespace mmrkan
