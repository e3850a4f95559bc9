//! agora-market (work in progress).
