//! What the two diff stream decoders share ([`crate::rbd_diff`] and
//! [`crate::dog_backup`]): a byte stream read sans-IO, item by item, from
//! whatever bytes the caller has, counting what it consumed so that every
//! error can name the stream byte where it broke.
//!
//! A decoder implements [`StreamDecoder::step`] (one item from the bytes
//! at its position) and keeps its position; [`StreamDecoder::next`] and
//! [`StreamDecoder::finish`] are the same for every stream.

/// A stream of records decoded from caller-supplied bytes.
pub trait StreamDecoder {
    /// What one step yields, borrowing the input.
    type Item<'a>;
    /// Why the stream cannot be read on.
    type Error;

    /// Stream bytes consumed so far: where the next item starts, or where
    /// the stream broke.
    fn position(&self) -> u64;

    /// Whether the end record has been read.
    fn is_done(&self) -> bool;

    /// The error of a stream that ends at byte `at`, before its end
    /// record.
    fn truncated(at: u64) -> Self::Error;

    /// Decode one item from `input` (the bytes from the position on)
    /// without counting them: `(0, None)` means more bytes are needed.
    /// The decoder's own step; callers use [`StreamDecoder::next`].
    fn step<'a>(&mut self, input: &'a [u8])
        -> Result<(usize, Option<Self::Item<'a>>), Self::Error>;

    /// Count `used` bytes as consumed (after [`StreamDecoder::step`]).
    fn consumed(&mut self, used: usize);

    /// Decode from `input`, the bytes the caller has from
    /// [`StreamDecoder::position`] on. Returns how many were used and what
    /// they were; `(0, None)` means a whole header is not there yet: come
    /// back with more.
    fn next<'a>(
        &mut self,
        input: &'a [u8],
    ) -> Result<(usize, Option<Self::Item<'a>>), Self::Error> {
        let (used, item) = self.step(input)?;
        self.consumed(used);
        Ok((used, item))
    }

    /// The stream ended: fine after the end record, else where it broke.
    fn finish(&self) -> Result<(), Self::Error> {
        if self.is_done() {
            Ok(())
        } else {
            Err(Self::truncated(self.position()))
        }
    }
}
