//! The market's canonical encodings (`agora_market::canon`): the bytes a proof carries and
//! `agora verify` decodes from a file anyone may have written.

use std::collections::BTreeMap;

use agora_market::canon::Canon;
use agora_market::{Coprocessor, EventRecord, Job};
use agora_types::{Address, Amount};

fn exact<T: Canon + PartialEq + std::fmt::Debug>(bytes: &[u8]) {
    if let Ok(v) = T::from_canonical(bytes) {
        // One encoding per value: what decodes is exactly what encoding that value writes.
        assert_eq!(
            v.to_canonical(),
            bytes,
            "a decoded value re-encodes to other bytes"
        );
        assert_eq!(T::from_canonical(&v.to_canonical()).as_ref(), Ok(&v));
    }
}

/// The first byte picks the type: an event record, a job, a coprocessor or a map.
pub fn canonical(data: &[u8]) {
    let Some((&kind, rest)) = data.split_first() else {
        return;
    };
    match kind % 4 {
        0 => exact::<EventRecord>(rest),
        1 => exact::<Job>(rest),
        2 => exact::<Coprocessor>(rest),
        _ => exact::<BTreeMap<Address, Amount>>(rest),
    }
}
