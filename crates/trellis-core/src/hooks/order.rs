//! Call order: pluggy's insertion rules, then `before`/`after` constraints.
//!
//! Keeping pluggy's exact rules (including trylast running in registration order while plain
//! and tryfirst implementations run newest first) matters because plugin authors port hooks
//! from pluggy and rely on them. Constraints are applied afterwards as a *stable* adjustment so
//! that adding a constraint moves only what it must.

use std::sync::Arc;

use super::impls::RegisteredImpl;

/// pluggy's `_add_hookimpl` on one of its two lists (non-wrappers or wrappers): trylast goes to
/// the front, tryfirst to the end, the rest just before the tryfirst block.
pub(crate) fn pluggy_insert(list: &mut Vec<Arc<RegisteredImpl>>, imp: Arc<RegisteredImpl>) {
    if imp.opts.trylast {
        list.insert(0, imp);
    } else if imp.opts.tryfirst {
        list.push(imp);
    } else {
        let mut i = list.len();
        while i > 0 && list[i - 1].opts.tryfirst {
            i -= 1;
        }
        list.insert(i, imp);
    }
}

/// pluggy's `call_extra` placement: after the tryfirst block of non-wrappers, as the latest
/// registered plain implementation.
pub(crate) fn extra_insert(list: &mut Vec<Arc<RegisteredImpl>>, imp: Arc<RegisteredImpl>) {
    let mut i = list.len();
    while i > 0 && list[i - 1].opts.tryfirst {
        i -= 1;
    }
    list.insert(i, imp);
}

/// The call order (wrappers first, then the rest, each group reversed from pluggy's list and
/// adjusted for constraints). Returns the order and the number of wrappers, or a cycle.
pub(crate) fn call_order(
    nonwrappers: &[Arc<RegisteredImpl>],
    wrappers: &[Arc<RegisteredImpl>],
) -> Result<(Vec<Arc<RegisteredImpl>>, usize), Vec<String>> {
    let mut out = Vec::with_capacity(nonwrappers.len() + wrappers.len());
    let w: Vec<_> = wrappers.iter().rev().cloned().collect();
    out.extend(constrain(w)?);
    let n: Vec<_> = nonwrappers.iter().rev().cloned().collect();
    out.extend(constrain(n)?);
    Ok((out, wrappers.len()))
}

/// Stable topological adjustment: Kahn's algorithm picking, among ready implementations, the
/// one earliest in pluggy's order. Without constraints the order is returned untouched.
fn constrain(order: Vec<Arc<RegisteredImpl>>) -> Result<Vec<Arc<RegisteredImpl>>, Vec<String>> {
    if order
        .iter()
        .all(|i| i.opts.before.is_empty() && i.opts.after.is_empty())
    {
        return Ok(order);
    }
    let n = order.len();
    // succ[i]: indices that must run after i.
    let mut succ: Vec<Vec<usize>> = vec![Vec::new(); n];
    let add_edge = |from: usize, to: usize, succ: &mut Vec<Vec<usize>>| {
        if !succ[from].contains(&to) {
            succ[from].push(to);
        }
    };
    for (i, imp) in order.iter().enumerate() {
        for (j, other) in order.iter().enumerate() {
            if imp.plugin == other.plugin {
                continue;
            }
            if imp.opts.before.iter().any(|p| **p == *other.plugin) {
                add_edge(i, j, &mut succ);
            }
            if imp.opts.after.iter().any(|p| **p == *other.plugin) {
                add_edge(j, i, &mut succ);
            }
        }
    }
    let mut indeg = vec![0usize; n];
    for s in &succ {
        for &j in s {
            indeg[j] += 1;
        }
    }
    let mut done = vec![false; n];
    let mut result = Vec::with_capacity(n);
    while result.len() < n {
        let Some(next) = (0..n).find(|&i| !done[i] && indeg[i] == 0) else {
            return Err(find_cycle(&order, &succ, &done));
        };
        done[next] = true;
        for &j in &succ[next] {
            indeg[j] -= 1;
        }
        result.push(next);
    }
    Ok(result.into_iter().map(|i| Arc::clone(&order[i])).collect())
}

/// Every node left has a predecessor among the nodes left, so walking predecessors from any of
/// them must revisit a node; the part of the walk from that node on is a cycle.
fn find_cycle(order: &[Arc<RegisteredImpl>], succ: &[Vec<usize>], done: &[bool]) -> Vec<String> {
    let n = order.len();
    let pred_of = |node: usize| (0..n).find(|&p| !done[p] && succ[p].contains(&node));
    let Some(start) = (0..n).find(|&i| !done[i]) else {
        return Vec::new();
    };
    let mut walk = vec![start];
    let mut cur = start;
    loop {
        let Some(p) = pred_of(cur) else {
            return Vec::new();
        };
        if let Some(pos) = walk.iter().position(|&x| x == p) {
            // walk[pos..] followed predecessors; reverse it to read in "runs before" order.
            let mut cycle: Vec<usize> = walk[pos..].to_vec();
            cycle.reverse();
            let mut names: Vec<String> =
                cycle.iter().map(|&i| order[i].plugin.to_string()).collect();
            names.dedup();
            if let Some(first) = names.first().cloned() {
                names.push(first);
            }
            return names;
        }
        walk.push(p);
        cur = p;
    }
}
