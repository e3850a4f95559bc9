#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| agora_fuzz::blob_response(data));
