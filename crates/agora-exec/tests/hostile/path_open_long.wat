;; path_open with a 32 MiB path, forever (there is no directory to open it in).
(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (memory (export "memory") 520)
  (func (export "_start")
    (memory.fill (i32.const 0) (i32.const 97) (i32.const 33554432))
    (loop $l
      (drop (call $open (i32.const 3) (i32.const 0) (i32.const 0) (i32.const 33554432)
        (i32.const 0) (i64.const 0) (i64.const 0) (i32.const 0) (i32.const 33554440)))
      (br $l))))
