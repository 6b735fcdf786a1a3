//! Lookups and locks: GET_VDI_INFO, LOCK_VDI and RELEASE_VDI
//! (PROTOCOL.md §9.2, §9.8). The reference cluster has one gateway, so
//! every lock belongs to it: a normal lock fails if the VDI is locked in any
//! mode, a shared lock fails if this node already takes part.

use sheepdog_core::wire::{Request, ResultCode};

use super::cluster::{Cluster, Outcome};
use super::vdi_state::LockState;

impl Cluster {
    /// GET_VDI_INFO, and LOCK_VDI when `lock` is set.
    pub(super) fn op_get_vdi_info(
        &mut self,
        node: usize,
        req: &Request,
        payload: &[u8],
        lock: bool,
    ) -> Outcome {
        let info = match self.lookup_request(req, payload) {
            Ok(info) => info,
            Err(ret) => return Outcome::vdi(ret, 0, 0, 0),
        };
        let (vid, copies, shift) = (info.vid, self.copies_of(info.vid), self.shift_of(info.vid));
        let mut result = ResultCode::Success;
        let lock_type = req.vdi().map_or(0, |a| a.lock_type);
        if lock && self.config.use_lock() && !self.lock(node, vid, lock_type) {
            result = ResultCode::VdiLocked;
        }
        Outcome::vdi(result, vid, copies, shift)
    }

    /// `vdi_lock()` on behalf of node `node`, the gateway asked.
    fn lock(&mut self, node: usize, vid: u32, lock_type: u32) -> bool {
        let Some(state) = self.vdis.get_mut(&vid) else {
            return false;
        };
        match (lock_type, state.lock) {
            (0, LockState::Unlocked) => state.lock = LockState::Locked,
            (1, LockState::Unlocked) => state.lock = LockState::Shared,
            // Normal: locked in any mode. Shared: this node already takes
            // part, or a normal lock.
            _ => return false,
        }
        state.owner = node;
        true
    }

    /// RELEASE_VDI: unlock `base_vdi_id`; always SUCCESS.
    pub(super) fn op_release_vdi(&mut self, req: &Request) -> Outcome {
        let a = req.vdi().copied().unwrap_or_default();
        if self.config.use_lock() {
            if let Some(state) = self.vdis.get_mut(&a.base_vdi_id) {
                match (a.lock_type, state.lock) {
                    (0, LockState::Locked) => state.lock = LockState::Unlocked,
                    (t, LockState::Shared) if t != 0 => state.lock = LockState::Unlocked,
                    _ => {}
                }
            }
        }
        Outcome::vdi(ResultCode::Success, 0, 0, 0)
    }
}
