//! Dependencies among installed plugins: cycle detection and load order.

use std::collections::{BTreeMap, BTreeSet};

/// Edges `plugin -> dependencies` (only dependencies that are present in the graph).
pub(crate) type Graph<'a> = BTreeMap<&'a str, Vec<&'a str>>;

/// Finds a dependency cycle reachable from `start`, returned as the full path that closes on
/// itself (`a -> b -> c -> a`).
pub(crate) fn find_cycle_from(graph: &Graph<'_>, start: &str) -> Option<Vec<String>> {
    fn visit<'a>(
        graph: &Graph<'a>,
        node: &'a str,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(pos) = path.iter().position(|n| *n == node) {
            let mut cycle: Vec<String> = path[pos..].iter().map(|s| s.to_string()).collect();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node);
        for dep in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(graph, dep, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node);
        None
    }
    let start = graph.keys().find(|k| **k == start).copied()?;
    visit(graph, start, &mut Vec::new(), &mut BTreeSet::new())
}

/// Topological order (dependencies first), ties broken by name so the order is stable across
/// runs and machines. Returns the cycle if there is one.
pub(crate) fn load_order(graph: &Graph<'_>) -> Result<Vec<String>, Vec<String>> {
    let mut remaining: BTreeMap<&str, usize> = graph
        .iter()
        .map(|(node, deps)| {
            (
                *node,
                deps.iter().filter(|d| graph.contains_key(*d)).count(),
            )
        })
        .collect();
    let mut dependents: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (node, deps) in graph {
        for dep in deps.iter().filter(|d| graph.contains_key(*d)) {
            dependents.entry(dep).or_default().push(node);
        }
    }
    let mut ready: BTreeSet<&str> = remaining
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(k, _)| *k)
        .collect();
    let mut order = Vec::with_capacity(graph.len());
    while let Some(node) = ready.pop_first() {
        order.push(node.to_owned());
        remaining.remove(node);
        for dependent in dependents.get(node).into_iter().flatten() {
            if let Some(count) = remaining.get_mut(dependent) {
                *count -= 1;
                if *count == 0 {
                    ready.insert(dependent);
                }
            }
        }
    }
    if remaining.is_empty() {
        Ok(order)
    } else {
        let start = remaining.keys().next().copied().unwrap_or_default();
        Err(find_cycle_from(graph, start)
            .unwrap_or_else(|| remaining.keys().map(|s| s.to_string()).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph<'a>(edges: &[(&'a str, &[&'a str])]) -> Graph<'a> {
        edges.iter().map(|(n, d)| (*n, d.to_vec())).collect()
    }

    #[test]
    fn order_is_dependencies_first_then_by_name() {
        let g = graph(&[
            ("app", &["base", "log"]),
            ("log", &["base"]),
            ("base", &[]),
            ("zeta", &[]),
        ]);
        assert_eq!(load_order(&g).unwrap(), vec!["base", "log", "app", "zeta"]);
    }

    #[test]
    fn cycle_is_reported_whole() {
        let g = graph(&[("a", &["b"]), ("b", &["c"]), ("c", &["a"]), ("d", &[])]);
        assert_eq!(find_cycle_from(&g, "a").unwrap(), vec!["a", "b", "c", "a"]);
        let err = load_order(&g).unwrap_err();
        assert_eq!(err.len(), 4);
        assert_eq!(err.first(), err.last());
        assert!(find_cycle_from(&g, "d").is_none());
    }

    #[test]
    fn self_loop_is_a_cycle() {
        let g = graph(&[("a", &["a"])]);
        assert_eq!(find_cycle_from(&g, "a").unwrap(), vec!["a", "a"]);
    }
}
