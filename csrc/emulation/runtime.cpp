// The emulated GPU of the tests' build (see cuda_emu.h): launch checks, the launch log, and a block scheduler that
// runs a block's threads as fibers of the calling OS thread, so __syncthreads() and the warp collectives are real
// rendezvous points and __shared__ (static thread_local) is shared by exactly the block's threads.
//
// Scheduling. Blocks run one after another. Within a block the scheduler always resumes the first runnable thread
// in its order (forward by default; reverse or shuffled on request): a thread runs until it returns or reaches a
// barrier or warp collective. When the 32 lanes of a warp have all reached the same collective, they exchange
// and become runnable again, so a warp runs ahead as far as it can before the next warp starts; when no thread can
// run, every thread that has not returned must wait at the same __syncthreads(), which then releases them.
// Anything else (a lane that returned or waits elsewhere, a thread that returned while others wait at a barrier)
// is an error naming the kernel, block, thread and source lines. Racing on shared memory without a barrier gives
// the results of the order chosen — the tests run several.
//
// Faults. The kernels compile with -fsanitize=alignment,bounds but without the sanitizer's library: the handlers at
// the end of this file take its place. A misaligned access (a GPU's "misaligned address", e.g. a 16-byte vector
// load from a pointer that is not 16-byte aligned) or an index past the end of a fixed-size array (a __shared__
// tile) is recorded on the thread, and the scheduler reports it when the thread next stops.
//
// Shared memory. Static (__shared__, reported by the rewritten declarations) and dynamic shared memory together
// count against the 48 KiB a launch gets, or against what the kernel instantiation opted in to; both are filled
// with pseudo-random garbage at each block's start, so a read before a write gives a wrong value.
//
// Races between blocks. The kernels also compile with -fsanitize=thread, again without its library: every load and
// store of global memory calls the hooks at the end of this file, which remember, for the launch running, which
// block last stored to each address. A block that reads or stores an address another block of the same launch
// stored to without an atomic is a data race on a GPU (a lost update where an atomicAdd is needed, or a read whose
// value depends on the blocks' timing): a fault, whatever order the blocks run in. Atomics, the threads' stacks and
// shared memory are exempt. (This file is not instrumented: it is built as a library of its own.)
#include "emulation/cuda_emu.h"

#include <c10/util/Exception.h>

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <exception>
#include <mutex>
#include <numeric>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#if defined(__x86_64__) && !defined(PYGAN_EMU_UCONTEXT)
#define PYGAN_EMU_ASM_SWITCH 1
#else
#include <ucontext.h>
#endif

namespace pygan::emu {
namespace {

// ---------------------------------------------------------------- contexts and stacks

#if PYGAN_EMU_ASM_SWITCH
extern "C" void pygan_emu_switch(void** save_sp, void* load_sp);
extern "C" void pygan_emu_trampoline();
// Saves the callee-saved registers, MXCSR and the x87 control word on the current stack, stores the stack pointer
// in *save_sp, and resumes the context saved at load_sp. A new context starts in the trampoline, which calls
// r13(r12) and marks the end of the stack for unwinders.
asm(R"(
  .text
  .p2align 4
  .globl pygan_emu_switch
  .hidden pygan_emu_switch
  .type pygan_emu_switch, @function
pygan_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size pygan_emu_switch, .-pygan_emu_switch

  .p2align 4
  .globl pygan_emu_trampoline
  .hidden pygan_emu_trampoline
  .type pygan_emu_trampoline, @function
pygan_emu_trampoline:
  .cfi_startproc
  .cfi_undefined rip
  movq %r12, %rdi
  callq *%r13
  ud2
  .cfi_endproc
  .size pygan_emu_trampoline, .-pygan_emu_trampoline
)");

struct Context {
  void* sp = nullptr;
};

void make_context(Context& c, char* stack_top, void (*entry)(void*), void* arg) {
  auto* sp = reinterpret_cast<uint64_t*>(stack_top) - 10;  // stack_top is 16-aligned; so is sp
  uint16_t fpucw;
  asm volatile("fnstcw %0" : "=m"(fpucw));
  sp[0] = static_cast<uint64_t>(__builtin_ia32_stmxcsr()) | (static_cast<uint64_t>(fpucw) << 32);
  sp[1] = sp[2] = 0;                             // r15, r14
  sp[3] = reinterpret_cast<uint64_t>(entry);     // r13
  sp[4] = reinterpret_cast<uint64_t>(arg);       // r12
  sp[5] = sp[6] = 0;                             // rbx, rbp
  sp[7] = reinterpret_cast<uint64_t>(&pygan_emu_trampoline);  // return address; then rsp = stack_top - 16
  sp[8] = sp[9] = 0;
  c.sp = sp;
}

void switch_context(Context& from, Context& to) { pygan_emu_switch(&from.sp, to.sp); }
#else
struct Context {
  ucontext_t uc;
};

thread_local void (*pending_entry)(void*) = nullptr;
thread_local void* pending_arg = nullptr;

void ucontext_entry() { pending_entry(pending_arg); }

void make_context(Context& c, char* stack_top, void (*entry)(void*), void* arg) {
  getcontext(&c.uc);
  constexpr size_t kBytes = 256 << 10;
  c.uc.uc_stack.ss_sp = stack_top - kBytes;
  c.uc.uc_stack.ss_size = kBytes;
  c.uc.uc_link = nullptr;
  pending_entry = entry;  // read when the context first runs, which is the next switch to it
  pending_arg = arg;
  makecontext(&c.uc, &ucontext_entry, 0);
}

void switch_context(Context& from, Context& to) { swapcontext(&from.uc, &to.uc); }
#endif

constexpr size_t kStackBytes = 256 << 10;  // per thread of a block; kernels need little, errors a little more

// mmap'ed stacks with a guard page below, reused: a thread that has returned gives its stack to the next one, so
// a kernel without barriers uses one stack for the whole grid.
class StackPool {
 public:
  ~StackPool() {
    for (char* s : free_) munmap(s - page(), kStackBytes + page());
  }
  char* get() {  // the top of a stack
    if (!free_.empty()) {
      char* base = free_.back();
      free_.pop_back();
      return base + kStackBytes;
    }
    void* m = mmap(nullptr, kStackBytes + page(), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    TORCH_CHECK(m != MAP_FAILED, "CUDA emulation: cannot map a thread stack");
    mprotect(m, page(), PROT_NONE);
    return static_cast<char*>(m) + page() + kStackBytes;
  }
  void put(char* top) { free_.push_back(top - kStackBytes); }

 private:
  static size_t page() { return static_cast<size_t>(sysconf(_SC_PAGESIZE)); }
  std::vector<char*> free_;  // bases (just above the guard page)
};

// ---------------------------------------------------------------- configuration and launch log

enum class Order { Forward, Reverse, Shuffle };

struct Config {
  Order order = Order::Forward;
  uint64_t seed = 0;
  bool execute = true;  // false: check and record launches, run no thread (for grids too large to emulate)
};

std::mutex g_mutex;  // the configuration, the device properties, the log and the shared-memory opt-ins
// PYGAN_ALLOW_DYNAMIC_SHARED's opt-ins, per kernel instantiation (its address); and the kernels' text, to say so
// when a launch that does not name its instantiation may need one.
std::unordered_map<const void*, size_t> g_max_dynamic_shared;
std::unordered_map<std::string, int> g_opted_in_text;
Config g_config;
uint64_t g_launch_count = 0;

cudaDeviceProp make_h100() {
  cudaDeviceProp p{};
  std::snprintf(p.name, sizeof(p.name), "%s", "pygan CUDA emulation (H100 SXM limits)");
  p.totalGlobalMem = size_t(80) << 30;
  p.sharedMemPerBlock = 48 << 10;
  p.sharedMemPerBlockOptin = 227 << 10;
  p.sharedMemPerMultiprocessor = 228 << 10;
  p.regsPerBlock = 65536;
  p.warpSize = 32;
  p.maxThreadsPerBlock = 1024;
  p.maxThreadsDim[0] = 1024;
  p.maxThreadsDim[1] = 1024;
  p.maxThreadsDim[2] = 64;
  p.maxGridSize[0] = 2147483647;
  p.maxGridSize[1] = 65535;
  p.maxGridSize[2] = 65535;
  p.major = 9;
  p.minor = 0;
  p.multiProcessorCount = 132;
  p.maxThreadsPerMultiProcessor = 2048;
  p.maxBlocksPerMultiProcessor = 32;
  return p;
}
cudaDeviceProp g_props = make_h100();

struct Record {
  std::string kernel, file;
  int line;
  dim3 grid, block;
};
std::vector<Record> g_log;

// A grid this large would take minutes on the CPU: the tests use small inputs.
constexpr uint64_t kMaxEmulatedThreads = uint64_t(1) << 26;

std::string where_str(const std::source_location& w) {
  std::string_view f = w.file_name();
  const size_t at = f.rfind("/csrc/");
  if (at != std::string_view::npos) f.remove_prefix(at + 6);
  return std::string(f) + ":" + std::to_string(w.line());
}

std::string dims(uint3 d) {
  return "(" + std::to_string(d.x) + ", " + std::to_string(d.y) + ", " + std::to_string(d.z) + ")";
}

// ---------------------------------------------------------------- the block scheduler

enum class State : uint8_t { Ready, AtBarrier, AtWarp, Done };

struct Lane {
  Context ctx;
  char* stack = nullptr;
  uint3 idx{};
  State state = State::Ready;
  bool started = false;
  std::source_location where;  // of the barrier / collective it waits at
  const char* what = "";
  WarpOp op = WarpOp::Sync;
  int size = 0, arg = 0, width = 32, predicate = 0, result = 0;
  alignas(16) unsigned char in[16];
  alignas(16) unsigned char out[16];
  std::exception_ptr error;
  std::string fault;  // the first fault the sanitizer hooks saw (see the end of this file)
};

struct BlockError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A launch that a GPU would refuse, found only once its threads run (static shared memory is known when reached).
struct LaunchFailure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

uint64_t splitmix64(uint64_t& s) {
  uint64_t z = (s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Garbage as uninitialized shared memory holds: pseudo-random bytes (large, small, negative, NaN, denormal values).
void fill_garbage(void* p, size_t bytes, uint64_t seed) {
  auto* b = static_cast<unsigned char*>(p);
  size_t i = 0;
  for (; i + 8 <= bytes; i += 8) {
    const uint64_t v = splitmix64(seed);
    std::memcpy(b + i, &v, 8);
  }
  if (i < bytes) {
    const uint64_t v = splitmix64(seed);
    std::memcpy(b + i, &v, bytes - i);
  }
}

// Which block stored last to each address of global memory in the running launch: an open-addressing table whose
// entries of earlier launches count as empty (no clearing between launches).
class StoreTable {
 public:
  StoreTable() : slots_(size_t(1) << 16) {}
  void new_launch() {
    if (++gen_ == 0) {  // wrapped: old entries would look current
      std::fill(slots_.begin(), slots_.end(), Slot{});
      gen_ = 1;
    }
    count_ = 0;
  }
  // The block (linear index) that stored to `a` in this launch, or -1.
  int64_t writer(uintptr_t a) const {
    for (size_t i = hash(a);; i = (i + 1) & (slots_.size() - 1)) {
      const Slot& s = slots_[i];
      if (s.gen != gen_) return -1;
      if (s.addr == a) return s.block;
    }
  }
  void store(uintptr_t a, uint64_t block) {
    if (2 * (count_ + 1) > slots_.size()) grow();
    put(a, block);
  }

 private:
  struct Slot {
    uintptr_t addr = 0;
    uint64_t block = 0;
    uint32_t gen = 0;
  };
  size_t hash(uintptr_t a) const { return static_cast<size_t>((a * 0x9e3779b97f4a7c15ull) >> 20) & (slots_.size() - 1); }
  void put(uintptr_t a, uint64_t block) {
    for (size_t i = hash(a);; i = (i + 1) & (slots_.size() - 1)) {
      Slot& s = slots_[i];
      if (s.gen != gen_) {
        s = {a, block, gen_};
        ++count_;
        return;
      }
      if (s.addr == a) {
        s.block = block;
        return;
      }
    }
  }
  void grow() {
    std::vector<Slot> old(slots_.size() * 2);
    old.swap(slots_);
    count_ = 0;
    for (const Slot& s : old)
      if (s.gen == gen_) put(s.addr, s.block);
  }
  std::vector<Slot> slots_;
  uint32_t gen_ = 1;
  size_t count_ = 0;
};

// What the memory-access hooks need, per OS thread: set while a kernel thread (fiber) runs.
struct AccessState {
  bool in_kernel = false;
  uint64_t block = 0;  // linear index of the running block
  uintptr_t stack_lo = 0, stack_hi = 0;
  uintptr_t dyn_lo = 0, dyn_hi = 0;
  int n_static = 0;
  uintptr_t static_lo[16], static_hi[16];  // the launch's __shared__ variables
  StoreTable stores;
};
__attribute__((tls_model("initial-exec"))) thread_local AccessState* t_access = nullptr;

class Runner {
 public:
  // Runs one block (blockIdx, blockDim, gridDim are set) to completion.
  void run_block(const KernelBody& body, uint64_t shuffle_seed) {
    body_ = body;
    n_ = static_cast<int>(blockDim.x * blockDim.y * blockDim.z);
    lanes_.assign(n_, Lane{});
    for (int i = 0; i < n_; ++i)
      lanes_[i].idx = {i % blockDim.x, (i / blockDim.x) % blockDim.y, i / (blockDim.x * blockDim.y)};
    order_.resize(n_);
    std::iota(order_.begin(), order_.end(), 0);
    if (g_config.order == Order::Reverse) std::reverse(order_.begin(), order_.end());
    if (g_config.order == Order::Shuffle) {
      std::mt19937_64 rng(shuffle_seed);
      std::shuffle(order_.begin(), order_.end(), rng);
    }
    rank_.resize(n_);
    for (int p = 0; p < n_; ++p) rank_[order_[p]] = p;
    const int warps = (n_ + 31) / 32;
    arrived_.assign(warps, 0);
    warp_first_rank_.assign(warps, n_);
    for (int i = 0; i < n_; ++i) warp_first_rank_[i / 32] = std::min(warp_first_rank_[i / 32], rank_[i]);
    fill_garbage(dynamic_shared_.data(), dynamic_shared_.size() * sizeof(Chunk), shuffle_seed ^ 0x5eed);
    garbage_seed_ = shuffle_seed;
    block_static_.clear();

    struct Cleanup {  // after an error: give back the stacks of the threads left suspended
      Runner& r;
      ~Cleanup() {
        for (Lane& l : r.lanes_)
          if (l.stack) {
            r.stacks_.put(l.stack);
            l.stack = nullptr;
          }
        r.current_ = -1;
      }
    } cleanup{*this};

    int done = 0;
    int pos = 0;
    while (true) {
      while (pos < n_) {
        const int i = order_[pos];
        Lane& l = lanes_[i];
        if (l.state != State::Ready) {
          ++pos;
          continue;
        }
        resume(i);
        if (!l.fault.empty()) fail(i, l.fault);
        if (l.state == State::Done) {
          ++done;
          if (l.error) rethrow_from(i);
        } else if (l.state == State::AtWarp) {
          const int w = i / 32;
          const int size = std::min(32, n_ - w * 32);
          if (size < 32)
            fail(i, std::string(l.what) + " at " + where_str(l.where) + " with the full mask in warp " +
                        std::to_string(w) + ", which has " + std::to_string(size) + " threads only (a block of " +
                        std::to_string(n_) + " threads): the mask names lanes that do not exist");
          if (++arrived_[w] == 32) {
            release_warp(w);
            pos = std::min(pos, warp_first_rank_[w]);
            continue;
          }
        }
        ++pos;
      }
      if (done == n_) return;
      release_barrier();
      pos = 0;
    }
  }

  // Called on a thread's fiber: park it at a barrier or collective until the scheduler releases it.
  Lane& current_lane(const char* what) {
    if (current_ < 0) throw std::logic_error(std::string(what) + " called outside an emulated kernel");
    return lanes_[current_];
  }
  void park(Lane& l) { switch_context(l.ctx, main_); }
  // The lane running now, if any (a fault outside kernels has none).
  Lane* running_lane() { return current_ < 0 ? nullptr : &lanes_[current_]; }

  // A launch begins: its dynamic shared memory, and the limit on static + dynamic shared memory (opted_in: the
  // kernel's opt-in, which bounds dynamic memory alone; static + opt-in must stay within the device's maximum).
  void begin_launch(const LaunchSite& site, size_t dynamic_bytes, size_t opted_in) {
    site_ = site;
    dynamic_bytes_ = dynamic_bytes;
    opted_in_ = opted_in;
    dynamic_shared_.resize((dynamic_bytes + sizeof(Chunk) - 1) / sizeof(Chunk));
    launch_static_.clear();
    static_bytes_ = 0;
    access_.n_static = 0;
    access_.dyn_lo = reinterpret_cast<uintptr_t>(dynamic_shared_.data());
    access_.dyn_hi = access_.dyn_lo + dynamic_shared_.size() * sizeof(Chunk);
    access_.stores.new_launch();
  }
  void* dynamic_shared(size_t* bytes) {
    *bytes = dynamic_bytes_;
    return dynamic_shared_.empty() ? nullptr : dynamic_shared_.data();
  }
  void set_block(uint64_t linear) { access_.block = linear; }

  void static_shared(void* address, size_t bytes, const char* name) {
    if (std::find(block_static_.begin(), block_static_.end(), address) != block_static_.end()) return;
    block_static_.push_back(address);
    fill_garbage(address, bytes, garbage_seed_ ^ reinterpret_cast<uintptr_t>(address));
    for (const auto& [a, b] : launch_static_)
      if (a == address) return;
    launch_static_.emplace_back(address, bytes);
    static_bytes_ += bytes;
    if (access_.n_static < 16) {
      access_.static_lo[access_.n_static] = reinterpret_cast<uintptr_t>(address);
      access_.static_hi[access_.n_static++] = reinterpret_cast<uintptr_t>(address) + bytes;
    }
    const cudaDeviceProp& p = g_props;
    const std::string head = std::string("emulated CUDA launch of ") + site_.kernel + " (" + site_.file + ":" +
                             std::to_string(site_.line) + ") failed: ";
    const std::string sizes = std::to_string(static_bytes_) + " bytes of static shared memory (__shared__ " + name +
                              " reached last)";
    if (opted_in_ == 0 && static_bytes_ + dynamic_bytes_ > p.sharedMemPerBlock)
      throw LaunchFailure(head + "invalid argument: " + sizes + " + " + std::to_string(dynamic_bytes_) +
                          " bytes of dynamic shared memory, more than the " + std::to_string(p.sharedMemPerBlock) +
                          " a launch may use without opting in (PYGAN_ALLOW_DYNAMIC_SHARED; static shared memory "
                          "counts too)");
    if (opted_in_ > 0 && static_bytes_ + opted_in_ > p.sharedMemPerBlockOptin)
      throw LaunchFailure(head + "the kernel's opt-in to " + std::to_string(opted_in_) +
                          " bytes of dynamic shared memory + " + sizes + " exceed the device's " +
                          std::to_string(p.sharedMemPerBlockOptin) + " (cudaFuncSetAttribute fails on a GPU)");
  }

  unsigned active_mask() const {
    const int w = current_ / 32;
    unsigned m = 0;
    for (int i = w * 32; i < std::min(n_, w * 32 + 32); ++i)
      if (lanes_[i].state != State::Done) m |= 1u << (i - w * 32);
    return m;
  }

 private:
  static void entry(void* self) {
    Runner& r = *static_cast<Runner*>(self);
    Lane& l = r.lanes_[r.current_];
    try {
      r.body_.run(r.body_.ctx);
    } catch (...) {
      l.error = std::current_exception();
    }
    l.state = State::Done;
    switch_context(l.ctx, r.main_);
    std::abort();  // a returned thread is never resumed
  }

  void resume(int i) {
    Lane& l = lanes_[i];
    current_ = i;
    threadIdx = l.idx;
    if (!l.started) {
      l.started = true;
      l.stack = stacks_.get();
      make_context(l.ctx, l.stack, &Runner::entry, this);
    }
    access_.stack_hi = reinterpret_cast<uintptr_t>(l.stack);
    access_.stack_lo = access_.stack_hi - kStackBytes;
    access_.in_kernel = true;
    t_access = &access_;
    switch_context(main_, l.ctx);
    access_.in_kernel = false;
    current_ = -1;
    if (l.state == State::Done) {
      stacks_.put(l.stack);
      l.stack = nullptr;
    }
  }

  [[noreturn]] void fail(int i, const std::string& msg) {
    throw BlockError("thread " + dims(lanes_[i].idx) + " (warp " + std::to_string(i / 32) + ", lane " +
                     std::to_string(i % 32) + "): " + msg);
  }

  [[noreturn]] void rethrow_from(int i) {
    try {
      std::rethrow_exception(lanes_[i].error);
    } catch (const LaunchFailure&) {
      throw;
    } catch (const std::exception& e) {
      fail(i, e.what());
    }
    fail(i, "unknown exception");
  }

  static bool same_wait(const Lane& a, const Lane& b) {
    return a.op == b.op && a.size == b.size && a.where.line() == b.where.line() &&
           std::string_view(a.where.file_name()) == b.where.file_name();
  }

  void release_warp(int w) {
    const int lo = w * 32;
    const Lane& first = lanes_[lo];
    for (int i = lo; i < lo + 32; ++i) {
      const Lane& l = lanes_[i];
      if (!same_wait(l, first))
        fail(i, std::string(l.what) + " at " + where_str(l.where) + ", while lane 0 of its warp is at " +
                    first.what + " at " + where_str(first.where) + ": the lanes of a warp must meet at one call");
    }
    unsigned ballot = 0;
    for (int i = lo; i < lo + 32; ++i)
      if (lanes_[i].predicate) ballot |= 1u << (i - lo);
    for (int L = 0; L < 32; ++L) {
      Lane& l = lanes_[lo + L];
      const int width = l.width;
      int src = L;
      switch (l.op) {
        case WarpOp::Idx: src = (L & ~(width - 1)) + (l.arg & (width - 1)); break;
        case WarpOp::Up: src = (L % width) >= l.arg ? L - l.arg : L; break;
        case WarpOp::Down: src = int64_t(L % width) + l.arg < width ? L + l.arg : L; break;
        case WarpOp::Xor: {
          const int x = L ^ l.arg;
          src = (x >= 0 && x < 32 && x / width <= L / width) ? x : L;
          break;
        }
        case WarpOp::Sync: break;
        case WarpOp::Ballot: std::memcpy(l.out, &ballot, sizeof ballot); break;
        case WarpOp::Any: {
          const unsigned v = ballot != 0;
          std::memcpy(l.out, &v, sizeof v);
          break;
        }
        case WarpOp::All: {
          const unsigned v = ballot == 0xffffffffu;
          std::memcpy(l.out, &v, sizeof v);
          break;
        }
      }
      if (l.op == WarpOp::Idx || l.op == WarpOp::Up || l.op == WarpOp::Down || l.op == WarpOp::Xor)
        std::memcpy(l.out, lanes_[lo + src].in, static_cast<size_t>(l.size));
    }
    for (int i = lo; i < lo + 32; ++i) lanes_[i].state = State::Ready;
    arrived_[w] = 0;
  }

  // No thread can run: every one that has not returned must wait at one __syncthreads().
  void release_barrier() {
    for (int w = 0; w < static_cast<int>(arrived_.size()); ++w) {
      if (arrived_[w] == 0) continue;
      int waiting = -1;
      for (int i = w * 32; i < std::min(n_, w * 32 + 32); ++i)
        if (lanes_[i].state == State::AtWarp) waiting = i;
      for (int i = w * 32; i < std::min(n_, w * 32 + 32); ++i) {
        const Lane& l = lanes_[i];
        if (l.state == State::AtWarp) continue;
        const Lane& o = lanes_[waiting];
        const std::string there = std::string(o.what) + " at " + where_str(o.where);
        if (l.state == State::Done)
          fail(i, "returned without reaching " + there + ", where other lanes of its warp wait");
        fail(i, std::string(l.what) + " at " + where_str(l.where) + ", while other lanes of its warp wait at " + there);
      }
    }
    int first = -1;
    for (int i = 0; i < n_ && first < 0; ++i)
      if (lanes_[i].state == State::AtBarrier) first = i;
    if (first < 0) throw std::logic_error("CUDA emulation: no thread can run and none waits");
    const Lane& f = lanes_[first];
    int count = 0;
    for (int i = 0; i < n_; ++i) {
      const Lane& l = lanes_[i];
      if (l.state == State::Done)
        fail(i, "returned before reaching the __syncthreads() at " + where_str(f.where) +
                    " that other threads of its block wait at (every thread of a block must reach it)");
      if (!same_wait(l, f))
        fail(i, "waits at the __syncthreads() at " + where_str(l.where) + ", thread " + dims(f.idx) +
                    " at the one at " + where_str(f.where) + ": the threads of a block must meet at one barrier");
      count += l.predicate != 0;
    }
    for (Lane& l : lanes_) {
      l.result = count;
      l.state = State::Ready;
    }
  }

  Context main_;
  KernelBody body_{};
  int n_ = 0;
  int current_ = -1;
  std::vector<Lane> lanes_;
  std::vector<int> order_, rank_, arrived_, warp_first_rank_;
  struct alignas(16) Chunk {
    unsigned char bytes[16];
  };
  std::vector<Chunk> dynamic_shared_;
  size_t dynamic_bytes_ = 0, opted_in_ = 0, static_bytes_ = 0;
  LaunchSite site_{};
  uint64_t garbage_seed_ = 0;
  std::vector<void*> block_static_;                         // __shared__ variables reached in this block
  std::vector<std::pair<void*, size_t>> launch_static_;     // and in this launch
  AccessState access_;
  StackPool stacks_;
};

thread_local Runner* t_running = nullptr;  // the runner of this OS thread while a grid runs

Runner& runner() {
  static thread_local Runner r;
  return r;
}

// Returns the kernel's opt-in (0: none).
size_t check_launch(const LaunchSite& s, const void* address, dim3 grid, dim3 block, size_t shared_bytes,
                    bool to_run) {
  const cudaDeviceProp& p = g_props;
  auto bad = [&](const std::string& why) {
    TORCH_CHECK(false, "emulated CUDA launch of ", s.kernel, " (", s.file, ":", s.line,
                ") failed: invalid configuration argument: ", why);
  };
  const uint64_t threads = uint64_t(block.x) * block.y * block.z;
  if (grid.x == 0 || grid.y == 0 || grid.z == 0) bad("gridDim " + dims(grid) + " has a zero dimension");
  if (block.x == 0 || block.y == 0 || block.z == 0) bad("blockDim " + dims(block) + " has a zero dimension");
  for (int d = 0; d < 3; ++d) {
    const unsigned g = d == 0 ? grid.x : d == 1 ? grid.y : grid.z;
    const unsigned b = d == 0 ? block.x : d == 1 ? block.y : block.z;
    if (g > static_cast<unsigned>(p.maxGridSize[d]))
      bad("gridDim " + dims(grid) + ": dimension " + "xyz"[d] + " exceeds " + std::to_string(p.maxGridSize[d]));
    if (b > static_cast<unsigned>(p.maxThreadsDim[d]))
      bad("blockDim " + dims(block) + ": dimension " + "xyz"[d] + " exceeds " + std::to_string(p.maxThreadsDim[d]));
  }
  if (threads > static_cast<uint64_t>(p.maxThreadsPerBlock))
    bad("blockDim " + dims(block) + " has " + std::to_string(threads) + " threads, more than " +
        std::to_string(p.maxThreadsPerBlock) + " per block");
  size_t opted_in = 0;
  {
    const std::lock_guard<std::mutex> lock(g_mutex);
    const auto it = address ? g_max_dynamic_shared.find(address) : g_max_dynamic_shared.end();
    if (it != g_max_dynamic_shared.end()) opted_in = it->second;
    TORCH_CHECK(address || !g_opted_in_text.contains(s.kernel), "emulated CUDA launch of ", s.kernel, " (", s.file,
                ":", s.line, "): a kernel of this name opted in to more dynamic shared memory, but the launch does "
                "not name one instantiation (the emulation keys opt-ins by instantiation, as a GPU does): name every "
                "template argument at the launch");
  }
  const size_t allowed = opted_in > 0 ? opted_in : p.sharedMemPerBlock;
  if (shared_bytes > allowed)
    bad(std::to_string(shared_bytes) + " bytes of dynamic shared memory, more than the " + std::to_string(allowed) +
        (opted_in == 0 ? " a launch may use without opting in (PYGAN_ALLOW_DYNAMIC_SHARED)"
                       : " this kernel instantiation opted in to"));
  const uint64_t total = threads * grid.x * grid.y * grid.z;
  TORCH_CHECK(!to_run || total <= kMaxEmulatedThreads, "emulated CUDA launch of ", s.kernel, " (", s.file, ":",
              s.line, "): ", total, " threads are too many to emulate (at most ", kMaxEmulatedThreads,
              "): use smaller inputs");
  return opted_in;
}

}  // namespace

// ---------------------------------------------------------------- the interface of cuda_emu.h

void set_max_dynamic_shared(const char* kernel, const void* address, int64_t bytes) {
  const std::lock_guard<std::mutex> lock(g_mutex);
  // A GPU refuses more than the opt-in maximum less the kernel's static shared memory: checked when the kernel's
  // __shared__ declarations are reached (Runner::static_shared).
  TORCH_CHECK(bytes >= 0 && static_cast<uint64_t>(bytes) <= g_props.sharedMemPerBlockOptin,
              "emulated cudaFuncSetAttribute(", kernel, ", cudaFuncAttributeMaxDynamicSharedMemorySize, ", bytes,
              ") failed: invalid argument (at most ", g_props.sharedMemPerBlockOptin, " bytes)");
  g_max_dynamic_shared[address] = static_cast<size_t>(bytes);
  g_opted_in_text[kernel] = 1;
}

void static_shared(void* address, size_t bytes, const char* name) {
  TORCH_CHECK(t_running, "__shared__ ", name, " reached outside an emulated kernel");
  t_running->static_shared(address, bytes, name);
}

void shared_out_of_bounds(int64_t index, size_t elem_size, size_t bytes, const char* type) {
  throw std::out_of_range("dynamic shared memory out of bounds: element " + std::to_string(index) + " of " +
                          std::to_string(elem_size) + " bytes (type " + type + ") lies outside the launch's " +
                          std::to_string(bytes) + " bytes of dynamic shared memory");
}

int sync_block(int predicate, const std::source_location& where) {
  TORCH_CHECK(t_running, "__syncthreads() called outside an emulated kernel");
  Lane& l = t_running->current_lane("__syncthreads()");
  l.state = State::AtBarrier;
  l.what = "__syncthreads()";
  l.where = where;
  l.op = WarpOp::Sync;
  l.size = 0;
  l.predicate = predicate;
  Runner* r = t_running;
  r->park(l);
  return l.result;
}

void warp_collective(WarpOp op, unsigned mask, const void* in, void* out, int size, int arg, int width, int predicate,
                     const char* what, const std::source_location& where) {
  TORCH_CHECK(t_running, what, " called outside an emulated kernel");
  Lane& l = t_running->current_lane(what);
  if (mask != 0xffffffffu)
    throw std::runtime_error(std::string(what) + " at " + where_str(where) + " with mask " + std::to_string(mask) +
                             ": the emulation (and pygan's kernels) use the full mask 0xffffffff only");
  if (width < 1 || width > 32 || (width & (width - 1)) != 0)
    throw std::runtime_error(std::string(what) + " at " + where_str(where) + " with width " + std::to_string(width) +
                             ": the width must be a power of 2 from 1 to 32");
  l.state = State::AtWarp;
  l.what = what;
  l.where = where;
  l.op = op;
  l.size = size;
  l.arg = arg;
  l.width = width;
  l.predicate = predicate;
  if (size > 0) std::memcpy(l.in, in, static_cast<size_t>(size));
  Runner* r = t_running;
  r->park(l);
  std::memcpy(out, l.out, static_cast<size_t>(size > 0 ? size : static_cast<int>(sizeof(unsigned))));
}

unsigned active_mask() {
  TORCH_CHECK(t_running, "__activemask() called outside an emulated kernel");
  return t_running->active_mask();
}

void* dynamic_shared_bytes(size_t* bytes) {
  TORCH_CHECK(t_running, "dynamic shared memory used outside an emulated kernel");
  return t_running->dynamic_shared(bytes);
}

cudaDeviceProp* device_properties() { return &g_props; }

namespace {
std::string g_mutant;  // the mutant switched on (tests only; set between launches)
}

bool mutant_on(const char* name) { return !g_mutant.empty() && g_mutant == name; }

void run_grid(const LaunchSite& site, const void* kernel_address, dim3 grid, dim3 block, size_t shared_bytes,
              KernelBody body) {
  TORCH_CHECK(t_running == nullptr, "emulated CUDA launch of ", site.kernel, " from inside a kernel: not emulated");
  Config config;
  {
    const std::lock_guard<std::mutex> lock(g_mutex);
    config = g_config;
  }
  const size_t opted_in = check_launch(site, kernel_address, grid, block, shared_bytes, config.execute);
  uint64_t launch;
  {
    const std::lock_guard<std::mutex> lock(g_mutex);
    g_log.push_back({site.kernel, site.file, site.line, grid, block});
    launch = g_launch_count++;
  }
  if (!config.execute) return;
  Runner& r = runner();
  r.begin_launch(site, shared_bytes, opted_in);
  const uint64_t blocks = uint64_t(grid.x) * grid.y * grid.z;
  std::vector<uint64_t> order;
  if (config.order != Order::Forward) {
    order.resize(blocks);
    std::iota(order.begin(), order.end(), uint64_t(0));
    if (config.order == Order::Reverse) std::reverse(order.begin(), order.end());
    else std::shuffle(order.begin(), order.end(), std::mt19937_64(config.seed * 1000003u + launch));
  }
  const dim3 saved_grid = gridDim, saved_block = blockDim;
  gridDim = grid;
  blockDim = block;
  t_running = &r;
  struct Restore {
    dim3 g, b;
    ~Restore() {
      t_running = nullptr;
      gridDim = g;
      blockDim = b;
      threadIdx = {0, 0, 0};
      blockIdx = {0, 0, 0};
    }
  } restore{saved_grid, saved_block};
  for (uint64_t k = 0; k < blocks; ++k) {
    const uint64_t b = order.empty() ? k : order[k];
    blockIdx = {static_cast<unsigned>(b % grid.x), static_cast<unsigned>((b / grid.x) % grid.y),
                static_cast<unsigned>(b / (uint64_t(grid.x) * grid.y))};
    r.set_block(b);
    try {
      r.run_block(body, config.seed * 7919u + launch * 104729u + b);
    } catch (const LaunchFailure& e) {
      TORCH_CHECK(false, e.what());
    } catch (const BlockError& e) {
      TORCH_CHECK(false, "emulated CUDA kernel ", site.kernel, " (launched at ", site.file, ":", site.line, "), block ",
                  dims(blockIdx), " of grid ", dims(grid), ", blockDim ", dims(block), ", ", e.what());
    }
  }
}

// ---------------------------------------------------------------- control from the tests

namespace {

void configure(int64_t sm_count, std::string_view order, int64_t seed, bool execute) {
  TORCH_CHECK(sm_count > 0, "emu_configure: sm_count must be positive, got ", sm_count);
  Order o;
  if (order == "forward") o = Order::Forward;
  else if (order == "reverse") o = Order::Reverse;
  else if (order == "shuffle") o = Order::Shuffle;
  else TORCH_CHECK(false, "emu_configure: order must be 'forward', 'reverse' or 'shuffle', got '", order, "'");
  const std::lock_guard<std::mutex> lock(g_mutex);
  g_props.multiProcessorCount = static_cast<int>(sm_count);
  // A fresh process's kernels: no shared-memory opt-ins (kernels opt in before their launches; one test's opt-in
  // must not let another's launch pass).
  g_max_dynamic_shared.clear();
  g_opted_in_text.clear();
  g_config.order = o;
  g_config.seed = static_cast<uint64_t>(seed);
  g_config.execute = execute;
}

std::vector<std::string> launches() {
  const std::lock_guard<std::mutex> lock(g_mutex);
  std::vector<std::string> out;
  out.reserve(g_log.size());
  for (const Record& r : g_log) {
    std::ostringstream s;
    s << r.file << ':' << r.line << '|' << r.kernel << '|' << r.grid.x << ',' << r.grid.y << ',' << r.grid.z << '|'
      << r.block.x << ',' << r.block.y << ',' << r.block.z;
    out.push_back(s.str());
  }
  return out;
}

void set_mutant(std::string_view name) {
  const std::lock_guard<std::mutex> lock(g_mutex);
  g_mutant = name;
}

void clear_launches() {
  const std::lock_guard<std::mutex> lock(g_mutex);
  g_log.clear();
}

}  // namespace

}  // namespace pygan::emu

TORCH_LIBRARY_FRAGMENT(pygan_emu, m) {
  // The emulated GPU: SM count (kernels size their grids by it), the order in which blocks and the threads of a
  // block are run ('forward', 'reverse', 'shuffle' with a seed); execute=False checks and records launches but
  // runs no thread (outputs are left unwritten), for grids too large to emulate. Clears the kernels' opt-ins.
  m.def("emu_configure(int sm_count, str order, int seed, bool execute) -> ()", &pygan::emu::configure);
  // Every launch since the last clear: "file:line|kernel expression|grid x,y,z|block x,y,z".
  m.def("emu_launches() -> str[]", &pygan::emu::launches);
  m.def("emu_clear_launches() -> ()", &pygan::emu::clear_launches);
  // The mutant (tests/emulation.py: MUTANTS) whose bug the mutants' copies of the kernels run; "" for none.
  m.def("emu_mutant(str name) -> ()", &pygan::emu::set_mutant);
}

// ---------------------------------------------------------------- sanitizer hooks: device faults

namespace {

// The layouts the compiler emits for the undefined-behaviour sanitizer's checks.
struct UbsanLocation {
  const char* file;
  uint32_t line, column;
};
struct UbsanType {
  uint16_t kind, info;
  char name[1];
};
struct UbsanTypeMismatch {
  UbsanLocation where;
  const UbsanType* type;
  unsigned char log_alignment, check_kind;
};
struct UbsanOutOfBounds {
  UbsanLocation where;
  const UbsanType* array_type;
  const UbsanType* index_type;
};

std::string location(const UbsanLocation& w) {
  std::string_view f = w.file ? w.file : "?";
  const size_t at = f.rfind("/csrc/");
  if (at != std::string_view::npos) f.remove_prefix(at + 6);
  return std::string(f) + ":" + std::to_string(w.line);
}

void record_fault(const std::string& what) {
  using pygan::emu::t_running;
  if (t_running != nullptr) {
    if (auto* lane = t_running->running_lane(); lane && lane->fault.empty()) lane->fault = what;
    return;
  }
  static std::once_flag once;  // host code of an emulated translation unit: say so once
  std::call_once(once, [&] { std::fprintf(stderr, "CUDA emulation, host code: %s\n", what.c_str()); });
}

void type_mismatch(const UbsanTypeMismatch* d, uintptr_t pointer) {
  static const char* const kinds[] = {"load of", "store to", "reference binding to", "member access within",
                                      "member call on", "constructor call on", "downcast of", "downcast of",
                                      "upcast of", "cast to virtual base of", "assignment to", "dynamic operation on"};
  const char* kind = d->check_kind < std::size(kinds) ? kinds[d->check_kind] : "access to";
  const std::string type = d->type ? d->type->name : "?";
  if (pointer == 0) {
    record_fault(std::string("null pointer: ") + kind + " a null " + type + " at " + location(d->where));
    return;
  }
  record_fault(std::string("misaligned address: ") + kind + " address 0x" +
               (std::ostringstream() << std::hex << pointer).str() + ", which is not aligned to the " +
               std::to_string(1u << d->log_alignment) + " bytes " + type + " needs, at " + location(d->where));
}

void out_of_bounds(const UbsanOutOfBounds* d, uintptr_t index) {
  record_fault("index " + std::to_string(static_cast<int64_t>(index)) + " out of bounds for type " +
               (d->array_type ? d->array_type->name : "?") + " at " + location(d->where));
}

}  // namespace

// The recoverable handlers only: the build does not pass -fno-sanitize-recover.
extern "C" {
[[gnu::visibility("default")]] void __ubsan_handle_type_mismatch_v1(UbsanTypeMismatch* d, uintptr_t p) {
  type_mismatch(d, p);
}
[[gnu::visibility("default")]] void __ubsan_handle_out_of_bounds(UbsanOutOfBounds* d, uintptr_t index) {
  out_of_bounds(d, index);
}
}

// ---------------------------------------------------------------- thread-sanitizer hooks: races between blocks

namespace {

using pygan::emu::t_access;

std::string block_name(uint64_t b) {
  const uint64_t gx = gridDim.x, gy = gridDim.y;
  return "block (" + std::to_string(b % gx) + ", " + std::to_string((b / gx) % gy) + ", " +
         std::to_string(b / (gx * gy)) + ")";
}

[[gnu::noinline]] void race(uintptr_t a, size_t size, bool write, int64_t other) {
  std::ostringstream s;
  s << "data race between blocks: " << (write ? "a store to " : "a load of ") << size << " bytes at 0x" << std::hex
    << a << std::dec << ", which " << block_name(static_cast<uint64_t>(other))
    << " of this launch stored to without an atomic (on a GPU the blocks run concurrently: a lost update where an "
       "atomic is needed, or a value that depends on timing)";
  record_fault(s.str());
}

inline void access(const volatile void* p, size_t size, bool write) {
  pygan::emu::AccessState* st = t_access;
  if (st == nullptr || !st->in_kernel) return;
  const auto a = reinterpret_cast<uintptr_t>(p);
  if ((a >= st->stack_lo && a < st->stack_hi) || (a >= st->dyn_lo && a < st->dyn_hi)) return;
  for (int i = 0; i < st->n_static; ++i)
    if (a >= st->static_lo[i] && a < st->static_hi[i]) return;
  const int64_t w = st->stores.writer(a);
  if (w >= 0 && static_cast<uint64_t>(w) != st->block) race(a, size, write, w);
  if (write) st->stores.store(a, st->block);
}

}  // namespace

// The hooks GCC's -fsanitize=thread instrumentation calls (plain accesses; atomics, performed here).
extern "C" {
#define PYGAN_EMU_ACCESS_HOOKS(n)                                                                                  \
  [[gnu::visibility("default")]] void __tsan_read##n(void* p) { access(p, n, false); }                             \
  [[gnu::visibility("default")]] void __tsan_write##n(void* p) { access(p, n, true); }                             \
  [[gnu::visibility("default")]] void __tsan_unaligned_read##n(void* p) { access(p, n, false); }                   \
  [[gnu::visibility("default")]] void __tsan_unaligned_write##n(void* p) { access(p, n, true); }                   \
  [[gnu::visibility("default")]] void __tsan_volatile_read##n(void* p) { access(p, n, false); }                    \
  [[gnu::visibility("default")]] void __tsan_volatile_write##n(void* p) { access(p, n, true); }
PYGAN_EMU_ACCESS_HOOKS(1)
PYGAN_EMU_ACCESS_HOOKS(2)
PYGAN_EMU_ACCESS_HOOKS(4)
PYGAN_EMU_ACCESS_HOOKS(8)
PYGAN_EMU_ACCESS_HOOKS(16)
#undef PYGAN_EMU_ACCESS_HOOKS
[[gnu::visibility("default")]] void __tsan_read_range(void* p, unsigned long n) { access(p, n, false); }
[[gnu::visibility("default")]] void __tsan_write_range(void* p, unsigned long n) { access(p, n, true); }
[[gnu::visibility("default")]] void __tsan_init() {}
[[gnu::visibility("default")]] void __tsan_func_entry(void*) {}
[[gnu::visibility("default")]] void __tsan_func_exit() {}
[[gnu::visibility("default")]] void __tsan_vptr_update(void**, void*) {}
[[gnu::visibility("default")]] void __tsan_vptr_read(void**) {}
[[gnu::visibility("default")]] void __tsan_atomic_thread_fence(int) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
[[gnu::visibility("default")]] void __tsan_atomic_signal_fence(int) { __atomic_signal_fence(__ATOMIC_SEQ_CST); }

#define PYGAN_EMU_ATOMIC_HOOKS(bits, T)                                                                            \
  [[gnu::visibility("default")]] T __tsan_atomic##bits##_load(const volatile T* a, int) {                          \
    return __atomic_load_n(a, __ATOMIC_SEQ_CST);                                                                   \
  }                                                                                                                \
  [[gnu::visibility("default")]] void __tsan_atomic##bits##_store(volatile T* a, T v, int) {                       \
    __atomic_store_n(a, v, __ATOMIC_SEQ_CST);                                                                      \
  }                                                                                                                \
  [[gnu::visibility("default")]] T __tsan_atomic##bits##_exchange(volatile T* a, T v, int) {                       \
    return __atomic_exchange_n(a, v, __ATOMIC_SEQ_CST);                                                            \
  }                                                                                                                \
  [[gnu::visibility("default")]] T __tsan_atomic##bits##_fetch_add(volatile T* a, T v, int) {                      \
    return __atomic_fetch_add(a, v, __ATOMIC_SEQ_CST);                                                             \
  }                                                                                                                \
  [[gnu::visibility("default")]] T __tsan_atomic##bits##_fetch_sub(volatile T* a, T v, int) {                      \
    return __atomic_fetch_sub(a, v, __ATOMIC_SEQ_CST);                                                             \
  }                                                                                                                \
  [[gnu::visibility("default")]] T __tsan_atomic##bits##_fetch_and(volatile T* a, T v, int) {                      \
    return __atomic_fetch_and(a, v, __ATOMIC_SEQ_CST);                                                             \
  }                                                                                                                \
  [[gnu::visibility("default")]] T __tsan_atomic##bits##_fetch_or(volatile T* a, T v, int) {                       \
    return __atomic_fetch_or(a, v, __ATOMIC_SEQ_CST);                                                              \
  }                                                                                                                \
  [[gnu::visibility("default")]] T __tsan_atomic##bits##_fetch_xor(volatile T* a, T v, int) {                      \
    return __atomic_fetch_xor(a, v, __ATOMIC_SEQ_CST);                                                             \
  }                                                                                                                \
  [[gnu::visibility("default")]] T __tsan_atomic##bits##_fetch_nand(volatile T* a, T v, int) {                     \
    return __atomic_fetch_nand(a, v, __ATOMIC_SEQ_CST);                                                            \
  }                                                                                                                \
  [[gnu::visibility("default")]] int __tsan_atomic##bits##_compare_exchange_strong(volatile T* a, T* c, T v, int,  \
                                                                                   int) {                          \
    return __atomic_compare_exchange_n(a, c, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);                        \
  }                                                                                                                \
  [[gnu::visibility("default")]] int __tsan_atomic##bits##_compare_exchange_weak(volatile T* a, T* c, T v, int,    \
                                                                                 int) {                            \
    return __atomic_compare_exchange_n(a, c, v, true, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);                         \
  }                                                                                                                \
  [[gnu::visibility("default")]] T __tsan_atomic##bits##_compare_exchange_val(volatile T* a, T c, T v, int, int) { \
    __atomic_compare_exchange_n(a, &c, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);                              \
    return c;                                                                                                      \
  }
PYGAN_EMU_ATOMIC_HOOKS(8, uint8_t)
PYGAN_EMU_ATOMIC_HOOKS(16, uint16_t)
PYGAN_EMU_ATOMIC_HOOKS(32, uint32_t)
PYGAN_EMU_ATOMIC_HOOKS(64, uint64_t)
#undef PYGAN_EMU_ATOMIC_HOOKS
}
