//! The bytes of a job output blob: `exit code (i32 LE) ‖ stdout`. A coprocessor stores its
//! output in this form, peers serve it, and a client that fetches it checks it against the
//! job's committed result hash (which covers the exit code and stdout).

/// Encode an exit code and stdout as an output blob.
pub fn encode_output(exit_code: i32, stdout: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(4 + stdout.len());
    v.extend_from_slice(&exit_code.to_le_bytes());
    v.extend_from_slice(stdout);
    v
}

/// Split an output blob into exit code and stdout; `None` if it is shorter than an exit code.
pub fn decode_output(bytes: &[u8]) -> Option<(i32, &[u8])> {
    let (code, stdout) = bytes.split_first_chunk::<4>()?;
    Some((i32::from_le_bytes(*code), stdout))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_encoding_round_trips() {
        let bytes = encode_output(-3, b"hello");
        assert_eq!(&bytes[..4], &(-3i32).to_le_bytes());
        assert_eq!(decode_output(&bytes), Some((-3, &b"hello"[..])));
        assert_eq!(decode_output(&encode_output(0, b"")), Some((0, &b""[..])));
        assert_eq!(decode_output(&[1, 2, 3]), None);
    }
}
