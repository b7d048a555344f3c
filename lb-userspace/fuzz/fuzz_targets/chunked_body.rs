//! Arbitrary bytes as a chunked body, fed whole and then split at fuzzer-chosen points:
//! both must give the same payload, the same consumed count and the same verdict, and the
//! re-encoded payload must decode back to itself.
#![no_main]

use lb_userspace::http::{CHUNK_HEADER_RESERVE, ChunkedDecoder, encode_chunk_header};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (Vec<u8>, Vec<u16>)| {
    let (data, cuts) = input;
    let mut whole_out = Vec::new();
    let whole = ChunkedDecoder::new().decode(&data, &mut whole_out);

    let mut split = ChunkedDecoder::new();
    let mut split_out = Vec::new();
    let mut consumed = 0usize;
    let mut pos = 0usize;
    let mut points: Vec<usize> = cuts.iter().map(|&c| c as usize % (data.len() + 1)).collect();
    points.push(data.len());
    points.sort_unstable();
    let mut split_result = Ok(false);
    for p in points {
        if p < pos {
            continue;
        }
        match split.decode(&data[pos..p], &mut split_out) {
            Ok(progress) => {
                consumed += progress.consumed;
                if progress.done {
                    split_result = Ok(true);
                    break;
                }
            }
            Err(e) => {
                split_result = Err(e);
                break;
            }
        }
        pos = p;
    }
    match (whole, split_result) {
        (Ok(w), Ok(done)) => {
            assert_eq!(w.done, done);
            assert_eq!(whole_out, split_out);
            if w.done {
                assert_eq!(w.consumed, consumed);
            }
        }
        (Err(a), Err(b)) => assert_eq!(a, b),
        (a, b) => panic!("whole {a:?} vs split {b:?}"),
    }
    if !whole_out.is_empty() {
        let mut framed = vec![0u8; CHUNK_HEADER_RESERVE];
        framed.extend_from_slice(&whole_out);
        let start = encode_chunk_header(&mut framed);
        framed.extend_from_slice(b"0\r\n\r\n");
        let mut again = Vec::new();
        let p = ChunkedDecoder::new().decode(&framed[start..], &mut again).unwrap();
        assert!(p.done);
        assert_eq!(again, whole_out);
    }
});
