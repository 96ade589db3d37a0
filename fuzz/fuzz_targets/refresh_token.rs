//! The refresh-token parser: anything that arrives is refused or parsed,
//! never a panic, and a token is accepted only exactly as it was minted.
#![no_main]
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use token_authority::domain::refresh_token::RefreshTokenCodec;
use uuid::Uuid;

fn codec() -> &'static RefreshTokenCodec {
    static CODEC: OnceLock<RefreshTokenCodec> = OnceLock::new();
    CODEC.get_or_init(|| RefreshTokenCodec::new(b"fuzzing secret"))
}

fuzz_target!(|data: &[u8]| {
    let codec = codec();
    // Arbitrary input: without the MAC key nothing can be accepted, except
    // a genuine token, which must then round-trip exactly.
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(token) = codec.parse(text) {
            assert_eq!(token.as_str(), text);
        }
    }

    // A genuine token with the fuzzer's edits (position, byte) applied:
    // accepted if and only if nothing changed. This also holds the base64
    // decoder to canonical encodings.
    let Ok(minted) = codec.mint(Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef)) else {
        return;
    };
    let original = minted.as_str().as_bytes();
    let mut edited = original.to_vec();
    for edit in data.chunks_exact(2) {
        let at = usize::from(edit[0]) % edited.len();
        edited[at] = edit[1];
    }
    if let Ok(text) = std::str::from_utf8(&edited) {
        let accepted = codec.parse(text);
        assert_eq!(accepted.is_ok(), edited == original, "edited token {text:?}");
        if let Ok(token) = accepted {
            let next = codec.successor(&token);
            let reparsed = codec.parse(next.as_str()).expect("successor parses");
            assert_eq!(reparsed.generation, token.generation + 1);
            assert_eq!(reparsed.session_id, token.session_id);
        }
    }
});
