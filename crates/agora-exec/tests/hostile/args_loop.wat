;; args_sizes_get and args_get, forever: each copies the whole argument list on the host.
(module
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $sizes (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get" (func $get (param i32 i32) (result i32)))
  (memory (export "memory") 4)
  (func (export "_start")
    (loop $l
      (drop (call $sizes (i32.const 0) (i32.const 4)))
      (drop (call $get (i32.const 16) (i32.const 65536)))
      (br $l))))
