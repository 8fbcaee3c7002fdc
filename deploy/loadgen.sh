#!/usr/bin/env bash
# A small load generator for a local anvil: deploys a contract whose every call emits an ERC-20
# Transfer event, then calls it from anvil's unlocked dev accounts a few times a second.
#   deploy/loadgen.sh http://127.0.0.1:8545 [calls-per-second]
set -euo pipefail
rpc_url="${1:?usage: loadgen.sh RPC_URL [calls-per-second]}"
rate="${2:-3}"

rpc() {
  curl -sf -H 'content-type: application/json' \
    -d "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"$1\",\"params\":$2}" "$rpc_url"
}
result() { sed -n 's/.*"result":"\{0,1\}\([^"]*\)"\{0,1\}.*/\1/p'; }

accounts=(
  0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266 0x70997970c51812dc3a010c7d01b50e0d17dc79c8
  0x3c44cdddb6a900fa2b585dd299e03d12fa4293bc 0x90f79bf6eb2c4f870365e785982e1f101e93b906
  0x15d34aaf54267db7d7c367839aaf71a00a2c6a65 0x9965507d1a55bcc2695c58ba16fb37d819b0a4dc
)
# Runtime: mem[0] = calldata[0:32]; LOG3(mem[0:32], Transfer, caller, calldata[32:64]).
init_code=0x6031600c60003960316000f3600035600052602035337fddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef60206000a300

tx=$(rpc eth_sendTransaction "[{\"from\":\"${accounts[0]}\",\"data\":\"$init_code\"}]" | result)
contract=""
for _ in $(seq 50); do
  contract=$(rpc eth_getTransactionReceipt "[\"$tx\"]" | sed -n 's/.*"contractAddress":"\(0x[0-9a-fA-F]*\)".*/\1/p')
  [ -n "$contract" ] && break
  sleep 0.2
done
[ -n "$contract" ] || { echo "loadgen: contract deployment did not get mined" >&2; exit 1; }
echo "loadgen: Transfer emitter at $contract, ~$rate calls/s"

i=0
while true; do
  from=${accounts[$((RANDOM % ${#accounts[@]}))]}
  amount=$(printf '%064x' $((RANDOM * 1000 + i)))
  to=$(printf '%064x' $((0xbeef0000 + RANDOM % 16)))
  rpc eth_sendTransaction "[{\"from\":\"$from\",\"to\":\"$contract\",\"data\":\"0x$amount$to\",\"gas\":\"0x30000\"}]" >/dev/null || true
  i=$((i + 1))
  sleep "$(awk "BEGIN{print 1/$rate}")"
done
