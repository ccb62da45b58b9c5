//! Event payloads at rest, zstd-compressed (migration V17).
//!
//! Stripe's JSON shrinks about 3× (a 6 KB `invoice.paid` to ~2 KB), which keeps each payload in
//! one B-tree page instead of a page and an overflow chain: an intake commit writes under half
//! the WAL pages (`events::tests`), and checkpoints as many fewer, at ~20 µs of CPU per event,
//! spent on the request's task rather than on the single writer (`NewEvent::new`). Rows stored
//! before V17 keep their text; `unpack` reads both.

use std::cell::RefCell;

/// zstd's level 1: its fastest with the full ratio on JSON this small (level 3 gains ~2%).
const LEVEL: i32 = 1;

/// The largest payload `unpack` accepts, whatever a frame's header claims: far above any body
/// intake takes (`server.max_webhook_bytes`), far below what would hurt to allocate.
const MAX_UNPACKED: u64 = 64 << 20;

thread_local! {
    // Setting a compression context up allocates its tables: one per thread, reused.
    static COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> = const { RefCell::new(None) };
}

/// Level 1, with the frame's checksum (4 bytes, ~1 µs): damaged bytes at rest fail `unpack`
/// instead of giving back a body Stripe never sent.
fn compressor() -> zstd::bulk::Compressor<'static> {
    let mut compressor = zstd::bulk::Compressor::new(LEVEL).expect("a zstd context");
    compressor
        .set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true))
        .expect("zstd takes its checksum flag");
    compressor
}

/// The payload's bytes as stored in `event_payloads.payload_zstd`.
pub fn pack(payload: &str) -> Vec<u8> {
    COMPRESSOR.with(|cell| {
        let mut cell = cell.borrow_mut();
        let compressor = match cell.as_mut() {
            Some(compressor) => compressor,
            None => cell.insert(compressor()),
        };
        // Compressing into a Vec sized by zstd's own bound fails only on allocation failure.
        compressor
            .compress(payload.as_bytes())
            .expect("zstd compresses into a buffer of its bound")
    })
}

/// The payload `pack` stored, exactly as Stripe signed it.
pub fn unpack(packed: &[u8]) -> Result<String, UnpackError> {
    let size = zstd::zstd_safe::get_frame_content_size(packed)
        .map_err(|_| UnpackError::NotZstd)?
        .ok_or(UnpackError::NotZstd)?;
    if size > MAX_UNPACKED {
        return Err(UnpackError::TooLarge(size));
    }
    let bytes = zstd::bulk::decompress(packed, size as usize).map_err(UnpackError::Corrupt)?;
    String::from_utf8(bytes).map_err(|_| UnpackError::NotUtf8)
}

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("the stored payload is not a zstd frame with its size")]
    NotZstd,
    #[error("the stored payload claims {0} bytes unpacked")]
    TooLarge(u64),
    #[error("the stored payload is damaged ({0})")]
    Corrupt(std::io::Error),
    #[error("the stored payload is not UTF-8")]
    NotUtf8,
}

/// An event's payload from its `event_payloads` row: the text of a row stored before V17, else
/// its packed bytes unpacked; or why it cannot be read (bytes damaged at rest), apart from the
/// row's own errors, so that a reader can show or skip that one event and go on.
pub fn from_columns(
    row: &rusqlite::Row,
    text: usize,
    packed: usize,
) -> rusqlite::Result<Result<String, UnpackError>> {
    if let Some(bytes) = row.get_ref(packed)?.as_blob_or_null()? {
        return Ok(unpack(bytes));
    }
    match row.get_ref(text)?.as_str() {
        Ok(text) => Ok(Ok(text.to_owned())),
        Err(rusqlite::types::FromSqlError::Utf8Error(_)) => Ok(Err(UnpackError::NotUtf8)),
        Err(e) => Err(rusqlite::Error::FromSqlConversionFailure(
            text,
            rusqlite::types::Type::Text,
            Box::new(e),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stripe_event_comes_back_byte_for_byte_and_three_times_smaller() {
        let payload = include_str!("../../tests/fixtures/stripe/events/invoice.paid.json");
        let packed = pack(payload);
        assert_eq!(unpack(&packed).unwrap(), payload);
        assert!(
            packed.len() * 5 < payload.len() * 2,
            "{} bytes packed from {}",
            packed.len(),
            payload.len()
        );
        // Non-ASCII text and the empty body survive too.
        for text in ["", "{\"name\":\"Zoë Ñandú — 東京\"}"] {
            assert_eq!(unpack(&pack(text)).unwrap(), text);
        }
    }

    #[test]
    fn damaged_bytes_are_an_error_not_a_panic_or_a_huge_allocation() {
        let payload = include_str!("../../tests/fixtures/stripe/events/invoice.paid.json");
        let packed = pack(payload);
        assert!(matches!(unpack(b"{\"id\":1}"), Err(UnpackError::NotZstd)));
        assert!(matches!(
            unpack(&packed[..packed.len() / 2]),
            Err(UnpackError::Corrupt(_))
        ));
        let mut flipped = packed.clone();
        let middle = flipped.len() / 2;
        flipped[middle] ^= 0xff;
        assert!(unpack(&flipped).is_err());
        // A frame header claiming 1 TB unpacked (magic, single-segment with an 8-byte size) is
        // refused before anything is allocated.
        let mut huge = vec![0x28, 0xb5, 0x2f, 0xfd, 0xe0];
        huge.extend_from_slice(&(1u64 << 40).to_le_bytes());
        assert!(matches!(unpack(&huge), Err(UnpackError::TooLarge(_))));
        assert!(matches!(unpack(&[0xff; 3]), Err(UnpackError::NotZstd)));
    }
}
