;; wordcount: counts the lines, words and bytes of stdin, like `wc`, and prints
;; "LINES WORDS BYTES\n". A word is a maximal run of bytes other than space, \t, \n, \v, \f, \r.
;;
;;   agora job submit examples/wordcount.wat --input book.txt
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 2)
  ;; 0..8 iovec, 8..12 byte count, 200..220 digit scratch, 8192.. output buffer,
  ;; 65536..131072 read buffer
  (global $out_len (mut i32) (i32.const 0))

  (func $write (param $ptr i32) (param $len i32)
    (block $done
      (loop $again
        (br_if $done (i32.eqz (local.get $len)))
        (i32.store (i32.const 0) (local.get $ptr))
        (i32.store (i32.const 4) (local.get $len))
        (if (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))
          (then (call $proc_exit (i32.const 1))))
        (if (i32.eqz (i32.load (i32.const 8))) (then (call $proc_exit (i32.const 1))))
        (local.set $ptr (i32.add (local.get $ptr) (i32.load (i32.const 8))))
        (local.set $len (i32.sub (local.get $len) (i32.load (i32.const 8))))
        (br $again))))

  (func $flush
    (call $write (i32.const 8192) (global.get $out_len))
    (global.set $out_len (i32.const 0)))

  (func $putc (param $c i32)
    (if (i32.ge_u (global.get $out_len) (i32.const 16384)) (then (call $flush)))
    (i32.store8 (i32.add (i32.const 8192) (global.get $out_len)) (local.get $c))
    (global.set $out_len (i32.add (global.get $out_len) (i32.const 1))))

  ;; Decimal digits of n.
  (func $put_u64 (param $n i64)
    (local $i i32)
    (local.set $i (i32.const 220))
    (loop $digit
      (local.set $i (i32.sub (local.get $i) (i32.const 1)))
      (i32.store8 (local.get $i)
        (i32.add (i32.const 48) (i32.wrap_i64 (i64.rem_u (local.get $n) (i64.const 10)))))
      (local.set $n (i64.div_u (local.get $n) (i64.const 10)))
      (br_if $digit (i64.ne (local.get $n) (i64.const 0))))
    (loop $emit
      (call $putc (i32.load8_u (local.get $i)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $emit (i32.lt_u (local.get $i) (i32.const 220)))))

  (func (export "_start")
    (local $n i32) (local $p i32) (local $end i32) (local $c i32) (local $in_word i32)
    (local $lines i64) (local $words i64) (local $bytes i64)
    (block $eof
      (loop $more
        (i32.store (i32.const 0) (i32.const 65536))
        (i32.store (i32.const 4) (i32.const 65536))
        (if (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8))
          (then (call $proc_exit (i32.const 2))))
        (local.set $n (i32.load (i32.const 8)))
        (br_if $eof (i32.eqz (local.get $n)))
        (local.set $bytes (i64.add (local.get $bytes) (i64.extend_i32_u (local.get $n))))
        (local.set $p (i32.const 65536))
        (local.set $end (i32.add (i32.const 65536) (local.get $n)))
        (loop $byte
          (local.set $c (i32.load8_u (local.get $p)))
          (if (i32.eq (local.get $c) (i32.const 10))
            (then (local.set $lines (i64.add (local.get $lines) (i64.const 1)))))
          (if (i32.or (i32.eq (local.get $c) (i32.const 32))
                      (i32.le_u (i32.sub (local.get $c) (i32.const 9)) (i32.const 4)))
            (then (local.set $in_word (i32.const 0)))
            (else
              (if (i32.eqz (local.get $in_word))
                (then
                  (local.set $words (i64.add (local.get $words) (i64.const 1)))
                  (local.set $in_word (i32.const 1))))))
          (local.set $p (i32.add (local.get $p) (i32.const 1)))
          (br_if $byte (i32.lt_u (local.get $p) (local.get $end))))
        (br $more)))
    (call $put_u64 (local.get $lines))
    (call $putc (i32.const 32))
    (call $put_u64 (local.get $words))
    (call $putc (i32.const 32))
    (call $put_u64 (local.get $bytes))
    (call $putc (i32.const 10))
    (call $flush))
)
