#!/usr/bin/env bash
# Make the homes of the compose layout (compose.yaml) the way separate hosts would
# (docs/multi-host.md §3-§5): 4 operators and 2 coprocessors each `agora init` their own home,
# only their addresses are collected, one `agora genesis new` writes the genesis (funding the
# coprocessors and a client key), and every home gets that same file. It also writes
# compose.env: the bootstrap multiaddrs, an API token and the uid the containers run as.
#
#   testnet/container/prepare.sh [OUT]          (default testnet/data/compose; must not exist)
#   docker compose --env-file OUT/compose.env -f testnet/container/compose.yaml up -d
#
# AGORA names the binary to use (default: agora on PATH).
set -euo pipefail
AGORA=${AGORA:-agora}
OUT=${1:-testnet/data/compose}
if [ -e "$OUT" ]; then
  echo "error: $OUT exists; remove it or name another directory" >&2
  exit 1
fi
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

field() { # field HOME NAME: one string field of `agora key show --json`
  "$AGORA" key show --home "$1" --json | sed -n "s/.*\"$2\":\"\([^\"]*\)\".*/\1/p"
}

genesis_args=(genesis new --chain-name "agora-compose-$(date +%s)" --out "$OUT/genesis.json")
for i in 0 1 2 3; do
  "$AGORA" init --home "$OUT/op$i" --role operator >/dev/null
  genesis_args+=(--operator "$(field "$OUT/op$i" address)=1000000")
done
for i in 0 1; do
  "$AGORA" init --home "$OUT/cp$i" --role coprocessor >/dev/null
  genesis_args+=(--account "$(field "$OUT/cp$i" address)=1000000000")
done
"$AGORA" init --home "$OUT/client" --role client >/dev/null
genesis_args+=(--account "$(field "$OUT/client" address)=1000000000")

"$AGORA" "${genesis_args[@]}" >/dev/null
for home in "$OUT"/op? "$OUT"/cp? "$OUT"/client; do
  cp "$OUT/genesis.json" "$home/genesis.json"
done
chain_id=$("$AGORA" genesis show "$OUT/genesis.json" --json | sed -n 's/.*"chain_id":"\([0-9a-f]*\)".*/\1/p')

# The addresses compose.yaml gives op0 and op1 on its bridge network.
cat > "$OUT/compose.env" <<ENV
AGORA_HOMES=$OUT
AGORA_UID=$(id -u)
AGORA_GID=$(id -g)
AGORA_API_TOKEN=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
BOOT_OP0=/ip4/172.29.0.10/tcp/7301/p2p/$(field "$OUT/op0" peer_id)
BOOT_OP1=/ip4/172.29.0.11/tcp/7301/p2p/$(field "$OUT/op1" peer_id)
ENV
chmod 600 "$OUT/compose.env"
echo "homes    $OUT/{op0..op3,cp0,cp1,client}"
echo "chain id $chain_id"
echo "env      $OUT/compose.env"
echo "next     docker compose --env-file $OUT/compose.env -f testnet/container/compose.yaml up -d"
