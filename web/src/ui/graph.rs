//! The DAG graph as a layered (Sugiyama) layout for SVG, drawn left to right: the
//! `rust-sugiyama` crate ranks the tasks (each as far left as its upstreams allow: a
//! task's layer is its longest path from a root), orders each layer to reduce crossings
//! and assigns coordinates. An edge spanning several layers is given a chain of small
//! waypoints, one per layer it crosses, laid out with the tasks: so it passes through a
//! gap the layout kept free and never through a task's box. Pure: the page colours the
//! nodes and draws an arrowhead at each edge's end.

use std::collections::{BTreeMap, HashMap};

use nightshift_core::dag::Dag;
use rust_sugiyama::configure::{Config, CrossingMinimization, RankingType};
use serde::Serialize;

pub const NODE_WIDTH: i64 = 170;
pub const NODE_HEIGHT: i64 = 34;
const LAYER_GAP: i64 = 60;
const ROW_GAP: i64 = 18;
const MARGIN: i64 = 10;
/// A waypoint's extent across its layer (an edge passing through needs little room).
const WAYPOINT: i64 = 8;
/// Room kept for the arrowhead between an edge's end and the task's box.
const ARROW: i64 = 6;

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
    let rank: HashMap<&str, usize> = layers
        .iter()
        .enumerate()
        .flat_map(|(r, layer)| layer.iter().map(move |id| (id.as_str(), r)))
        .collect();
    // Vertices: the tasks (ids 0..n, in layer order), then each long edge's waypoints.
    let tasks: Vec<&str> = layers.iter().flatten().map(String::as_str).collect();
    let id_of: HashMap<&str, u32> = tasks
        .iter()
        .enumerate()
        .map(|(i, id)| (*id, i as u32))
        .collect();
    // Sizes in the crate's orientation (layers stacked downwards): (across, along).
    let mut vertices: Vec<(u32, (f64, f64))> = (0..tasks.len() as u32)
        .map(|i| (i, (NODE_HEIGHT as f64, NODE_WIDTH as f64)))
        .collect();
    // The layer of every vertex, by id.
    let mut layer_of: Vec<i64> = tasks.iter().map(|id| rank[id] as i64).collect();
    let mut edges: Vec<(u32, u32)> = Vec::new();
    // Each dependency: (upstream, downstream, its waypoints in order).
    let mut routes: Vec<(String, String, Vec<u32>)> = Vec::new();
    for down in &tasks {
        for up in dag.upstreams(down) {
            let (Some(&from), Some(&to)) = (id_of.get(up.as_str()), id_of.get(down)) else {
                continue;
            };
            let span = rank[down].saturating_sub(rank[up.as_str()]);
            let mut chain = Vec::new();
            let mut previous = from;
            for step in 1..span {
                let waypoint = vertices.len() as u32;
                vertices.push((waypoint, (WAYPOINT as f64, NODE_WIDTH as f64)));
                layer_of.push((rank[up.as_str()] + step) as i64);
                edges.push((previous, waypoint));
                chain.push(waypoint);
                previous = waypoint;
            }
            edges.push((previous, to));
            routes.push((up.clone(), (*down).to_owned(), chain));
        }
    }
    let config = Config {
        minimum_length: 1,
        vertex_spacing: ROW_GAP as f64,
        dummy_vertices: true,
        dummy_size: 1.0,
        // As far up (left) as possible: the longest-path layers computed above, so
        // every edge, waypoints included, spans exactly one layer.
        ranking_type: RankingType::Up,
        c_minimization: CrossingMinimization::Barycenter,
        transpose: true,
    };
    // Centres (across the layers, along them) of every vertex, components stacked.
    let mut centre: HashMap<u32, (i64, i64)> = HashMap::new();
    let mut offset = MARGIN;
    for (component, _, _) in rust_sugiyama::from_vertices_and_edges(&vertices, &edges, &config) {
        let extent = |id: usize| {
            if id < tasks.len() {
                NODE_HEIGHT
            } else {
                WAYPOINT
            }
        };
        let low = component
            .iter()
            .map(|(id, (x, _))| x.round() as i64 - extent(*id) / 2)
            .min()
            .unwrap_or(0);
        let high = component
            .iter()
            .map(|(id, (x, _))| x.round() as i64 + extent(*id) / 2)
            .max()
            .unwrap_or(0);
        for (id, (x, _)) in &component {
            let layer = layer_of.get(*id).copied().unwrap_or(0);
            centre.insert(*id as u32, (x.round() as i64 - low + offset, layer));
        }
        offset += high - low + ROW_GAP;
    }
    // A vertex's left edge in its layer's column.
    let column = |layer: i64| MARGIN + layer * (NODE_WIDTH + LAYER_GAP);
    let mut nodes = Vec::with_capacity(tasks.len());
    for (i, task_id) in tasks.iter().enumerate() {
        let (across, layer) = centre.get(&(i as u32)).copied().unwrap_or((0, 0));
        nodes.push(Node {
            task_id: (*task_id).to_owned(),
            x: column(layer),
            y: across - NODE_HEIGHT / 2,
        });
    }
    let at: HashMap<&str, &Node> = nodes.iter().map(|n| (n.task_id.as_str(), n)).collect();
    let mut drawn = Vec::with_capacity(routes.len());
    for (up, down, chain) in routes {
        let (Some(from), Some(to)) = (at.get(up.as_str()), at.get(down.as_str())) else {
            continue;
        };
        // Through each waypoint: in at its column's left edge, out at its right edge.
        let mut points = vec![(from.x + NODE_WIDTH, from.y + NODE_HEIGHT / 2)];
        for waypoint in &chain {
            let (across, layer) = centre.get(waypoint).copied().unwrap_or((0, 0));
            points.push((column(layer), across));
            points.push((column(layer) + NODE_WIDTH, across));
        }
        points.push((to.x - ARROW, to.y + NODE_HEIGHT / 2));
        drawn.push(Edge {
            from: up,
            to: down,
            path: smooth_path(&points),
        });
    }
    let width = MARGIN * 2 + layers.len() as i64 * (NODE_WIDTH + LAYER_GAP) - LAYER_GAP;
    let height = centre
        .iter()
        .map(|(id, (across, _))| {
            across
                + if (*id as usize) < tasks.len() {
                    NODE_HEIGHT / 2
                } else {
                    WAYPOINT / 2
                }
        })
        .max()
        .map_or(MARGIN * 2, |bottom| bottom + MARGIN);
    Layout {
        width: width.max(MARGIN * 2),
        height,
        nodes,
        edges: drawn,
    }
}

/// An SVG path through `points`: straight across a column (waypoint in and out), an
/// S-curve across each gap between columns.
fn smooth_path(points: &[(i64, i64)]) -> String {
    let mut path = String::new();
    for (i, (x, y)) in points.iter().enumerate() {
        if i == 0 {
            path.push_str(&format!("M{x},{y}"));
            continue;
        }
        let (px, py) = points[i - 1];
        if i % 2 == 1 {
            // Across a gap: horizontal tangents at both ends.
            let mid = (px + x) / 2;
            path.push_str(&format!(" C{mid},{py} {mid},{y} {x},{y}"));
        } else {
            path.push_str(&format!(" L{x},{y}"));
        }
    }
    path
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
        let a = l.nodes.iter().find(|n| n.task_id == "a").expect("a");
        assert_eq!(a.x, MARGIN);
        assert_eq!(l.width, MARGIN * 2 + 2 * NODE_WIDTH + LAYER_GAP);
        // b and c share a layer, one above the other, both inside the drawing.
        let (b, c) = (&l.nodes[1], &l.nodes[2]);
        assert_eq!(b.x, c.x);
        assert!((b.y - c.y).abs() >= NODE_HEIGHT + ROW_GAP, "{l:?}");
        for n in &l.nodes {
            assert!(n.y >= MARGIN && n.y + NODE_HEIGHT <= l.height, "{l:?}");
        }
        assert!(l.edges.iter().all(|e| e.path.starts_with('M')));
    }

    /// Points along an SVG path of ours (M, C and L commands), 20 per segment.
    fn sample(path: &str) -> Vec<(f64, f64)> {
        let mut points = Vec::new();
        let mut at = (0.0, 0.0);
        let numbers = |text: &str| -> Vec<(f64, f64)> {
            text.split_whitespace()
                .filter_map(|pair| pair.split_once(','))
                .map(|(x, y)| (x.parse().expect("x"), y.parse().expect("y")))
                .collect()
        };
        let mut rest = path;
        while let Some(kind) = rest.chars().next() {
            let end = rest[1..]
                .find(['M', 'C', 'L'])
                .map_or(rest.len(), |i| i + 1);
            let args = numbers(&rest[1..end]);
            match (kind, args.as_slice()) {
                ('M', [p]) => at = *p,
                ('L', [p]) => {
                    for i in 0..=20 {
                        let t = f64::from(i) / 20.0;
                        points.push((at.0 + (p.0 - at.0) * t, at.1 + (p.1 - at.1) * t));
                    }
                    at = *p;
                }
                ('C', [c1, c2, p]) => {
                    for i in 0..=20 {
                        let t = f64::from(i) / 20.0;
                        let u = 1.0 - t;
                        let x = u * u * u * at.0
                            + 3.0 * u * u * t * c1.0
                            + 3.0 * u * t * t * c2.0
                            + t * t * t * p.0;
                        let y = u * u * u * at.1
                            + 3.0 * u * u * t * c1.1
                            + 3.0 * u * t * t * c2.1
                            + t * t * t * p.1;
                        points.push((x, y));
                    }
                    at = *p;
                }
                other => panic!("unexpected path command {other:?} in {path}"),
            }
            rest = rest[end..].trim_start();
        }
        points
    }

    #[test]
    fn edges_do_not_run_through_tasks() {
        // Long edges (a → e spans four layers, b → e three, a → d three) beside a chain,
        // and a second component.
        let d = dag("[tasks.a]\ntype = \"noop\"\n\
             [tasks.b]\ntype = \"noop\"\ndepends_on = [\"a\"]\n\
             [tasks.c]\ntype = \"noop\"\ndepends_on = [\"b\"]\n\
             [tasks.d]\ntype = \"noop\"\ndepends_on = [\"c\", \"a\"]\n\
             [tasks.e]\ntype = \"noop\"\ndepends_on = [\"d\", \"a\", \"b\"]\n\
             [tasks.x]\ntype = \"noop\"\n\
             [tasks.y]\ntype = \"noop\"\ndepends_on = [\"x\"]\n\
             [tasks.z]\ntype = \"noop\"\ndepends_on = [\"y\", \"b\"]\n");
        let l = layout(&d);
        assert_eq!(l.edges.len(), 10);
        // No two boxes overlap.
        for (i, p) in l.nodes.iter().enumerate() {
            for q in &l.nodes[i + 1..] {
                let apart = p.x + NODE_WIDTH <= q.x
                    || q.x + NODE_WIDTH <= p.x
                    || p.y + NODE_HEIGHT <= q.y
                    || q.y + NODE_HEIGHT <= p.y;
                assert!(apart, "{} and {} overlap: {l:?}", p.task_id, q.task_id);
            }
        }
        for edge in &l.edges {
            let points = sample(&edge.path);
            let first = points.first().expect("start");
            let last = points.last().expect("end");
            let from = l
                .nodes
                .iter()
                .find(|n| n.task_id == edge.from)
                .expect("from");
            let to = l.nodes.iter().find(|n| n.task_id == edge.to).expect("to");
            // It leaves its upstream's right side and ends just before its downstream's
            // left side (the arrowhead fills the rest).
            assert_eq!(first.0 as i64, from.x + NODE_WIDTH, "{edge:?}");
            assert_eq!(last.0 as i64, to.x - ARROW, "{edge:?}");
            assert!(last.1 as i64 > to.y && (last.1 as i64) < to.y + NODE_HEIGHT);
            for (x, y) in &points {
                for n in &l.nodes {
                    let inside = *x > n.x as f64 + 0.5
                        && *x < (n.x + NODE_WIDTH) as f64 - 0.5
                        && *y > n.y as f64 + 0.5
                        && *y < (n.y + NODE_HEIGHT) as f64 - 0.5;
                    assert!(
                        !inside,
                        "edge {} → {} runs through {} at ({x}, {y}): {l:?}",
                        edge.from, edge.to, n.task_id
                    );
                }
            }
        }
    }
}
