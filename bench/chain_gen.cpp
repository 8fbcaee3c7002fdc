// Makes a deterministic benchmark chain on an anvil started with --no-mining: a contract of ours
// whose every call emits `logs_per_tx` ERC-20 Transfer logs, then `blocks` blocks of `txs` calls
// each (one per dev account, explicit nonces, fixed gas price, timestamps 12 s apart), so that two
// runs with the same arguments make the same chain.
//   chain_gen RPC_URL BLOCKS TXS_PER_BLOCK LOGS_PER_TX

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "ingest/http_rpc_client.hpp"

namespace {

namespace asio = boost::asio;
using chainidx::ingest::HttpRpcClient;
using chainidx::ingest::RpcRequest;
using chainidx::ingest::Task;

// Init code: copy the 65-byte runtime that follows these 12 bytes to memory and return it.
const char* kInitPrefix = "0x6041600c60003960416000f3";

std::string hex(std::uint64_t v) {
  char b[32];
  std::snprintf(b, sizeof b, "0x%llx", static_cast<unsigned long long>(v));
  return b;
}

std::string word(std::uint64_t v) {
  char b[80];
  std::snprintf(b, sizeof b, "%064llx", static_cast<unsigned long long>(v));
  return b;
}

std::string field(const std::string& json, const std::string& name) {
  auto at = json.find("\"" + name + "\":\"");
  if (at == std::string::npos) return "";
  at += name.size() + 4;
  return json.substr(at, json.find('"', at) - at);
}

Task<int> generate(HttpRpcClient& rpc, std::uint64_t blocks, unsigned txs, unsigned logs_per_tx) {
  const std::string runtime =
      // count = calldata[0:32]; for i < count: mem[0] = i; LOG3(mem[0:32], Transfer, caller, i)
      "6000356000"          // PUSH1 0 CALLDATALOAD PUSH1 0          [count, i]
      "5b"                  // loop (5): JUMPDEST
      "81811015603f57"      // DUP2 DUP2 LT ISZERO PUSH1 end JUMPI   while (i < count)
      "8060005280"          // DUP1 PUSH1 0 MSTORE DUP1              mem[0] = i; topic2 = i
      "33"                  // CALLER                                topic1 = caller
      "7fddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"  // topic0 = Transfer
      "60206000a3"          // PUSH1 32 PUSH1 0 LOG3
      "600101600556"        // PUSH1 1 ADD PUSH1 loop JUMP
      "5b00";               // end (63): JUMPDEST STOP
  static_assert(sizeof("6041600c60003960416000f3") == 25);
  const std::string init = kInitPrefix + runtime;
  if (runtime.size() != 2 * 0x41) {
    std::cerr << "chain_gen: runtime is " << runtime.size() / 2 << " bytes, the init code copies 65\n";
    co_return 1;
  }
  // anvil's unlocked dev accounts (its default mnemonic: the same on every run).
  RpcRequest list{"eth_accounts", "[]"};
  const std::string listed = co_await rpc.call(std::move(list));
  std::vector<std::string> accounts;
  for (auto at = listed.find("0x"); at != std::string::npos && accounts.size() < 10; at = listed.find("0x", at + 42))
    accounts.push_back(listed.substr(at, 42));
  if (accounts.size() < 10) {
    std::cerr << "chain_gen: the node lists fewer than 10 unlocked accounts: " << listed << "\n";
    co_return 1;
  }
  std::uint64_t ts = 1700000000;
  std::uint64_t nonce[10] = {};
  const std::string gas_price = "\"gasPrice\":\"0x3b9aca00\"";
  RpcRequest deploy{"eth_sendTransaction", "[{\"from\":\"" + accounts[0] + "\",\"nonce\":\"" + hex(nonce[0]++) +
                                               "\",\"gas\":\"0x100000\"," + gas_price + ",\"data\":\"" + init + "\"}]"};
  std::string tx = co_await rpc.call(std::move(deploy));
  RpcRequest mine{"evm_mine", "[" + std::to_string(ts += 12) + "]"};
  co_await rpc.call(std::move(mine));
  RpcRequest receipt{"eth_getTransactionReceipt", "[" + tx + "]"};
  std::string r = co_await rpc.call(std::move(receipt));
  const std::string contract = field(r, "contractAddress");
  if (contract.empty()) {
    std::cerr << "chain_gen: the contract was not deployed: " << r << "\n";
    co_return 1;
  }
  const std::string data = "0x" + word(logs_per_tx);
  const std::string gas = hex(60000 + 2500ull * logs_per_tx);
  for (std::uint64_t b = 1; b < blocks; ++b) {
    std::vector<RpcRequest> calls;
    for (unsigned t = 0; t < txs; ++t) {
      const unsigned a = t % 10;
      calls.push_back({"eth_sendTransaction", "[{\"from\":\"" + accounts[a] + "\",\"to\":\"" + contract +
                                                  "\",\"nonce\":\"" + hex(nonce[a]++) + "\",\"gas\":\"" + gas + "\"," + gas_price +
                                                  ",\"data\":\"" + data + "\"}]"});
    }
    auto replies = co_await rpc.batch(std::move(calls));
    for (const auto& rep : replies)
      if (rep.error_code) {
        std::cerr << "chain_gen: eth_sendTransaction: " << rep.error_message << "\n";
        co_return 1;
      }
    RpcRequest next{"evm_mine", "[" + std::to_string(ts += 12) + "]"};
    co_await rpc.call(std::move(next));
    if (b % 2000 == 0) std::cerr << "chain_gen: " << b << " blocks\n";
  }
  std::cout << contract << "\n";
  co_return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5) {
    std::cerr << "usage: chain_gen RPC_URL BLOCKS TXS_PER_BLOCK LOGS_PER_TX\n";
    return 2;
  }
  asio::io_context io;
  HttpRpcClient rpc(io.get_executor(), argv[1], {1e9, 1e9});
  int code = 1;
  asio::co_spawn(io, generate(rpc, std::stoull(argv[2]), static_cast<unsigned>(std::stoul(argv[3])),
                              static_cast<unsigned>(std::stoul(argv[4]))),
                 [&](std::exception_ptr e, int c) {
                   code = c;
                   if (e) try {
                       std::rethrow_exception(e);
                     } catch (const std::exception& x) {
                       std::cerr << "chain_gen: " << x.what() << "\n";
                       code = 1;
                     }
                 });
  io.run();
  return code;
}
