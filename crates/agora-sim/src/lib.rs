//! agora-sim (work in progress).
