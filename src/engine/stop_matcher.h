// Stop strings in streamed text: holds back the tail that could still become a stop string,
// and reports the first stop string that appears (which is cut, with everything after it).
#pragma once
#include <algorithm>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace dsv3 {

class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {
    std::erase_if(stops_, [](const std::string& s) { return s.empty(); });
  }
  // Appends text; returns the part that is now final. Sets stopped() when a stop string appears.
  std::string push(std::string_view s) {
    pending_ += s;
    size_t hit = std::string::npos;
    for (const auto& st : stops_) hit = std::min(hit, pending_.find(st));
    if (hit != std::string::npos) {
      stopped_ = true;
      std::string out = pending_.substr(0, hit);
      pending_.clear();
      return out;
    }
    size_t hold = 0;  // longest suffix of pending_ that is a proper prefix of a stop string
    for (const auto& st : stops_)
      for (size_t k = std::min(st.size() - 1, pending_.size()); k > hold; --k)
        if (pending_.compare(pending_.size() - k, k, st, 0, k) == 0) {
          hold = k;
          break;
        }
    std::string out = pending_.substr(0, pending_.size() - hold);
    pending_.erase(0, pending_.size() - hold);
    return out;
  }
  // The held-back text, once no more text will come.
  std::string flush() { return std::exchange(pending_, {}); }
  bool stopped() const { return stopped_; }

 private:
  std::vector<std::string> stops_;
  std::string pending_;
  bool stopped_ = false;
};

}  // namespace dsv3
