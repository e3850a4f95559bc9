;; poll_oneoff with 1,000,000 subscriptions, forever.
(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (loop $l
      (drop (call $poll (i32.const 0) (i32.const 0) (i32.const 1000000) (i32.const 0)))
      (br $l))))
