// The endpoint pool in-process against real anvil behind faulty peers: how fast a request fails
// over when the first endpoint fails for a clear cause, and the circuit breaker's open / probe /
// close cycle on the wire.

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include <atomic>
#include <exception>
#include <iostream>

#include "fault_proxy.hpp"
#include "harness.hpp"
#include "ingest/endpoint_pool.hpp"
#include "tcp_relay.hpp"

namespace chainidx::testing {
namespace {

// Runs one coroutine on a fresh io_context to its end; its result, or its failure rethrown.
template <class T>
T run_one(boost::asio::io_context& io, ingest::Task<T> task) {
  std::optional<T> out;
  std::exception_ptr failure;
  boost::asio::co_spawn(io, std::move(task), [&](std::exception_ptr e, T r) {
    failure = e;
    if (!e) out = std::move(r);
  });
  io.restart();
  io.run();
  if (failure) std::rethrow_exception(failure);
  return std::move(*out);
}

ingest::PoolSettings pool_of(const std::string& first_url, const std::string& second_url) {
  ingest::PoolSettings s;
  s.chain_id = 31337;
  s.endpoints.push_back({first_url, "first", 1e6, 1e6, 2});
  s.endpoints.push_back({second_url, "second", 1e6, 1e6, 2});
  // A long back-off, so that a failover that waited for it would show.
  s.backoff = {std::chrono::milliseconds(5000), std::chrono::milliseconds(5000)};
  s.http_timeout = std::chrono::milliseconds(5000);
  return s;
}

std::optional<schema::BlockRef> head_through(ingest::EndpointPool& pool, boost::asio::io_context& io) {
  auto op = [](ingest::BlockFetcher& f) { return f.latest_head(); };
  return run_one(io, pool.run<schema::BlockRef>("latest_head", op));
}

// One failure with a clear cause on the first endpoint; the answer comes from the second.
void expect_failover_within_500ms(const Anvil& anvil, const std::string& first_url, const std::function<std::uint64_t()>& first_requests) {
  boost::asio::io_context io;
  ingest::EndpointPool pool(io.get_executor(), pool_of(first_url, anvil.http_url()));
  const auto began = std::chrono::steady_clock::now();
  auto head = head_through(pool, io);
  const auto took = std::chrono::steady_clock::now() - began;
  ASSERT_TRUE(head);
  EXPECT_EQ(head->number, anvil.block_number());
  if (first_requests) {
    EXPECT_GE(first_requests(), 1u) << "the first endpoint was never asked";
  }
  const auto ms = std::chrono::duration_cast<std::chrono::microseconds>(took).count() / 1000.0;
  std::cout << "failover: answered by the second endpoint " << ms << " ms after the request began" << std::endl;
  EXPECT_LT(took, std::chrono::milliseconds(500)) << ms << " ms";
  EXPECT_EQ(pool.at(0).health.consecutive_failures(), 1u);
}

TEST(EndpointPool, FailsOverWithin500msOfARefusedConnection) {
  TempDir dir;
  Anvil anvil(dir.path());
  anvil.mine(3);
  // A port nobody listens on: the connection is refused.
  expect_failover_within_500ms(anvil, "http://127.0.0.1:" + std::to_string(free_port()), nullptr);
}

TEST(EndpointPool, FailsOverWithin500msOfAConnectionClosedBeforeAnAnswer) {
  TempDir dir;
  Anvil anvil(dir.path());
  anvil.mine(3);
  TcpRelay relay(anvil.port());
  relay.set_mode(TcpRelay::Mode::kDown);  // accepts, then closes at once
  expect_failover_within_500ms(anvil, "http://127.0.0.1:" + std::to_string(relay.port()),
                               [&] { return static_cast<std::uint64_t>(relay.connections()); });
}

TEST(EndpointPool, FailsOverWithin500msOfA5xx) {
  TempDir dir;
  Anvil anvil(dir.path());
  anvil.mine(3);
  FaultProxy proxy(anvil.port(), [](const std::string&, std::uint64_t) { return FaultProxy::Canned{503, "unavailable"}; });
  expect_failover_within_500ms(anvil, proxy.url(), [&] { return proxy.requests(); });
}

TEST(EndpointPool, FailsOverWithin500msOfA429WithoutRetryAfter) {
  TempDir dir;
  Anvil anvil(dir.path());
  anvil.mine(3);
  FaultProxy proxy(anvil.port(), [](const std::string&, std::uint64_t) { return FaultProxy::Canned{429, "slow down"}; });
  expect_failover_within_500ms(anvil, proxy.url(), [&] { return proxy.requests(); });
}

// Three failures in a row open the first endpoint's circuit: it gets nothing during the
// cool-down, then exactly one probe, whose answer closes the circuit.
TEST(EndpointPool, AnOpenCircuitGetsNoRequestUntilOneProbeAfterTheCooldownClosesIt) {
  TempDir dir;
  Anvil anvil(dir.path());
  anvil.mine(3);
  std::atomic<bool> failing{true};
  FaultProxy proxy(anvil.port(), [&](const std::string&, std::uint64_t) -> std::optional<FaultProxy::Canned> {
    if (failing) return FaultProxy::Canned{502, "bad gateway"};
    return std::nullopt;
  });
  ingest::PoolSettings settings = pool_of(proxy.url(), anvil.http_url());
  settings.circuit.failures_to_open = 3;
  settings.circuit.cooldown = std::chrono::milliseconds(1000);
  settings.circuit.jitter = 0.2;
  boost::asio::io_context io;
  ingest::EndpointPool pool(io.get_executor(), settings);
  // Failures move traffic away before the circuit opens (the unit tests show that): here the
  // three that open it are reported as the range engine reports its batches' failures.
  for (int i = 0; i < 3; ++i) pool.record_failure(0, ingest::RpcError(ingest::RpcError::Kind::kHttpStatus, "HTTP 502", 502));
  EXPECT_EQ(pool.state(0), ingest::EndpointState::kOpen);
  const auto opened = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() - opened < std::chrono::milliseconds(700)) ASSERT_TRUE(head_through(pool, io));
  EXPECT_EQ(proxy.requests(), 0u) << "a request reached an endpoint whose circuit was open";

  failing = false;
  std::this_thread::sleep_for(std::chrono::milliseconds(600));  // past 1 s + 20 % jitter
  ASSERT_TRUE(head_through(pool, io));
  EXPECT_EQ(proxy.requests(), 2u) << "one probe after the cool-down (eth_chainId, then the head)";
  EXPECT_EQ(pool.state(0), ingest::EndpointState::kHealthy) << "the probe's answer closes the circuit";
}

// A failed probe opens the circuit for another cool-down at once (not after three more).
TEST(EndpointPool, AFailedProbeReopensTheCircuitAtOnce) {
  TempDir dir;
  Anvil anvil(dir.path());
  FaultProxy proxy(anvil.port(), [](const std::string&, std::uint64_t) { return FaultProxy::Canned{503, "down"}; });
  ingest::PoolSettings settings = pool_of(proxy.url(), anvil.http_url());
  settings.circuit.failures_to_open = 3;
  settings.circuit.cooldown = std::chrono::milliseconds(300);
  settings.circuit.jitter = 0;
  boost::asio::io_context io;
  ingest::EndpointPool pool(io.get_executor(), settings);
  for (int i = 0; i < 3; ++i) pool.record_failure(0, ingest::RpcError(ingest::RpcError::Kind::kHttpStatus, "HTTP 503", 503));
  std::this_thread::sleep_for(std::chrono::milliseconds(350));
  ASSERT_TRUE(head_through(pool, io));  // the probe fails; the second endpoint answers
  EXPECT_EQ(proxy.requests(), 1u);
  EXPECT_EQ(pool.state(0), ingest::EndpointState::kOpen);
  ASSERT_TRUE(head_through(pool, io));
  EXPECT_EQ(proxy.requests(), 1u) << "the failed probe must reopen the circuit";
  EXPECT_EQ(pool.at(0).health.times_opened(), 2u);
}

// With one endpoint there is nowhere else to go: its circuit stays closed, and the back-off
// paces its retries as before.
TEST(EndpointPool, TheOnlyEndpointNeverHasItsCircuitOpened) {
  TempDir dir;
  Anvil anvil(dir.path());
  std::atomic<int> fail_first{6};
  FaultProxy proxy(anvil.port(), [&](const std::string&, std::uint64_t) -> std::optional<FaultProxy::Canned> {
    if (fail_first-- > 0) return FaultProxy::Canned{503, "down"};
    return std::nullopt;
  });
  ingest::PoolSettings settings;
  settings.chain_id = 31337;
  settings.endpoints.push_back({proxy.url(), "only", 1e6, 1e6, 2});
  settings.backoff = {std::chrono::milliseconds(10), std::chrono::milliseconds(20)};
  settings.circuit.failures_to_open = 3;
  settings.circuit.cooldown = std::chrono::seconds(600);
  boost::asio::io_context io;
  ingest::EndpointPool pool(io.get_executor(), settings);
  const auto began = std::chrono::steady_clock::now();
  ASSERT_TRUE(head_through(pool, io));
  EXPECT_LT(std::chrono::steady_clock::now() - began, std::chrono::seconds(30)) << "waited out a cool-down";
  EXPECT_EQ(pool.at(0).health.times_opened(), 0u);
  EXPECT_EQ(proxy.requests(), 8u) << "six failed eth_chainId, the seventh answered, then the head";
}

}  // namespace
}  // namespace chainidx::testing
