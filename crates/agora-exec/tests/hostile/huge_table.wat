;; A 100,000-entry table, filled and copied onto itself, forever.
(module
  (memory (export "memory") 1)
  (table $t 100000 funcref)
  (func $g)
  (elem declare func $g)
  (func (export "_start")
    (loop $l
      (table.fill $t (i32.const 0) (ref.func $g) (i32.const 100000))
      (table.copy $t $t (i32.const 0) (i32.const 50000) (i32.const 50000))
      (br $l))))
