#pragma once
// A TCP relay in front of a real peer (anvil's WebSocket) that fails on demand: passes bytes
// both ways; or is down (open connections cut, new ones closed at once); or stalls (moves no
// byte either way until it passes again, then delivers what waited); or blackholes (keeps every
// connection open and throws away every byte both ways: a half-open socket whose pings nobody
// answers). For what a real node does not do on request.

#include <memory>
#include <string>

namespace chainidx::testing {

class TcpRelay {
 public:
  enum class Mode { kPass, kDown, kStall, kBlackhole };

  explicit TcpRelay(int upstream_port);
  ~TcpRelay();

  int port() const;
  std::string ws_url() const { return "ws://127.0.0.1:" + std::to_string(port()); }
  /// Takes effect at once on open connections too. Thread-safe.
  void set_mode(Mode mode);
  /// Connections accepted so far.
  int connections() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace chainidx::testing
