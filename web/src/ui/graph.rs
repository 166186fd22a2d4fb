//! The DAG graph as a layered layout for SVG: a task's layer is its longest path from a
//! root; within a layer tasks are ordered by the mean position of their upstreams (one
//! barycentre pass), then by id. Pure: the page colours the nodes.

use std::collections::BTreeMap;

use nightshift_core::dag::Dag;
use serde::Serialize;

pub const NODE_WIDTH: i64 = 170;
pub const NODE_HEIGHT: i64 = 34;
const LAYER_GAP: i64 = 60;
const ROW_GAP: i64 = 18;
const MARGIN: i64 = 10;

/// A task box: top-left corner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Node {
    pub task_id: String,
    pub x: i64,
    pub y: i64,
}

/// An edge from an upstream's right side to a downstream's left side, as an SVG path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Edge {
    pub from: String,
    pub to: String,
    pub path: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Layout {
    pub width: i64,
    pub height: i64,
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
}

/// The tasks of each layer, in drawing order.
pub fn layers(dag: &Dag) -> Vec<Vec<String>> {
    let mut depth: BTreeMap<&str, usize> = BTreeMap::new();
    for task_id in dag.topological_order() {
        let d = dag
            .upstreams(task_id)
            .iter()
            .filter_map(|up| depth.get(up.as_str()))
            .map(|d| d + 1)
            .max()
            .unwrap_or(0);
        depth.insert(task_id, d);
    }
    let count = depth.values().max().map_or(0, |d| d + 1);
    let mut layers: Vec<Vec<String>> = vec![Vec::new(); count];
    for (task_id, d) in &depth {
        layers[*d].push((*task_id).to_owned());
    }
    // Barycentre ordering against the previous layer.
    for i in 1..layers.len() {
        let position: BTreeMap<&str, usize> = layers[i - 1]
            .iter()
            .enumerate()
            .map(|(pos, id)| (id.as_str(), pos))
            .collect();
        let mut keyed: Vec<(usize, String)> = layers[i]
            .iter()
            .map(|id| {
                let ups: Vec<usize> = dag
                    .upstreams(id)
                    .iter()
                    .filter_map(|up| position.get(up.as_str()).copied())
                    .collect();
                // Scaled by 1000 to keep the order of fractional means in integers.
                let key = if ups.is_empty() {
                    usize::MAX
                } else {
                    ups.iter().sum::<usize>() * 1000 / ups.len()
                };
                (key, id.clone())
            })
            .collect();
        keyed.sort();
        layers[i] = keyed.into_iter().map(|(_, id)| id).collect();
    }
    layers
}

/// Positions for every task and paths for every dependency.
pub fn layout(dag: &Dag) -> Layout {
    let layers = layers(dag);
    let tallest = layers.iter().map(Vec::len).max().unwrap_or(0) as i64;
    let height = MARGIN * 2 + tallest * NODE_HEIGHT + (tallest - 1).max(0) * ROW_GAP;
    let mut nodes = Vec::new();
    let mut at: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for (col, layer) in layers.iter().enumerate() {
        let used = layer.len() as i64 * NODE_HEIGHT + (layer.len() as i64 - 1).max(0) * ROW_GAP;
        let top = (height - used) / 2;
        for (row, task_id) in layer.iter().enumerate() {
            let x = MARGIN + col as i64 * (NODE_WIDTH + LAYER_GAP);
            let y = top + row as i64 * (NODE_HEIGHT + ROW_GAP);
            at.insert(task_id.clone(), (x, y));
            nodes.push(Node {
                task_id: task_id.clone(),
                x,
                y,
            });
        }
    }
    let mut edges = Vec::new();
    for task in dag.tasks.values() {
        for up in &task.depends_on {
            let (Some(&(x1, y1)), Some(&(x2, y2))) = (at.get(up), at.get(&task.id)) else {
                continue;
            };
            let (sx, sy) = (x1 + NODE_WIDTH, y1 + NODE_HEIGHT / 2);
            let (ex, ey) = (x2, y2 + NODE_HEIGHT / 2);
            let mid = (sx + ex) / 2;
            edges.push(Edge {
                from: up.clone(),
                to: task.id.clone(),
                path: format!("M{sx},{sy} C{mid},{sy} {mid},{ey} {ex},{ey}"),
            });
        }
    }
    let width = MARGIN * 2 + layers.len() as i64 * (NODE_WIDTH + LAYER_GAP) - LAYER_GAP;
    Layout {
        width: width.max(MARGIN * 2),
        height,
        nodes,
        edges,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nightshift_core::dag::parse_dag;

    fn dag(tasks: &str) -> Dag {
        let source = format!("id = \"g\"\n{tasks}");
        parse_dag("dags/g.toml", &source).unwrap_or_else(|err| panic!("test DAG: {err}"))
    }

    fn check(tasks: &str, expected: &[&[&str]]) {
        let got = layers(&dag(tasks));
        let expected: Vec<Vec<String>> = expected
            .iter()
            .map(|layer| layer.iter().map(|s| s.to_string()).collect())
            .collect();
        assert_eq!(got, expected, "layers of {tasks}");
    }

    #[test]
    fn layers_follow_the_longest_path() {
        check("[tasks.a]\ntype = \"noop\"\n", &[&["a"]]);
        check(
            "[tasks.a]\ntype = \"noop\"\n[tasks.b]\ntype = \"noop\"\ndepends_on = [\"a\"]\n\
             [tasks.c]\ntype = \"noop\"\ndepends_on = [\"a\", \"b\"]\n",
            &[&["a"], &["b"], &["c"]],
        );
        // z hangs under y (position 1), x under w (position 0): barycentre puts x first.
        check(
            "[tasks.w]\ntype = \"noop\"\n[tasks.y]\ntype = \"noop\"\n\
             [tasks.z]\ntype = \"noop\"\ndepends_on = [\"y\"]\n\
             [tasks.x]\ntype = \"noop\"\ndepends_on = [\"w\"]\n",
            &[&["w", "y"], &["x", "z"]],
        );
    }

    #[test]
    fn layout_places_every_task_and_edge() {
        let d = dag(
            "[tasks.a]\ntype = \"noop\"\n[tasks.b]\ntype = \"noop\"\ndepends_on = [\"a\"]\n\
             [tasks.c]\ntype = \"noop\"\ndepends_on = [\"a\"]\n",
        );
        let l = layout(&d);
        assert_eq!(l.nodes.len(), 3);
        assert_eq!(l.edges.len(), 2);
        let a = &l.nodes[0];
        assert_eq!((a.task_id.as_str(), a.x), ("a", MARGIN));
        assert_eq!(l.width, MARGIN * 2 + 2 * NODE_WIDTH + LAYER_GAP);
        assert_eq!(l.height, MARGIN * 2 + 2 * NODE_HEIGHT + ROW_GAP);
        assert!(l.edges.iter().all(|e| e.path.starts_with('M')));
    }
}
