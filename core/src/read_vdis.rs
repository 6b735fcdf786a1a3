//! READ_VDIS and READ_DEL_VDIS (PROTOCOL.md §4.1, §9.1) as conversations:
//! the 2 MiB bitmaps of VIDs in use (deleted ones included) and of VIDs
//! deleted, read whole into the caller's buffer and viewed as a
//! [`VdiBitmap`](crate::bitmap::VdiBitmap).

/// READ_VDIS (VIDs in use, deleted ones included) or READ_DEL_VDIS
/// (VIDs deleted) as an [`Exchange`](crate::reply::Exchange)'s
/// conversation: the 2 MiB bitmap into the caller's buffer, exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadVdis {
    /// READ_DEL_VDIS rather than READ_VDIS.
    pub deleted: bool,
}

impl crate::reply::Conversation for ReadVdis {
    type Outcome<'a> = crate::bitmap::VdiBitmap<&'a [u8]>;

    fn request(&self, id: u32, _buf_len: u32) -> crate::wire::Request {
        if self.deleted {
            crate::wire::Request::read_del_vdis(id)
        } else {
            crate::wire::Request::read_vdis(id)
        }
    }

    fn want(&self, _req: &crate::wire::Request) -> crate::reply::Want {
        crate::reply::Want::Exact(crate::wire::VDI_BITMAP_LEN as u32)
    }

    fn accept(
        &mut self,
        _req: &crate::wire::Request,
        _rsp: &crate::wire::Response,
    ) -> Result<crate::reply::Accept, crate::reply::Problem> {
        Ok(crate::reply::Accept::Payload(
            0..crate::wire::VDI_BITMAP_LEN,
        ))
    }

    fn outcome<'a>(
        &self,
        buf: &'a [u8],
    ) -> Result<crate::bitmap::VdiBitmap<&'a [u8]>, crate::reply::Problem> {
        let bytes = buf.get(..crate::wire::VDI_BITMAP_LEN).unwrap_or_default();
        crate::bitmap::VdiBitmap::new_checked(bytes).map_err(|_| crate::reply::Problem::Length {
            got: bytes.len() as u32,
            expected: crate::wire::VDI_BITMAP_LEN as u32,
        })
    }
}
