#pragma once
// A minimal test harness: CHECK records failures, main returns their count (ctest reads the exit code).
#include <c10/util/Exception.h>

#include <iostream>
#include <string>

inline int& failures() {
  static int n = 0;
  return n;
}

#define CHECK(cond)                                                                   \
  do {                                                                                \
    if (!(cond)) {                                                                    \
      std::cerr << __FILE__ << ":" << __LINE__ << ": CHECK failed: " #cond << "\n";   \
      ++failures();                                                                   \
    }                                                                                 \
  } while (0)

// Runs f and checks that it throws a c10::Error whose message contains `text`.
template <typename F>
void check_throws(F&& f, const std::string& text) {
  try {
    f();
  } catch (const c10::Error& e) {
    if (std::string(e.what()).find(text) != std::string::npos) return;
    std::cerr << "wrong error, expected '" << text << "': " << e.what_without_backtrace() << "\n";
    ++failures();
    return;
  }
  std::cerr << "no error, expected '" << text << "'\n";
  ++failures();
}
