;; memory.fill of the whole 48 MiB memory, forever.
(module
  (memory (export "memory") 768)
  (func (export "_start")
    (loop $l
      (memory.fill (i32.const 0) (i32.const 7) (i32.const 50331648))
      (br $l))))
