//! The snapshot and clone hierarchy as `dog vdi tree` draws it: one tree
//! per name, a VDI under the snapshot of the same name it was taken
//! from, snapshots labelled with their creation time (UTC) and the
//! working VDI "(you are here)". A clone, having another name, starts a
//! tree of its own.

use serde_json::{json, Value};

use super::vdis::VdiRow;
use crate::date;

struct Node {
    name: String,
    label: String,
    vid: u32,
    pvid: u32,
    row: Option<usize>,
    children: Vec<usize>,
}

/// Where a node is drawn: its depth, and whether it is the first and the
/// last of its parent's children.
#[derive(Clone, Copy)]
struct Place {
    level: usize,
    first: bool,
    last: bool,
}

/// What drawing keeps as it goes down (dog's treeview): per level the
/// width of the label drawn there and whether siblings follow below it,
/// and the text so far.
#[derive(Default)]
struct Pen {
    width: Vec<usize>,
    more: Vec<bool>,
    out: String,
}

/// The hierarchy of some VDIs.
pub struct Tree {
    nodes: Vec<Node>,
}

impl Tree {
    /// Build it from `rows` taken in VID order, as dog does.
    pub fn new(rows: &[VdiRow]) -> Tree {
        let mut t = Tree {
            nodes: vec![Node {
                name: String::new(),
                label: String::new(),
                vid: 0,
                pvid: 0,
                row: None,
                children: Vec::new(),
            }],
        };
        let mut order: Vec<usize> = (0..rows.len()).collect();
        order.sort_by_key(|&i| rows[i].vid);
        for i in order {
            let r = &rows[i];
            let label = if r.is_snapshot() {
                format!("[{}]", date::minutes(r.ctime))
            } else {
                "(you are here)".to_string()
            };
            let parent = t.find(0, r.parent, &r.name).unwrap_or(0);
            t.nodes.push(Node {
                name: r.name.clone(),
                label,
                vid: r.vid,
                pvid: r.parent,
                row: Some(i),
                children: Vec::new(),
            });
            let me = t.nodes.len() - 1;
            t.nodes[parent].children.push(me);
        }
        t.compact();
        t
    }

    /// The node below `from` (depth first) with `vid` and `name`.
    fn find(&self, from: usize, vid: u32, name: &str) -> Option<usize> {
        for &c in &self.nodes[from].children {
            if self.nodes[c].vid == vid && self.nodes[c].name == name {
                return Some(c);
            }
            if let Some(f) = self.find(c, vid, name) {
                return Some(f);
            }
        }
        None
    }

    /// Move each node under its parent when that came after it.
    fn compact(&mut self) {
        for i in 1..self.nodes.len() {
            let (pvid, name) = (self.nodes[i].pvid, self.nodes[i].name.clone());
            let Some(p) = self.find(0, pvid, &name) else {
                continue;
            };
            if self.nodes[p].children.contains(&i) || self.below(i, p) {
                continue;
            }
            for n in &mut self.nodes {
                n.children.retain(|&c| c != i);
            }
            self.nodes[p].children.push(i);
        }
    }

    /// Whether `n` is `of` or below it.
    fn below(&self, of: usize, n: usize) -> bool {
        n == of || self.nodes[of].children.iter().any(|&c| self.below(c, n))
    }

    /// The trees drawn as dog draws them, those of `only` when given.
    pub fn draw(&self, only: Option<&str>) -> String {
        let mut pen = Pen::default();
        for &root in &self.nodes[0].children {
            let n = &self.nodes[root];
            if only.is_some_and(|o| o != n.name) {
                continue;
            }
            pen.out.push_str(&n.name);
            pen.width = vec![n.name.len()];
            pen.more = vec![false];
            let place = Place {
                level: 1,
                first: true,
                last: true,
            };
            self.dump(root, place, &mut pen);
        }
        pen.out
    }

    fn dump(&self, at: usize, place: Place, pen: &mut Pen) {
        let Place { level, first, last } = place;
        if first {
            pen.out.push_str(if last { "---" } else { "-+-" });
        } else {
            for lvl in 0..level - 1 {
                pen.out.push_str(&" ".repeat(pen.width[lvl] + 1));
                pen.out
                    .push_str(if pen.more[lvl + 1] { "| " } else { "  " });
            }
            pen.out.push_str(&" ".repeat(pen.width[level - 1] + 1));
            pen.out.push_str(if last { "`-" } else { "|-" });
        }
        let n = &self.nodes[at];
        pen.out.push_str(&n.label);
        if n.children.is_empty() {
            pen.out.push('\n');
            return;
        }
        pen.width.resize(level + 1, 0);
        pen.more.resize(level + 1, false);
        pen.more[level] = !last;
        pen.width[level] = n.label.len();
        let k = n.children.len();
        for (i, &c) in n.children.iter().enumerate() {
            let place = Place {
                level: level + 1,
                first: i == 0,
                last: i + 1 == k,
            };
            self.dump(c, place, pen);
        }
    }

    /// The trees as JSON: per node its name, VID, whether a snapshot, its
    /// id, tag and creation time, and its children.
    pub fn json(&self, rows: &[VdiRow], only: Option<&str>) -> Value {
        let roots: Vec<Value> = self.nodes[0]
            .children
            .iter()
            .filter(|&&r| only.is_none_or(|o| o == self.nodes[r].name))
            .map(|&r| self.node_json(r, rows))
            .collect();
        Value::Array(roots)
    }

    fn node_json(&self, at: usize, rows: &[VdiRow]) -> Value {
        let n = &self.nodes[at];
        let r = n.row.map(|i| &rows[i]);
        json!({
            "name": n.name,
            "vid": format!("{:x}", n.vid),
            "parent_vid": format!("{:x}", n.pvid),
            "snapshot": r.is_some_and(|r| r.is_snapshot()),
            "snapshot_id": r.map_or(0, |r| r.snap_id()),
            "tag": r.map_or("", |r| r.tag()),
            "created": r.map(|r| date::iso(r.ctime)),
            "children": n.children.iter().map(|&c| self.node_json(c, rows)).collect::<Vec<_>>(),
        })
    }
}
