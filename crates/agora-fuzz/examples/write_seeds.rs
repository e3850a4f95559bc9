//! Write the seed corpus: `cargo run -p agora-fuzz --example write_seeds -- fuzz/corpus`.
//!
//! Each seed goes to `<dir>/<target>/<name>`; existing files are left alone (the committed
//! corpus also holds inputs the fuzzer found), a seed whose bytes changed is overwritten.

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "fuzz/corpus".into()),
    );
    let mut n = 0;
    for (target, name, bytes) in agora_fuzz::seeds::all() {
        let d = dir.join(target);
        std::fs::create_dir_all(&d)?;
        std::fs::write(d.join(format!("seed-{name}")), bytes)?;
        n += 1;
    }
    println!("wrote {n} seeds under {}", dir.display());
    Ok(())
}
