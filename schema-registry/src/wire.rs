//! The Confluent wire format of a record's value.

const MAGIC: u8 = 0;
const HEADER_BYTES: usize = 5;

/// Why a payload is not in the Confluent wire format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("record is {bytes} bytes, shorter than the 5-byte schema registry header")]
    TooShort { bytes: usize },
    #[error("record starts with byte {found:#04x}, not the schema registry's magic byte 0x00")]
    NoMagicByte { found: u8 },
}

/// `datum` framed with the schema id it was written with.
pub fn frame(schema_id: u32, datum: &[u8]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(HEADER_BYTES + datum.len());
    payload.push(MAGIC);
    payload.extend_from_slice(&schema_id.to_be_bytes());
    payload.extend_from_slice(datum);
    payload
}

/// The schema id and the datum of a framed payload.
pub fn unframe(payload: &[u8]) -> Result<(u32, &[u8]), FrameError> {
    let Some((header, datum)) = payload.split_at_checked(HEADER_BYTES) else {
        return Err(FrameError::TooShort {
            bytes: payload.len(),
        });
    };
    if header[0] != MAGIC {
        return Err(FrameError::NoMagicByte { found: header[0] });
    }
    let id = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
    Ok((id, datum))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_round_trips_and_bad_headers_are_named() {
        let payload = frame(258, b"datum");
        assert_eq!(&payload[..5], &[0, 0, 0, 1, 2]);
        assert_eq!(unframe(&payload), Ok((258, &b"datum"[..])));
        assert_eq!(unframe(&frame(7, b"")), Ok((7, &b""[..])));
        assert_eq!(unframe(b"\0\0\0"), Err(FrameError::TooShort { bytes: 3 }));
        assert_eq!(
            unframe(b"{\"id\":1}"),
            Err(FrameError::NoMagicByte { found: b'{' })
        );
    }
}
