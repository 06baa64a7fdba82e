//! Rendezvous (highest-random-weight) hashing: a visitor belongs to the node whose weight for
//! it is highest. Removing a node moves only the visitors it owned (each to its runner-up),
//! and adding one takes only the visitors for which it now ranks first: about `1/n` of them.
//!
//! The weight is XXH3-64 of the node's name, the site and the visitor. XXH3 is specified bit
//! for bit and `xxhash-rust` implements it without depending on the machine or the compiler,
//! so every node computes the same owner (std's `DefaultHasher` promises neither).

use beckon_store::cluster::NodeLease;
use xxhash_rust::xxh3::Xxh3;

/// The node among `nodes` that owns `visitor` of `site`; `None` when there are no nodes.
/// Ties (which XXH3 makes vanishingly rare) go to the greater name, so that the answer never
/// depends on the order of `nodes`.
pub fn owner<'a>(site: &str, visitor: &str, nodes: &'a [NodeLease]) -> Option<&'a NodeLease> {
    nodes
        .iter()
        .max_by_key(|node| (weight(&node.name, site, visitor), node.name.as_str()))
}

/// The weight of `node` for `visitor` of `site`. Each field is hashed after its length (eight
/// bytes, little-endian), so no two different triples hash the same bytes: `("ab", "c")` and
/// `("a", "bc")` are told apart.
pub fn weight(node: &str, site: &str, visitor: &str) -> u64 {
    let mut hasher = Xxh3::new();
    for field in [node, site, visitor] {
        hasher.update(&(field.len() as u64).to_le_bytes());
        hasher.update(field.as_bytes());
    }
    hasher.digest()
}
