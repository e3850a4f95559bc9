//! The `agora` binary (work in progress).
fn main() {}
