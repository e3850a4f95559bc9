;; Grows memory 16 pages at a time and ignores refusals: past the memory limit every grow is a
;; refused call into the runtime, until the fuel runs out (a memory-limit outcome).
(module
  (memory (export "memory") 1)
  (func (export "_start")
    (loop $l
      (drop (memory.grow (i32.const 16)))
      (br $l))))
