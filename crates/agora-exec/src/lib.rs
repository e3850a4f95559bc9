//! agora-exec (work in progress).
