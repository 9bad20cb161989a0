// Thread pool (pool.h).
#include "pool.h"
#include <chrono>
#include <stdexcept>
#include <string>
#include <immintrin.h>

namespace kv {

namespace {
using Clock = std::chrono::steady_clock;
}

Pool::~Pool() { stop(); }

void Pool::stop() {
  if (workers_.empty()) return;
  stop_.store(true);
  gen_.fetch_add(1);
  wakeAll();
  for (auto& t : workers_) t.join();
  workers_.clear();
  stop_.store(false);
}

void Pool::wakeAll() {
  if (sleepers_.load() == 0) return;
  std::lock_guard<std::mutex> lk(sleep_);
  wake_.notify_all();
}

void Pool::configure(int threads, int spinUs) {
  std::lock_guard<std::mutex> lock(dispatch_);
  stop();
  threads_ = threads < 1 ? 1 : threads;
  spinUs_ = spinUs < 0 ? 0 : spinUs;
  for (int t = 1; t < threads_; t++) workers_.emplace_back([this, t] { worker(t); });
}

void Pool::claim(uint32_t tag, int tid) {
  const uint32_t mask = (1u << PART_BITS) - 1;
  for (;;) {
    uint32_t w = claim_.load();
    if ((w >> PART_BITS) != tag) return;
    const int part = static_cast<int>(w & mask);
    if (part >= parts_) return;
    if (!claim_.compare_exchange_weak(w, w + 1)) continue;
    try {
      (*fn_)(part, tid);
    } catch (...) {
      int zero = 0;
      err_.compare_exchange_strong(zero, 1 + tid);
    }
    done_.fetch_add(1);
  }
}

void Pool::worker(int tid) {
  uint32_t seen = gen_.load();
  for (;;) {
    const auto until = Clock::now() + std::chrono::microseconds(spinUs_);
    // (stop_ too: a worker that starts after stop() began has already seen its gen_ change)
    for (int i = 1; gen_.load(std::memory_order_acquire) == seen && !stop_.load(); i++) {
      _mm_pause();
      if ((i & 63) == 0 && Clock::now() > until) {
        // sleepers_ is raised before gen_ is checked under the lock, and the dispatcher stores gen_
        // before it reads sleepers_: one of the two sees the other, so no wake-up is lost
        std::unique_lock<std::mutex> lk(sleep_);
        sleepers_.fetch_add(1);
        wake_.wait(lk, [&] { return gen_.load() != seen || stop_.load(); });
        sleepers_.fetch_sub(1);
      }
    }
    seen = gen_.load();
    if (stop_.load()) return;
    claim(seen & ((1u << (32 - PART_BITS)) - 1), tid);
  }
}

void Pool::run(int parts, const Fn& fn) {
  std::lock_guard<std::mutex> lock(dispatch_);
  if (parts <= 0) return;
  if (parts == 1 || workers_.empty()) {
    for (int p = 0; p < parts; p++) fn(p, 0);
    return;
  }
  const uint32_t tagMask = (1u << (32 - PART_BITS)) - 1;
  tag_ = (tag_ + 1) & tagMask;
  // retire the previous job's claim word before the job fields change (see claim())
  claim_.store((tag_ << PART_BITS) | ((1u << PART_BITS) - 1));
  fn_ = &fn;
  parts_ = parts;
  done_.store(0);
  err_.store(0);
  claim_.store(tag_ << PART_BITS);
  const uint32_t g = (gen_.load() & ~tagMask) + (1u << (32 - PART_BITS)) ;
  gen_.store(g | tag_);
  wakeAll();
  claim(tag_, 0);
  for (int i = 1;; i++) {
    const int d = done_.load();
    if (d >= parts) break;
    if (i < 4096) _mm_pause();
    else std::this_thread::yield();  // a descheduled worker holds the last part
  }
  const int e = err_.exchange(0);
  if (e) throw std::runtime_error("kernel part failed on pool thread " + std::to_string(e - 1));
}

}  // namespace kv
