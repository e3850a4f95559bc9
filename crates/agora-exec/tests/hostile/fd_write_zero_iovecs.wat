;; fd_write of 1,000,000 zero-length iovecs (zeroed memory): the host scans them all looking for
;; a non-empty one, and writes nothing.
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 128)
  (func (export "_start")
    (loop $l
      (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1000000) (i32.const 8000000)))
      (br $l))))
