//! The plain in-memory model of every disk that simulated reads are
//! checked against.

/// A snapshot as the model knows it.
#[derive(Clone, Debug)]
pub struct SnapModel {
    /// Its VID.
    pub vid: u32,
    /// Its contents, when known: a snapshot taken by another client while
    /// writes were in flight may hold any of them, and is not checked.
    pub data: Option<Vec<u8>>,
}

/// A disk: its working VDI (if not deleted) and its snapshots.
#[derive(Clone, Debug)]
pub struct DiskModel {
    /// VDI name.
    pub name: String,
    /// Contents of the working VDI.
    pub working: Option<Vec<u8>>,
    /// Snapshots, oldest first.
    pub snapshots: Vec<SnapModel>,
}

impl DiskModel {
    /// A fresh disk of `size` zero bytes.
    pub fn new(name: String, size: u64) -> DiskModel {
        DiskModel {
            name,
            working: Some(vec![0u8; size as usize]),
            snapshots: Vec::new(),
        }
    }

    /// Size of the working VDI.
    pub fn size(&self) -> u64 {
        self.working.as_ref().map_or(0, |w| w.len() as u64)
    }
}
