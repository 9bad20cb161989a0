// A small thread pool for the kernels: the calling (JS) thread and threads − 1 native workers claim
// parts of one job with a compare-exchange on a generation-tagged counter, so a worker that wakes late
// for an old job can never run a part of the next one, and a descheduled worker never holds up a job
// it has not started. Workers poll for spinUs after a job (ops of a forward pass come back to back),
// then sleep on a condition variable. run() blocks until every part is done.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace kv {

class Pool {
 public:
  using Fn = std::function<void(int part, int tid)>;
  ~Pool();
  /** (Re)starts the workers: threads including the caller, spin time in µs before sleeping. */
  void configure(int threads, int spinUs);
  int threads() const { return threads_; }
  int spinUs() const { return spinUs_; }
  /** Runs fn(part, tid) for part in [0, parts); parts = 1 or a 1-thread pool run inline. */
  void run(int parts, const Fn& fn);

 private:
  void stop();
  void worker(int tid);
  void claim(uint32_t tag, int tid);
  void wakeAll();

  static constexpr int PART_BITS = 20;
  int threads_ = 1;
  int spinUs_ = 100;
  std::vector<std::thread> workers_;
  std::mutex dispatch_;  // one job at a time (calls from several JS threads serialise)
  std::atomic<uint32_t> gen_{0};
  std::atomic<uint32_t> claim_{0};
  std::atomic<int> done_{0};
  std::atomic<bool> stop_{false};
  std::atomic<int> err_{0};
  std::mutex sleep_;  // guards sleeping workers' wait on gen_
  std::condition_variable wake_;
  std::atomic<int> sleepers_{0};
  const Fn* fn_ = nullptr;
  int parts_ = 0;
  uint32_t tag_ = 0;
};

}  // namespace kv
