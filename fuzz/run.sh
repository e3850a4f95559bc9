#!/usr/bin/env bash
# Fuzz one target for a while: `fuzz/run.sh TARGET [SECONDS]` (default 300 s).
#
# One libFuzzer process, at the lowest CPU priority, growing fuzz/corpus/TARGET; a crash is
# written to fuzz/artifacts/TARGET/ (copy it to fuzz/regressions/TARGET/ once fixed, so that
# `cargo test -p agora-fuzz` replays it). Needs a nightly toolchain and cargo-fuzz
# (`cargo install cargo-fuzz`). Built without a sanitizer: the code under test is safe Rust, so
# coverage and the targets' assertions do the work, faster than under ASan.
#
# `wasm_module` links wasmtime, which takes long to build instrumented; it is built with the
# `exec` feature in fuzz/target, every other target without it in fuzz/target/light, so that
# neither build invalidates the other.
set -euo pipefail
cd "$(dirname "$0")"

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    echo "usage: fuzz/run.sh TARGET [SECONDS]" >&2
    echo "targets: $(ls fuzz_targets | sed 's/\.rs$//' | tr '\n' ' ')" >&2
    exit 2
fi
target=$1
seconds=${2:-300}
[ -f "fuzz_targets/$target.rs" ] || { echo "error: no target $target" >&2; exit 2; }

build=(-s none -O)
args=(-max_total_time="$seconds" -print_final_stats=1 -rss_limit_mb=2048 -timeout=20)
if [ "$target" = wasm_module ]; then
    build+=(--features exec --target-dir target)
    args+=(-max_len=8192)
else
    build+=(--target-dir target/light)
fi
mkdir -p "corpus/$target"
exec nice -n 19 cargo +nightly fuzz run "${build[@]}" "$target" "corpus/$target" -- "${args[@]}"
