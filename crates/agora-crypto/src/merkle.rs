//! A binary Merkle tree over ordered leaves, with inclusion proofs that verify offline.
//!
//! The layout binds everything a proof could otherwise leave free:
//! - a leaf hash is `blake3_derive("agora/v1/merkle-leaf", index (u64 BE) ‖ leaf bytes)`, so a
//!   leaf proven at one index cannot be claimed at another;
//! - an inner node is `blake3_derive("agora/v1/merkle-node", left ‖ right)`; a level with an odd
//!   number of nodes carries its last node up unchanged (no duplication, so no second-preimage
//!   trick with a repeated last leaf);
//! - the root is `blake3_derive("agora/v1/merkle-root", count (u64 BE) ‖ top)`, with `top` the
//!   zero hash for no leaves, so the leaf count is committed too.
//!
//! A path lists the siblings from the leaf up, skipping the levels where the node is carried
//! up; its length is therefore fixed by `(index, count)`, and [`root_from_path`] refuses any
//! other. A verifier compares the root it leads to with the one it trusts.

use agora_types::Hash;

fn leaf_hash(index: u64, leaf: &[u8]) -> Hash {
    let mut h = blake3::Hasher::new_derive_key("agora/v1/merkle-leaf");
    h.update(&index.to_be_bytes());
    h.update(leaf);
    Hash(*h.finalize().as_bytes())
}

fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = blake3::Hasher::new_derive_key("agora/v1/merkle-node");
    h.update(left.as_bytes());
    h.update(right.as_bytes());
    Hash(*h.finalize().as_bytes())
}

fn root_hash(count: u64, top: &Hash) -> Hash {
    let mut h = blake3::Hasher::new_derive_key("agora/v1/merkle-root");
    h.update(&count.to_be_bytes());
    h.update(top.as_bytes());
    Hash(*h.finalize().as_bytes())
}

/// The level above `level`.
fn up(level: &[Hash]) -> Vec<Hash> {
    level
        .chunks(2)
        .map(|pair| match pair {
            [l, r] => node_hash(l, r),
            [one] => *one,
            _ => unreachable!("chunks(2)"),
        })
        .collect()
}

fn leaves<L: AsRef<[u8]>>(items: &[L]) -> Vec<Hash> {
    items
        .iter()
        .enumerate()
        .map(|(i, l)| leaf_hash(i as u64, l.as_ref()))
        .collect()
}

/// The root of `items`, in order.
pub fn root<L: AsRef<[u8]>>(items: &[L]) -> Hash {
    let mut level = leaves(items);
    while level.len() > 1 {
        level = up(&level);
    }
    root_hash(items.len() as u64, level.first().unwrap_or(&Hash::ZERO))
}

/// The inclusion path of `items[index]` (siblings from the leaf up), or `None` if `index` is out
/// of range.
pub fn path<L: AsRef<[u8]>>(items: &[L], index: usize) -> Option<Vec<Hash>> {
    if index >= items.len() {
        return None;
    }
    let mut level = leaves(items);
    let mut i = index;
    let mut out = Vec::new();
    while level.len() > 1 {
        let sibling = i ^ 1;
        if sibling < level.len() {
            out.push(level[sibling]);
        }
        level = up(&level);
        i /= 2;
    }
    Some(out)
}

/// Why an inclusion proof does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MerkleError {
    #[error("leaf index {index} is not below the leaf count {count}")]
    IndexOutOfRange { index: u64, count: u64 },
    #[error("path has {found} hashes; leaf {index} of {count} needs {expected}")]
    PathLength {
        index: u64,
        count: u64,
        expected: usize,
        found: usize,
    },
}

/// The root that `path` leads to from `leaf` as item `index` of `count` items; an error if the
/// path's length does not fit `(index, count)`.
pub fn root_from_path(
    count: u64,
    index: u64,
    leaf: &[u8],
    path: &[Hash],
) -> Result<Hash, MerkleError> {
    if index >= count {
        return Err(MerkleError::IndexOutOfRange { index, count });
    }
    let expected = path_len(index, count);
    if path.len() != expected {
        return Err(MerkleError::PathLength {
            index,
            count,
            expected,
            found: path.len(),
        });
    }
    // Walk up, taking a sibling wherever the node has one at its level.
    let mut node = leaf_hash(index, leaf);
    let (mut i, mut width) = (index, count);
    let mut siblings = path.iter();
    while width > 1 {
        if (i ^ 1) < width {
            let s = siblings.next().expect("path length checked");
            node = if i % 2 == 0 {
                node_hash(&node, s)
            } else {
                node_hash(s, &node)
            };
        }
        i /= 2;
        width = width.div_ceil(2);
    }
    Ok(root_hash(count, &node))
}

fn path_len(index: u64, count: u64) -> usize {
    let (mut i, mut width, mut n) = (index, count, 0);
    while width > 1 {
        if (i ^ 1) < width {
            n += 1;
        }
        i /= 2;
        width = width.div_ceil(2);
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `leaf` is item `index` of `count` items whose root is `expected`.
    fn verify(
        expected: &Hash,
        count: u64,
        index: u64,
        leaf: &[u8],
        path: &[Hash],
    ) -> Result<(), String> {
        match root_from_path(count, index, leaf, path) {
            Ok(found) if &found == expected => Ok(()),
            Ok(found) => Err(format!("root {found}, not {expected}")),
            Err(e) => Err(e.to_string()),
        }
    }

    fn items(n: usize) -> Vec<Vec<u8>> {
        (0..n).map(|i| format!("leaf {i}").into_bytes()).collect()
    }

    #[test]
    fn every_leaf_of_every_small_tree_proves_and_nothing_else_does() {
        for n in 1..=17 {
            let items = items(n);
            let r = root(&items);
            for (i, leaf) in items.iter().enumerate() {
                let p = path(&items, i).unwrap();
                assert_eq!(p.len(), path_len(i as u64, n as u64));
                verify(&r, n as u64, i as u64, leaf, &p).unwrap();
                // Another index, another count, another leaf or a changed sibling fails.
                for j in 0..n as u64 + 1 {
                    if j != i as u64 {
                        assert!(
                            verify(&r, n as u64, j, leaf, &p).is_err(),
                            "n={n} i={i} j={j}"
                        );
                    }
                }
                for m in 1..=n as u64 + 2 {
                    if m != n as u64 {
                        assert!(verify(&r, m, i as u64, leaf, &p).is_err(), "n={n} m={m}");
                    }
                }
                assert!(verify(&r, n as u64, i as u64, b"other", &p).is_err());
                for k in 0..p.len() {
                    let mut bad = p.clone();
                    bad[k].0[0] ^= 1;
                    assert!(verify(&r, n as u64, i as u64, leaf, &bad).is_err());
                }
                let mut long = p.clone();
                long.push(Hash::ZERO);
                assert!(verify(&r, n as u64, i as u64, leaf, &long).is_err());
            }
            assert_eq!(path(&items, n), None);
        }
    }

    #[test]
    fn roots_commit_to_count_and_order() {
        assert_ne!(root::<Vec<u8>>(&[]), root(&[Vec::new()]));
        let a = items(3);
        let mut b = a.clone();
        b.swap(0, 1);
        assert_ne!(root(&a), root(&b));
        // Carrying the odd last node up is not the same as duplicating it.
        let mut dup = a.clone();
        dup.push(a[2].clone());
        assert_ne!(root(&a), root(&dup));
    }

    /// The layout is part of the proof format: a changed byte here breaks every proof issued.
    #[test]
    fn the_root_of_a_fixed_tree_is_pinned() {
        assert_eq!(
            root(&items(5)).to_hex(),
            "3f9fca952c1dff4a103dc45d6457f32a05ed4fa20537d866408940b46f3e9493"
        );
    }
}
