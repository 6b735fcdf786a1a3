//! Loading the recorded conversations between `dog` and a real cluster
//! (`tests/data/traces/*.json`) into frames.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// Who sent a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// Client to server.
    Request,
    /// Server to client.
    Response,
}

/// One recorded frame.
#[derive(Clone, Debug)]
pub struct TraceFrame {
    /// Direction.
    pub dir: Dir,
    /// Connection number within the trace.
    pub conn: u64,
    /// Global order.
    pub seq: u64,
    /// The 48 header bytes.
    pub header: [u8; 48],
    /// The payload as recorded (only its first 4096 bytes when truncated).
    pub payload: Vec<u8>,
    /// The full payload length.
    pub payload_len: usize,
    /// Whether only a prefix of the payload was recorded.
    pub truncated: bool,
    /// CRC-32 of the full payload, when there is one.
    pub payload_crc32: Option<u32>,
}

/// One recorded `dog` invocation.
#[derive(Clone, Debug)]
pub struct Trace {
    /// File stem, e.g. `07_vdi_snapshot`.
    pub name: String,
    /// The command line.
    pub command: String,
    /// Frames in the order they were seen.
    pub frames: Vec<TraceFrame>,
    /// Bytes `dog` wrote to stdout (for `vdi read`).
    pub stdout: Option<Vec<u8>>,
}

/// A request and the response that carries its id on the same connection.
#[derive(Clone, Copy, Debug)]
pub struct Exchange<'a> {
    /// The request.
    pub request: &'a TraceFrame,
    /// Its response.
    pub response: &'a TraceFrame,
}

/// Decode a hex string.
pub fn hex(s: &str) -> Vec<u8> {
    assert!(s.len() % 2 == 0, "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit"))
        .collect()
}

/// Where the traces are: `$SHEEPDOG_TRACES`, else `data/traces` of this
/// crate.
pub fn trace_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("SHEEPDOG_TRACES") {
        return PathBuf::from(dir);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/traces")
}

fn parse_frame(v: &Value) -> TraceFrame {
    let dir = match v["dir"].as_str() {
        Some("req") => Dir::Request,
        Some("rsp") => Dir::Response,
        other => panic!("bad frame dir {other:?}"),
    };
    let header: [u8; 48] = hex(v["hex_header"].as_str().expect("hex_header"))
        .try_into()
        .expect("48-byte header");
    TraceFrame {
        dir,
        conn: v["conn"].as_u64().expect("conn"),
        seq: v["seq"].as_u64().expect("seq"),
        header,
        payload: hex(v["hex_payload"].as_str().unwrap_or("")),
        payload_len: v["payload_len"].as_u64().expect("payload_len") as usize,
        truncated: v["payload_truncated"].as_bool().unwrap_or(false),
        payload_crc32: v["payload_crc32"]
            .as_str()
            .map(|s| u32::from_str_radix(s, 16).expect("crc hex")),
    }
}

/// Load one trace file.
pub fn load(path: &Path) -> Trace {
    let text = fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read trace {}: {e}", path.display()));
    let v: Value = serde_json::from_str(&text).expect("trace JSON");
    Trace {
        name: path.file_stem().unwrap().to_string_lossy().into_owned(),
        command: v["command"].as_str().unwrap_or("").to_owned(),
        frames: v["frames"]
            .as_array()
            .expect("frames")
            .iter()
            .map(parse_frame)
            .collect(),
        stdout: v["stdout_hex"].as_str().map(hex),
    }
}

/// Load every trace, in file order. Panics with a clear message when the
/// directory is missing: the golden tests cannot pass without it.
pub fn load_all() -> Vec<Trace> {
    let dir = trace_dir();
    let mut paths: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| {
            panic!(
                "trace directory {} is missing ({e}); set SHEEPDOG_TRACES",
                dir.display()
            )
        })
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no traces in {}", dir.display());
    paths.iter().map(|p| load(p)).collect()
}

/// Load one trace by its name (`07_vdi_snapshot`).
pub fn load_named(name: &str) -> Trace {
    load(&trace_dir().join(format!("{name}.json")))
}

fn id_of(f: &TraceFrame) -> u32 {
    u32::from_le_bytes(f.header[8..12].try_into().unwrap())
}

impl Trace {
    /// Pair each request with the first later response on its connection
    /// that carries the same id.
    pub fn exchanges(&self) -> Vec<Exchange<'_>> {
        let mut used = vec![false; self.frames.len()];
        let mut out = Vec::new();
        for (i, req) in self.frames.iter().enumerate() {
            if req.dir != Dir::Request {
                continue;
            }
            let found = self.frames.iter().enumerate().skip(i + 1).find(|(j, f)| {
                !used[*j] && f.dir == Dir::Response && f.conn == req.conn && id_of(f) == id_of(req)
            });
            let (j, rsp) =
                found.unwrap_or_else(|| panic!("{}: request {} unanswered", self.name, req.seq));
            used[j] = true;
            out.push(Exchange {
                request: req,
                response: rsp,
            });
        }
        out
    }
}
