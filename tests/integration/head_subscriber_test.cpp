// HeadSubscriber against in-process WebSocket endpoints: wss with certificate and host-name
// verification, a stalled node, garbage frames, failover.

#include "ingest/head_subscriber.hpp"
#include "ingest/tls_context.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <sstream>


#include "fake_ws_node.hpp"
#include "harness.hpp"

namespace chainidx::testing {
namespace {

using ingest::HeadSubscriber;

struct Followed {
  std::vector<schema::BlockRef> heads;
  std::uint64_t reconnects = 0;
  std::uint64_t malformed = 0;
  std::uint64_t stalls = 0;  // connections dropped for bringing no heads (Options::on_stall)
};

// Runs a subscriber for at most `duration`, or until it has `enough` heads.
HeadSubscriber::Options quick(std::chrono::milliseconds stall_timeout = std::chrono::milliseconds(5000)) {
  HeadSubscriber::Options options;
  options.stall_timeout = stall_timeout;
  options.handshake_timeout = std::chrono::milliseconds(2000);
  options.backoff = {std::chrono::milliseconds(20), std::chrono::milliseconds(100)};
  return options;
}

Followed follow_with(std::vector<std::string> urls, std::chrono::milliseconds duration, std::size_t enough, HeadSubscriber::Options options) {
  boost::asio::io_context io;
  Followed out;
  HeadSubscriber* self = nullptr;
  options.on_stall = [&out] { ++out.stalls; };
  std::vector<HeadSubscriber::Endpoint> endpoints;
  for (auto& u : urls) endpoints.push_back({u, ""});
  HeadSubscriber sub(io.get_executor(), std::move(endpoints), options, [&](const schema::BlockRef& head) {
    out.heads.push_back(head);
    if (out.heads.size() >= enough) self->stop();
  });
  self = &sub;
  boost::asio::steady_timer deadline(io, duration);
  deadline.async_wait([&](boost::system::error_code ec) {
    if (!ec) sub.stop();
  });
  bool finished = false;
  boost::asio::co_spawn(io, sub.run(), [&](std::exception_ptr) {
    finished = true;
    deadline.cancel();
  });
  io.run();
  EXPECT_TRUE(finished) << "run() did not return after stop()";
  out.reconnects = sub.reconnects();
  out.malformed = sub.malformed_messages();
  return out;
}

Followed follow(std::vector<std::string> urls, std::chrono::milliseconds duration, std::size_t enough,
                std::chrono::milliseconds stall_timeout = std::chrono::milliseconds(5000)) {
  return follow_with(std::move(urls), duration, enough, quick(stall_timeout));
}

TEST(HeadSubscriber, ReceivesHeadsOverWssWithATrustedCertificate) {
  TempDir dir;
  auto cert = make_self_signed_cert(dir.path(), "localhost");
  ingest::trust_ca_file(cert.cert_file);
  FakeWsNode node(FakeWsNode::Behaviour::kSendHeads, cert);
  auto got = follow({"wss://localhost:" + std::to_string(node.port())}, std::chrono::seconds(10), 3);
  ASSERT_EQ(got.heads.size(), 3u);
  EXPECT_EQ(got.heads[0].number, 1u);
  EXPECT_EQ(got.heads[2].number, 3u);
  EXPECT_EQ(got.heads[2].parent_hash, got.heads[1].hash);
  EXPECT_EQ(got.reconnects, 0u);
}

TEST(HeadSubscriber, RefusesAnUntrustedCertificate) {
  TempDir dir;
  auto cert = make_self_signed_cert(dir.path(), "localhost");  // trusted by nobody
  FakeWsNode node(FakeWsNode::Behaviour::kSendHeads, cert);
  auto got = follow({"wss://localhost:" + std::to_string(node.port())}, std::chrono::milliseconds(1500), 1);
  EXPECT_TRUE(got.heads.empty()) << "a head came through an unverified TLS connection";
  EXPECT_GE(got.reconnects, 1u);
  EXPECT_GE(node.connections(), 1);
}

TEST(HeadSubscriber, RefusesACertificateForAnotherHost) {
  TempDir dir;
  auto cert = make_self_signed_cert(dir.path(), "localhost");
  ingest::trust_ca_file(cert.cert_file);  // trusted: only the name can be wrong
  FakeWsNode node(FakeWsNode::Behaviour::kSendHeads, cert);
  // Same server, reached by an address the certificate does not name.
  auto got = follow({"wss://127.0.0.1:" + std::to_string(node.port())}, std::chrono::milliseconds(1500), 1);
  EXPECT_TRUE(got.heads.empty()) << "host name verification let a mismatched certificate through";
  EXPECT_GE(got.reconnects, 1u);
}

TEST(HeadSubscriber, LeavesANodeThatStopsSendingHeads) {
  FakeWsNode node(FakeWsNode::Behaviour::kSilent);
  auto got = follow({"ws://127.0.0.1:" + std::to_string(node.port())}, std::chrono::milliseconds(2000), 1,
                    std::chrono::milliseconds(300));
  EXPECT_TRUE(got.heads.empty());
  EXPECT_GE(got.reconnects, 2u) << "the stall timer did not drop the silent connection";
  EXPECT_GE(got.stalls, 2u) << "the stalls were not reported";
  EXPECT_GE(node.connections(), 2);
}

TEST(HeadSubscriber, CountsGarbageFramesAndLeavesTheEndpoint) {
  FakeWsNode node(FakeWsNode::Behaviour::kGarbage);
  auto got = follow({"ws://127.0.0.1:" + std::to_string(node.port())}, std::chrono::milliseconds(1500), 1);
  EXPECT_TRUE(got.heads.empty());
  EXPECT_GE(got.malformed, 1u);
  EXPECT_GE(got.reconnects, 1u);
  EXPECT_EQ(got.stalls, 0u) << "garbage is not a stall";
}

TEST(HeadSubscriber, FailsOverFromADeadEndpointToTheNext) {
  FakeWsNode node(FakeWsNode::Behaviour::kSendHeads);
  auto got = follow({"ws://127.0.0.1:" + std::to_string(free_port()), "ws://127.0.0.1:" + std::to_string(node.port())},
                    std::chrono::seconds(10), 3);
  EXPECT_EQ(got.heads.size(), 3u);
  EXPECT_GE(got.reconnects, 1u);
}

// A half-open socket (nothing answers, not even pings) is dropped after two ping intervals,
// long before the head-stall timer would notice.
TEST(HeadSubscriber, PingsFindADeadSocketLongBeforeTheStallTimer) {
  FakeWsNode node(FakeWsNode::Behaviour::kSilent);
  auto options = quick(std::chrono::milliseconds(60000));
  options.ping_interval = std::chrono::milliseconds(200);
  auto got = follow_with({"ws://127.0.0.1:" + std::to_string(node.port())}, std::chrono::milliseconds(2500), 1, options);
  EXPECT_TRUE(got.heads.empty());
  EXPECT_GE(got.reconnects, 2u) << "an unanswered ping did not end the connection";
}

// A quiet chain is not a dead socket: a node that answers pings keeps its connection however
// long no head comes (until the head-stall timeout, here far away).
TEST(HeadSubscriber, KeepsAnIdleSocketThatAnswersPings) {
  FakeWsNode node(FakeWsNode::Behaviour::kIdle);
  auto options = quick(std::chrono::milliseconds(60000));
  options.ping_interval = std::chrono::milliseconds(200);
  auto got = follow_with({"ws://127.0.0.1:" + std::to_string(node.port())}, std::chrono::milliseconds(2500), 1, options);
  EXPECT_EQ(got.reconnects, 0u) << "a live, pinged socket was dropped";
  EXPECT_EQ(node.connections(), 1);
}

// The backoff resets once a subscription is confirmed, not only on a head: an endpoint that
// subscribes fine and then drops us is retried at the first backoff step every time. Without
// the reset the waits would double (25-50, 50-100, ... 800-1600 ms) to at most 8 connections in
// 3 s; with it, each cycle costs about 150 ms.
TEST(HeadSubscriber, BackoffResetsOnceASubscriptionIsConfirmed) {
  FakeWsNode node(FakeWsNode::Behaviour::kSubscribeThenClose);
  auto options = quick();
  options.backoff = {std::chrono::milliseconds(50), std::chrono::milliseconds(5000)};
  auto got = follow_with({"ws://127.0.0.1:" + std::to_string(node.port())}, std::chrono::milliseconds(3000), 1, options);
  EXPECT_TRUE(got.heads.empty());
  EXPECT_GE(node.connections(), 10) << "the backoff kept growing across confirmed subscriptions";
}

// A handshake that never completes is reported as such, with the key that bounds it, not as a
// head stall.
TEST(HeadSubscriber, NamesAHandshakeTimeoutForWhatItIs) {
  FakeWsNode node(FakeWsNode::Behaviour::kNoHandshake);
  std::ostringstream captured;
  auto previous = spdlog::default_logger();
  spdlog::set_default_logger(std::make_shared<spdlog::logger>("capture", std::make_shared<spdlog::sinks::ostream_sink_mt>(captured)));
  auto options = quick();
  options.handshake_timeout = std::chrono::milliseconds(300);
  auto got = follow_with({"ws://127.0.0.1:" + std::to_string(node.port())}, std::chrono::milliseconds(1500), 1, options);
  spdlog::set_default_logger(previous);
  EXPECT_GE(got.reconnects, 1u);
  std::string log = captured.str();
  EXPECT_NE(log.find("websocket handshake did not complete within 300 ms (chain.ws_handshake_timeout_seconds)"), std::string::npos)
      << log;
  EXPECT_EQ(log.find("no new head"), std::string::npos) << log;
}

}  // namespace
}  // namespace chainidx::testing
