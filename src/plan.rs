//! `grove review --plan`: an order to land a workspace's envs in, from the conflict radar.
//!
//! Landing an env moves its base; every env not landed yet that touched the same files must
//! then be rebased, and one whose merge would conflict must resolve the conflict. The plan
//! lands first the envs that conflict with the fewest of those still waiting (then those with
//! the fewest overlaps, then those ready to land): an env that conflicts with many others goes
//! last, so it resolves its conflicts once, after all of them, instead of every other env
//! resolving one with it. This is the greedy order for a small independent set first; it is
//! not always optimal, and it does not have to be: it proposes, the human lands.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::review::{EnvReview, Review};

pub const JSON_VERSION: u32 = 1;

#[derive(Debug, Serialize)]
pub struct Plan {
    pub version: u32,
    pub steps: Vec<Step>,
    /// Envs with no commit to land.
    pub nothing_to_land: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Step {
    pub env: String,
    /// Where it stands in the review queue (`approved`, `changes`, `review`, …).
    pub state: String,
    /// Envs landed before this one that touched the same files: rebase onto the base after
    /// they landed, before landing this one.
    pub rebase_after: Vec<Relation>,
    /// Files that conflict with the base as it is now (before any of the plan lands).
    pub conflicts_with_base: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Relation {
    pub env: String,
    pub layer: String,
    /// The rebase will stop on these files; empty when the two only touched the same files
    /// and merge cleanly (or when conflicts could not be predicted).
    pub conflicts: Vec<String>,
    pub overlap: Vec<String>,
}

pub fn plan(review: &Review) -> Plan {
    let landable: Vec<&EnvReview> = review
        .envs
        .iter()
        .filter(|e| e.layers.iter().any(|l| l.ahead > 0))
        .collect();
    let nothing_to_land = review
        .envs
        .iter()
        .filter(|e| !e.layers.iter().any(|l| l.ahead > 0))
        .map(|e| e.name.clone())
        .collect();
    let names: BTreeSet<&str> = landable.iter().map(|e| e.name.as_str()).collect();
    // Every relation between two landable envs, once per layer.
    let relations: Vec<(&str, &str, Relation)> = review
        .conflicts
        .iter()
        .filter(|c| names.contains(c.envs[0].as_str()) && names.contains(c.envs[1].as_str()))
        .map(|c| {
            (
                c.envs[0].as_str(),
                c.envs[1].as_str(),
                Relation {
                    env: String::new(),
                    layer: c.layer.clone(),
                    conflicts: c.conflict.clone().unwrap_or_default(),
                    overlap: c.overlap.clone(),
                },
            )
        })
        .collect();
    let related = |a: &str, b: &str| -> Vec<Relation> {
        relations
            .iter()
            .filter(|(x, y, _)| (*x == a && *y == b) || (*x == b && *y == a))
            .map(|(_, _, r)| r.clone())
            .collect()
    };
    let mut waiting: Vec<&EnvReview> = landable;
    let mut landed: Vec<&str> = Vec::new();
    let mut steps = Vec::new();
    while !waiting.is_empty() {
        let key = |e: &EnvReview| {
            let others = waiting.iter().filter(|o| o.name != e.name);
            let (mut conflicts, mut overlaps) = (0, 0);
            for o in others {
                for r in related(&e.name, &o.name) {
                    if r.conflicts.is_empty() {
                        overlaps += 1;
                    } else {
                        conflicts += 1;
                    }
                }
            }
            let base = e.layers.iter().any(|l| {
                l.conflicts_with_base
                    .as_ref()
                    .is_some_and(|f| !f.is_empty())
            });
            (conflicts, base, overlaps, e.urgency, e.name.clone())
        };
        let best = (0..waiting.len())
            .min_by_key(|&i| key(waiting[i]))
            .expect("waiting is not empty");
        let e = waiting.remove(best);
        let rebase_after = landed
            .iter()
            .flat_map(|l| {
                related(&e.name, l).into_iter().map(move |r| Relation {
                    env: (*l).to_string(),
                    ..r
                })
            })
            .collect();
        let conflicts_with_base = e
            .layers
            .iter()
            .flat_map(|l| {
                l.conflicts_with_base
                    .iter()
                    .flatten()
                    .map(move |f| format!("{}:{f}", l.layer))
            })
            .collect();
        steps.push(Step {
            env: e.name.clone(),
            state: e.state.to_string(),
            rebase_after,
            conflicts_with_base,
        });
        landed.push(&e.name);
    }
    Plan {
        version: JSON_VERSION,
        steps,
        nothing_to_land,
    }
}
