//! agora-client (work in progress).
