;; fd_write of 1,000,000 one-byte iovecs, forever (stdout fills up, then every write fails with
;; EIO, which the guest ignores).
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 128)
  (func (export "_start")
    (local $i i32)
    ;; iovec i = { buf: 8_000_000, len: 1 }
    (loop $fill
      (i32.store (i32.mul (local.get $i) (i32.const 8)) (i32.const 8000000))
      (i32.store offset=4 (i32.mul (local.get $i) (i32.const 8)) (i32.const 1))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $fill (i32.lt_u (local.get $i) (i32.const 1000000))))
    (loop $l
      (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1000000) (i32.const 8000016)))
      (br $l))))
