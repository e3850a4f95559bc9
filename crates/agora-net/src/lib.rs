//! agora-net (work in progress).
