//! agora-consensus (work in progress).
