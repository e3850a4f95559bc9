;; random_get of 60 MiB into a one-page memory: the host makes the bytes before it finds they do
;; not fit, and the guest just gets an errno back.
(module
  (import "wasi_snapshot_preview1" "random_get" (func $random (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (loop $l
      (drop (call $random (i32.const 0) (i32.const 62914560)))
      (br $l))))
