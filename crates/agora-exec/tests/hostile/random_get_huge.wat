;; random_get into a 60 MiB buffer, forever: one call is 60 MiB of ChaCha20 output.
(module
  (import "wasi_snapshot_preview1" "random_get" (func $random (param i32 i32) (result i32)))
  (memory (export "memory") 960)
  (func (export "_start")
    (loop $l
      (drop (call $random (i32.const 0) (i32.const 62914560)))
      (br $l))))
