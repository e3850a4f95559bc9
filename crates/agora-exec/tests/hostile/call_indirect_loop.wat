;; An indirect call through a table, forever: a call, a signature check and a fuel check each.
(module
  (memory (export "memory") 1)
  (type $v (func))
  (table 1 funcref)
  (elem (i32.const 0) $g)
  (func $g)
  (func (export "_start")
    (loop $l
      (call_indirect (type $v) (i32.const 0))
      (br $l))))
