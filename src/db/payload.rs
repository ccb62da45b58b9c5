//! Event payloads at rest, zstd-compressed (migration V17) with a dictionary (V18).
//!
//! Stripe's JSON shrinks about 3× on its own (a 6 KB `invoice.paid` to ~1.9 KB), which keeps
//! each payload in one B-tree page instead of a page and an overflow chain: an intake commit
//! writes under half the WAL pages (`events::tests`), and checkpoints as many fewer. Packing runs
//! on the request's task rather than on the single writer (`NewEvent::new`). A dictionary of
//! what Stripe's objects have in common (`assets/zstd/`, trained on Stripe's OpenAPI fixtures,
//! not on the events the tests post) takes the same event to ~1.25 KB at about 1.5× the speed:
//! zstd's block tables start from the dictionary's instead of being built per payload.
//!
//! Rows stored before V17 keep their text, and frames packed at V17 carry no dictionary id;
//! `unpack` reads all three.

use std::cell::RefCell;
use std::sync::{LazyLock, Mutex};

use zstd::dict::{DecoderDictionary, EncoderDictionary};

/// zstd's level 1: its fastest with the full ratio on JSON this small (level 3 gains ~2%).
const LEVEL: i32 = 1;

/// The dictionary every new payload is packed with. Part of the stored format: a frame names
/// its dictionary's id, and unpacking needs these exact bytes, so the file is frozen; a better
/// one would get the next id beside it (`assets/zstd/train.py`).
const DICTIONARY: &[u8] = include_bytes!("../../assets/zstd/stripe-events-1.dict");
/// `DICTIONARY`'s id, as its header and every frame packed with it carry it.
const DICTIONARY_ID: u32 = 0x4D4D_4301;

/// The dictionary digested for packing at `LEVEL` and for unpacking, each once per process on
/// first use (a server that has not yet taken a webhook holds neither).
static ENCODER: LazyLock<EncoderDictionary<'static>> =
    LazyLock::new(|| EncoderDictionary::copy(DICTIONARY, LEVEL));
static DECODER: LazyLock<DecoderDictionary<'static>> =
    LazyLock::new(|| DecoderDictionary::copy(DICTIONARY));

/// The largest payload `unpack` accepts, whatever a frame's header claims: far above any body
/// intake takes (`server.max_webhook_bytes`), far below what would hurt to allocate.
const MAX_UNPACKED: u64 = 64 << 20;

thread_local! {
    // Setting a compression context up allocates its tables: one per thread, reused.
    static COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> = const { RefCell::new(None) };
}

/// Level 1 with the dictionary, and the frame's checksum (4 bytes, ~1 µs): damaged bytes at
/// rest fail `unpack` instead of giving back a body Stripe never sent.
fn compressor() -> zstd::bulk::Compressor<'static> {
    let mut compressor =
        zstd::bulk::Compressor::with_prepared_dictionary(&ENCODER).expect("a zstd context");
    compressor
        .set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true))
        .expect("zstd takes its checksum flag");
    compressor
}

/// Unpacking contexts set up with the dictionary, kept for the next payload: setting one up
/// costs more than unpacking (zstd allocates ~96 KB and probes the CPU with `cpuid`, which
/// traps to the hypervisor in a VM). One list shared by every thread, not one context per
/// thread, so the memory they hold stays bounded however many threads read events.
static DECOMPRESSORS: Mutex<Vec<zstd::bulk::Decompressor<'static>>> = Mutex::new(Vec::new());
/// The most `DECOMPRESSORS` keeps: the processor's reads and a page's, side by side.
const KEPT_DECOMPRESSORS: usize = 2;

fn unpack_with_dictionary(packed: &[u8], size: usize) -> std::io::Result<Vec<u8>> {
    let kept = DECOMPRESSORS.lock().expect("decompressors").pop();
    let mut decompressor = match kept {
        Some(decompressor) => decompressor,
        None => zstd::bulk::Decompressor::with_prepared_dictionary(&DECODER)?,
    };
    // Each call starts a new frame, so a context that failed on a damaged one is still usable.
    let bytes = decompressor.decompress(packed, size);
    let mut kept = DECOMPRESSORS.lock().expect("decompressors");
    if kept.len() < KEPT_DECOMPRESSORS {
        kept.push(decompressor);
    }
    bytes
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
    let bytes = match zstd::zstd_safe::get_dict_id_from_frame(packed).map(|id| id.get()) {
        // Packed at V17, before the dictionary.
        None => zstd::bulk::decompress(packed, size as usize),
        Some(DICTIONARY_ID) => unpack_with_dictionary(packed, size as usize),
        Some(other) => return Err(UnpackError::UnknownDictionary(other)),
    }
    .map_err(UnpackError::Corrupt)?;
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
    /// A frame naming a dictionary this binary does not have: a newer release packed it (the
    /// schema version stops that) or its header was damaged.
    #[error("the stored payload names zstd dictionary {0}, which this binary does not have")]
    UnknownDictionary(u32),
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
    fn a_stripe_event_comes_back_byte_for_byte_and_four_times_smaller() {
        let payload = include_str!("../../tests/fixtures/stripe/events/invoice.paid.json");
        let packed = pack(payload);
        assert_eq!(unpack(&packed).unwrap(), payload);
        assert!(
            packed.len() * 4 < payload.len(),
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

    #[test]
    fn unpacking_contexts_are_bounded_in_number_and_survive_a_damaged_frame() {
        let payload = include_str!("../../tests/fixtures/stripe/events/invoice.paid.json");
        let packed = pack(payload);
        let mut flipped = packed.clone();
        let middle = flipped.len() / 2;
        flipped[middle] ^= 0xff;
        std::thread::scope(|threads| {
            for _ in 0..4 {
                threads.spawn(|| {
                    for _ in 0..200 {
                        assert!(unpack(&flipped).is_err());
                        assert_eq!(unpack(&packed).unwrap(), payload);
                    }
                });
            }
        });
        // Other tests may hold one at this moment, so only the bound is certain.
        let kept = DECOMPRESSORS.lock().unwrap().len();
        assert!(kept <= KEPT_DECOMPRESSORS, "{kept} kept");
    }

    #[test]
    fn new_frames_name_the_dictionary_and_frames_from_before_it_still_unpack() {
        assert_eq!(
            DECODER.as_ddict().get_dict_id().map(|id| id.get()),
            Some(DICTIONARY_ID),
            "the embedded file is the dictionary its id says"
        );
        let payload = include_str!("../../tests/fixtures/stripe/events/charge.refunded.json");
        let packed = pack(payload);
        assert_eq!(
            zstd::zstd_safe::get_dict_id_from_frame(&packed).map(|id| id.get()),
            Some(DICTIONARY_ID)
        );
        // As V17 packed, with no dictionary.
        let mut plain = zstd::bulk::Compressor::new(LEVEL).unwrap();
        plain
            .set_parameter(zstd::zstd_safe::CParameter::ChecksumFlag(true))
            .unwrap();
        let before = plain.compress(payload.as_bytes()).unwrap();
        assert_eq!(zstd::zstd_safe::get_dict_id_from_frame(&before), None);
        assert_eq!(unpack(&before).unwrap(), payload);
        // A dictionary this binary does not have (here ours under another id) is named, not
        // guessed at.
        let mut foreign_dictionary = DICTIONARY.to_vec();
        foreign_dictionary[4..8].copy_from_slice(&(DICTIONARY_ID + 1).to_le_bytes());
        let foreign = zstd::bulk::Compressor::with_dictionary(LEVEL, &foreign_dictionary)
            .unwrap()
            .compress(payload.as_bytes())
            .unwrap();
        assert!(
            matches!(unpack(&foreign), Err(UnpackError::UnknownDictionary(id)) if id == DICTIONARY_ID + 1)
        );
    }

    /// The dictionary was trained on Stripe's object fixtures, not on these events: each still
    /// packs smaller with it than without, and comes back exactly.
    #[test]
    fn the_dictionary_shrinks_events_it_was_not_trained_on() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/stripe/events");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let payload = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            let packed = pack(&payload);
            let without = zstd::bulk::compress(payload.as_bytes(), LEVEL).unwrap();
            assert!(
                packed.len() < without.len(),
                "{} bytes with the dictionary, {} without",
                packed.len(),
                without.len()
            );
            assert_eq!(unpack(&packed).unwrap(), payload);
            seen += 1;
        }
        assert!(seen >= 10, "{seen} event fixtures");
    }
}
