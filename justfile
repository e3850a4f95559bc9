# Task runner. `just` lists the recipes; each calls cargo or a testnet/ script, nothing more.

# List the recipes
[private]
default:
    @{{just_executable()}} --list --justfile {{justfile()}}

# Run every test of the workspace
test:
    cargo test --workspace --locked

# Lint: formatting check and clippy with warnings as errors
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets --locked -- -D warnings

# Format the code
fmt:
    cargo fmt --all

# Fuzz one target for SECONDS (default 300): one low-priority libFuzzer process (nightly + cargo-fuzz)
fuzz TARGET SECONDS="300":
    fuzz/run.sh {{TARGET}} {{SECONDS}}

# Start a local testnet (4 operators, 3 coprocessors) under ./.agora/testnet
testnet *ARGS:
    cargo run --release --bin agora -- testnet up {{ARGS}}

# Run what CI runs
ci:
    bash .ci/run
