//! Test-only guest modules.

pub const INFINITE_LOOP: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "_start") (loop $l (br $l))))"#;

pub const UNREACHABLE: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "_start") unreachable))"#;

pub const DIV_BY_ZERO: &str = r#"(module
  (memory (export "memory") 1)
  (func $div (param i32) (result i32) (i32.div_u (i32.const 1) (local.get 0)))
  (func (export "_start") (drop (call $div (i32.const 0)))))"#;

pub const STACK_OVERFLOW: &str = r#"(module
  (memory (export "memory") 1)
  (func $f (param i32) (result i32) (i32.add (call $f (local.get 0)) (i32.const 1)))
  (func (export "_start") (drop (call $f (i32.const 0)))))"#;

/// Grows memory a page at a time; if a grow is refused it hits `unreachable`.
pub const MEMORY_HOG: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "_start")
    (loop $l
      (if (i32.eq (memory.grow (i32.const 1)) (i32.const -1)) (then unreachable))
      (br $l))))"#;

/// Asks for 4 GiB of initial memory.
pub const HUGE_INITIAL_MEMORY: &str = r#"(module
  (memory (export "memory") 65536)
  (func (export "_start")))"#;

/// A module-declared maximum: grow past it returns -1 (spec behaviour), the guest exits 3.
pub const DECLARED_MAX: &str = r#"(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1 2)
  (func (export "_start")
    (if (i32.eq (memory.grow (i32.const 5)) (i32.const -1)) (then (call $exit (i32.const 3))))))"#;

pub const NO_START: &str = r#"(module (memory (export "memory") 1) (func (export "main")))"#;

pub const BAD_START: &str = r#"(module (memory (export "memory") 1)
  (func (export "_start") (param i32)))"#;

pub const UNKNOWN_IMPORT: &str = r#"(module
  (import "env" "host_thing" (func))
  (memory (export "memory") 1)
  (func (export "_start")))"#;

pub const EMPTY_COMMAND: &str = r#"(module (memory (export "memory") 1) (func (export "_start")))"#;

/// Exits with the code given as the module's only constant.
pub fn exit_with(code: i32) -> String {
    format!(
        r#"(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start") (call $exit (i32.const {code})) unreachable))"#
    )
}

/// Writes 4 KiB blocks to stdout forever, ignoring errors, until fuel runs out or it has written
/// `blocks` blocks.
pub fn flood(blocks: u32) -> String {
    format!(
        r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start") (local $i i32)
    (i32.store (i32.const 0) (i32.const 1024))
    (i32.store (i32.const 4) (i32.const 4096))
    (loop $l
      (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const {blocks}))))))"#
    )
}

/// Prints the realtime clock (8 bytes LE), two monotonic readings (8 bytes each) and 16 random
/// bytes, as raw bytes, then the environment variable count (4 bytes LE).
pub const PROBE: &str = r#"(module
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "random_get" (func $random (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $env (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (if (call $clock (i32.const 0) (i64.const 1) (i32.const 104)) (then (call $exit (i32.const 10))))
    (if (call $clock (i32.const 1) (i64.const 1) (i32.const 112)) (then (call $exit (i32.const 11))))
    (if (call $clock (i32.const 1) (i64.const 1) (i32.const 120)) (then (call $exit (i32.const 12))))
    (if (call $random (i32.const 128) (i32.const 16)) (then (call $exit (i32.const 13))))
    (if (call $env (i32.const 144) (i32.const 148)) (then (call $exit (i32.const 14))))
    (i32.store (i32.const 0) (i32.const 104))
    (i32.store (i32.const 4) (i32.const 44))
    (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#;

/// Sleeps 10 s through `poll_oneoff` and exits with its errno.
pub const SLEEPER: &str = r#"(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    ;; one relative clock subscription at 0: userdata 0, tag 0 (clock), clock 1, 10 s
    (i32.store8 (i32.const 8) (i32.const 0))
    (i32.store (i32.const 16) (i32.const 1))
    (i64.store (i32.const 24) (i64.const 10000000000))
    (call $exit (call $poll (i32.const 0) (i32.const 100) (i32.const 1) (i32.const 200)))))"#;

/// Exits with the errno of `fd_prestat_get(3)`: 8 (EBADF) when no directory is preopened.
pub const PREOPEN_PROBE: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_prestat_get" (func $pre (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start") (call $exit (call $pre (i32.const 3) (i32.const 0)))))"#;

/// Writes its arguments (argv buffer, NUL-separated) to stdout.
pub const ARGS_ECHO: &str = r#"(module
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $sizes (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get" (func $get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (drop (call $sizes (i32.const 0) (i32.const 4)))
    (drop (call $get (i32.const 1024) (i32.const 4096)))
    (i32.store (i32.const 16) (i32.const 4096))
    (i32.store (i32.const 20) (i32.load (i32.const 4)))
    (drop (call $w (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 24)))))"#;

/// Computes (0/0 - 1) in f32 and prints the bit pattern (4 bytes LE).
pub const NAN_BITS: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func $nan (param f32 f32) (result f32)
    (f32.sub (f32.div (local.get 0) (local.get 1)) (f32.const 1)))
  (func (export "_start")
    (f32.store (i32.const 100) (call $nan (f32.const 0) (f32.const 0)))
    (i32.store (i32.const 0) (i32.const 100))
    (i32.store (i32.const 4) (i32.const 4))
    (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#;

/// Uses a relaxed SIMD instruction, which the engine must refuse.
pub const RELAXED_SIMD: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "_start")
    (drop (i32x4.relaxed_trunc_f32x4_s (v128.const i32x4 0 0 0 0)))))"#;

/// Declares a shared memory, which the engine must refuse (no threads).
pub const SHARED_MEMORY: &str = r#"(module
  (memory (export "memory") 1 1 shared)
  (func (export "_start")))"#;
