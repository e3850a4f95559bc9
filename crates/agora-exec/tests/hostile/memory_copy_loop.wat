;; memory.copy of half of a 48 MiB memory onto the other half, forever.
(module
  (memory (export "memory") 768)
  (func (export "_start")
    (loop $l
      (memory.copy (i32.const 0) (i32.const 25165824) (i32.const 25165824))
      (br $l))))
