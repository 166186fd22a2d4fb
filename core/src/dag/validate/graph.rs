//! The graph: unknown upstreams, duplicates, self-dependencies and cycles.

use super::*;

/// Unknown upstreams, duplicates, self-dependencies and cycles.
pub(super) fn check_graph(
    cx: &mut Ctx<'_>,
    ids: &BTreeSet<String>,
    deps: &BTreeMap<String, Vec<Spanned<String>>>,
) {
    let mut graph: DiGraph<&str, ()> = DiGraph::new();
    let mut edge_span: BTreeMap<(&str, &str), Range<usize>> = BTreeMap::new();
    let nodes: BTreeMap<&str, NodeIndex> = ids
        .iter()
        .map(|id| (id.as_str(), graph.add_node(id.as_str())))
        .collect();
    for (id, upstreams) in deps {
        let mut seen = BTreeSet::new();
        for up in upstreams {
            let name = up.get_ref().as_str();
            if !seen.insert(name) {
                cx.invalid(up.span(), format!("upstream {name:?} is listed twice"));
                continue;
            }
            if name == id {
                let at = cx.at(up.span());
                cx.push(DagError::Cycle {
                    at,
                    path: vec![id.clone(), id.clone()],
                });
                continue;
            }
            match ids.get(name) {
                Some(up_id) => {
                    if let (Some(&a), Some(&b)) =
                        (nodes.get(up_id.as_str()), nodes.get(id.as_str()))
                    {
                        graph.add_edge(a, b, ());
                    }
                    edge_span.insert((up_id.as_str(), id.as_str()), up.span());
                }
                None => {
                    let at = cx.at(up.span());
                    let suggestion =
                        suggest(name, ids.iter().map(String::as_str).filter(|t| t != id));
                    cx.push(DagError::UnknownUpstream {
                        at,
                        upstream: name.to_owned(),
                        suggestion,
                    });
                }
            }
        }
    }
    for scc in petgraph::algo::tarjan_scc(&graph) {
        if scc.len() < 2 {
            continue;
        }
        let members: BTreeSet<&str> = scc.iter().map(|n| graph[*n]).collect();
        let Some(&start) = members.first() else {
            continue;
        };
        let path = cycle_through(&graph, &nodes, &members, start);
        let closing = (path[path.len() - 2], start);
        let span = edge_span.get(&closing).cloned().unwrap_or(0..0);
        let at = cx.at(span);
        cx.push(DagError::Cycle {
            at,
            path: path.iter().map(|s| s.to_string()).collect(),
        });
    }
}

/// The shortest cycle from `start` back to itself inside one strongly connected component,
/// following upstream → downstream edges; starts and ends with `start`.
pub(super) fn cycle_through<'a>(
    graph: &DiGraph<&'a str, ()>,
    nodes: &BTreeMap<&str, NodeIndex>,
    members: &BTreeSet<&'a str>,
    start: &'a str,
) -> Vec<&'a str> {
    let mut parent: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(node) = queue.pop_front() {
        let mut next: Vec<&str> = nodes
            .get(node)
            .map(|&i| {
                graph
                    .neighbors(i)
                    .map(|n| graph[n])
                    .filter(|n| members.contains(n))
                    .collect()
            })
            .unwrap_or_default();
        next.sort_unstable();
        for n in next {
            if n == start {
                return cycle_path(start, node, &parent);
            }
            if !parent.contains_key(n) {
                parent.insert(n, node);
                queue.push_back(n);
            }
        }
    }
    vec![start, start]
}

pub(super) fn cycle_path<'a>(
    start: &'a str,
    last: &'a str,
    parent: &BTreeMap<&'a str, &'a str>,
) -> Vec<&'a str> {
    let mut back = vec![last];
    let mut cur = last;
    while let Some(&p) = parent.get(cur) {
        back.push(p);
        cur = p;
    }
    back.reverse();
    back.push(start);
    back
}
