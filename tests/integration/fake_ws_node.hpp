#pragma once
// A WebSocket JSON-RPC endpoint (ws:// or wss://) that accepts eth_subscribe("newHeads") and then
// does what a test asks: sends heads, sends nothing (a stalled node), or sends garbage.

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace chainidx::testing {

class FakeWsNode {
 public:
  /// kSilent: subscribes, then sends nothing and reads nothing (pings go unanswered, as on a
  /// half-open socket). kIdle: subscribes, then sends no head but keeps reading, so pings are
  /// answered (a live node on a chain whose blocks come minutes apart). kSubscribeThenClose:
  /// confirms the subscription, then closes after 100 ms without a head. kNoHandshake: accepts
  /// the TCP connection and never answers the WebSocket upgrade.
  enum class Behaviour { kSendHeads, kSilent, kGarbage, kIdle, kSubscribeThenClose, kNoHandshake };
  struct Tls {
    std::string cert_file;
    std::string key_file;
  };
  /// Without `tls` it serves ws://; with it, wss:// using that certificate.
  FakeWsNode(Behaviour behaviour, std::optional<Tls> tls = std::nullopt);
  ~FakeWsNode();

  int port() const;
  /// Connections accepted so far (a reconnecting client makes several).
  int connections() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// A self-signed certificate for `host` (as both CN and subjectAltName), written as PEM files
/// into `dir` with the openssl command line tool.
FakeWsNode::Tls make_self_signed_cert(const std::string& dir, const std::string& host);

}  // namespace chainidx::testing
