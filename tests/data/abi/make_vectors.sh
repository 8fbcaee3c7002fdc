#!/usr/bin/env bash
# Makes cast_vectors.jsonl: ABI encodings made by foundry's `cast` (an implementation that is not
# ours), with cast's own decoding of each, for tests/unit/abi_test.cpp. Run it again after adding
# a case; the file is committed, so the tests need no cast.
#   CAST=.deps/bin/cast bash tests/data/abi/make_vectors.sh
# cast comes from npm; deploy/install-deps.sh installs the pinned release as .deps/bin/cast.
set -euo pipefail
cast="${CAST:-cast}"
out="$(dirname "${BASH_SOURCE[0]}")/cast_vectors.jsonl"
: >"$out"
# One case: the event's parameter list (all non-indexed: cast decode-event reads data only) and
# the values, as cast abi-encode takes them.
case_() {
  local params="$1"; shift
  local types
  types="$(sed -E 's/ [A-Za-z_][A-Za-z0-9_]*(,|\)|$)/\1/g' <<<"$params")"
  local data
  data="$("$cast" abi-encode "f($types)" "$@")"
  local decoded
  decoded="$("$cast" decode-event --json --sig "E($params)" "$data" | sed 's/^ *//' | tr -d '\n')"
  printf '{"event":"E(%s)","data":"%s","cast":%s}\n' "$params" "$data" "$decoded" >>"$out"
}
case_ "uint256 value" 1000000000000000000
case_ "uint256 a,int256 b,address c,bytes3 d,bool e,uint64 f" \
  -- 115792089237316195423570985008687907853269984665640564039457584007913129639935 \
  -57896044618658097711785492504343953926634992332820282019728792003956564819968 \
  0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48 0xabcdef true 18446744073709551615
case_ "int8 a,int16 b,uint8 c,int40 d,uint48 e" -- -128 -1 255 -549755813888 281474976710655
case_ "string s,bytes b" "héllo \"wörld\" \\ ☃" 0x00ff10
case_ "string s" ""
case_ "bytes b" 0x
case_ "uint16[] xs,string[] ys" "[1,2,65535]" "[a,bc,]"
case_ "uint8[3] xs,bool[2][] ys" "[1,2,3]" "[[true,false],[false,true]]"
case_ "(uint8,bytes)[] pairs,int32 after" -- "[(1,0x1234),(2,0x)]" -7
case_ "(address,(uint256,string)[],bytes32) nested" \
  "(0x000000000000000000000000000000000000dEaD,[(1,one),(2,two)],0x0101010101010101010101010101010101010101010101010101010101010101)"
case_ "(uint256,bool)[2] fixed,string tail" "[(5,true),(6,false)]" "end"
case_ "bytes32 h,bytes1 one,int256 minus" -- 0x00000000000000000000000000000000000000000000000000000000000000ff 0x7f -1
echo "wrote $(wc -l <"$out") vectors to $out"
