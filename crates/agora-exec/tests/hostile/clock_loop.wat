;; clock_time_get (monotonic and realtime) and clock_res_get, forever.
(module
  (import "wasi_snapshot_preview1" "clock_time_get" (func $time (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_res_get" (func $res (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (loop $l
      (drop (call $time (i32.const 1) (i64.const 1) (i32.const 0)))
      (drop (call $time (i32.const 0) (i64.const 1) (i32.const 8)))
      (drop (call $res (i32.const 1) (i32.const 16)))
      (br $l))))
