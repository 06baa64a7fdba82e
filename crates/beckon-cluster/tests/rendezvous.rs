//! Rendezvous hashing: even shares, minimal moves, and the same owner on every machine.

use std::collections::HashMap;

use beckon_cluster::NodeLease;
use beckon_cluster::rendezvous::{owner, weight};

const KEYS: usize = 30_000;

fn node(name: &str, epoch: u64) -> NodeLease {
    NodeLease {
        name: name.to_owned(),
        address: format!("{name}.internal:7000"),
        epoch,
    }
}

fn three() -> Vec<NodeLease> {
    vec![node("node-a", 1), node("node-b", 2), node("node-c", 3)]
}

/// Keys over a few sites, as (site, visitor).
fn keys() -> impl Iterator<Item = (String, String)> {
    (0..KEYS).map(|i| (format!("site-{}", i % 7), format!("v_{i:08x}")))
}

fn owners(nodes: &[NodeLease]) -> Vec<String> {
    keys()
        .map(|(site, visitor)| owner(&site, &visitor, nodes).unwrap().name.clone())
        .collect()
}

#[test]
fn three_nodes_each_own_a_third() {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for name in owners(&three()) {
        *counts.entry(name).or_default() += 1;
    }
    assert_eq!(counts.len(), 3, "{counts:?}");
    for (name, count) in &counts {
        let share = *count as f64 / KEYS as f64;
        assert!(
            (share - 1.0 / 3.0).abs() <= 0.015,
            "{name} owns {:.2}% of the keys",
            share * 100.0
        );
    }
}

#[test]
fn removing_a_node_moves_only_its_keys() {
    let before = owners(&three());
    let after = owners(&[node("node-a", 1), node("node-c", 3)]);
    let mut moved = 0;
    for (old, new) in before.iter().zip(&after) {
        if old == "node-b" {
            assert_ne!(new, "node-b");
            moved += 1;
        } else {
            assert_eq!(old, new, "a key of a node that stayed moved");
        }
    }
    assert!(moved > KEYS / 4, "only {moved} keys were node-b's");
}

#[test]
fn adding_a_node_takes_about_a_quarter_and_only_for_itself() {
    let before = owners(&three());
    let mut four = three();
    four.push(node("node-d", 4));
    let after = owners(&four);
    let mut taken = 0;
    for (old, new) in before.iter().zip(&after) {
        if old != new {
            assert_eq!(
                new, "node-d",
                "a key moved between nodes that were there before"
            );
            taken += 1;
        }
    }
    let share = taken as f64 / KEYS as f64;
    assert!(
        (share - 0.25).abs() <= 0.015,
        "the new node took {:.2}% of the keys",
        share * 100.0
    );
}

#[test]
fn the_owner_depends_on_names_not_on_order_addresses_or_epochs() {
    let mut shuffled = vec![node("node-c", 30), node("node-a", 10), node("node-b", 20)];
    shuffled[0].address = "elsewhere:1".to_owned();
    let expected = owners(&three());
    assert_eq!(
        owners(&shuffled),
        expected,
        "owners changed with the order, address or epoch of the nodes"
    );
    assert_eq!(owner("site", "visitor", &[]), None);
}

#[test]
fn fields_are_told_apart() {
    assert_ne!(weight("ab", "c", "d"), weight("a", "bc", "d"));
    assert_ne!(weight("a", "bc", "d"), weight("a", "b", "cd"));
    assert_ne!(weight("", "ab", ""), weight("ab", "", ""));
}

/// Hard-coded, and checked against the reference C implementation of XXH3-64 (libxxhash): a
/// change of hash, of how fields are laid out, or of the tie-break would move every visitor of
/// a running installation, and fails here first.
#[test]
fn the_same_inputs_give_the_same_owner_everywhere() {
    assert_eq!(
        weight("node-a", "site-1", "v_00000000"),
        0x5287_05bf_a15c_2ff5
    );
    let nodes = three();
    let cases = [
        ("site-1", "v_00000000", "node-c"),
        ("site-2", "v_0000abcd", "node-c"),
        ("shop.example", "visitor-0", "node-c"),
        ("shop.example", "visitor-1", "node-b"),
        ("shop.example", "visitor-2", "node-a"),
        ("shop.example", "visitor-5", "node-b"),
        ("shop.example", "visitor-42", "node-a"),
        ("s", "", "node-a"),
    ];
    for (site, visitor, expected) in cases {
        let got = owner(site, visitor, &nodes).map(|n| n.name.as_str());
        assert_eq!(got, Some(expected), "the owner of {site}/{visitor}");
    }
}
