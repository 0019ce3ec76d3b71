//! Gateway batches as ingest decodes them: the batch header, then each reading
//! on its own with the tagged decoder. Properties: no panic; batch and readings
//! survive encode → decode; a tagged reading decodes to the same value through
//! the decoder of its kind (the fast path ingest takes for gateway-written readings).
#![no_main]
use gridwatch_fuzz::host_round_trip;
use gridwatch_protocol::batch::{Batch, Reading};
use gridwatch_protocol::codec::json;
use gridwatch_protocol::{MAX_BATCH_BYTES, MAX_MESSAGE_BYTES};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(batch) = json::decode::<Batch>(data, MAX_BATCH_BYTES) else {
        return;
    };
    let encoded = json::encode(&batch);
    let again: Batch = json::decode(&encoded, usize::MAX).expect("a re-encoded batch decodes");
    assert_eq!(
        (&again.gateway, again.batch, again.v),
        (&batch.gateway, batch.batch, batch.v)
    );
    let raw = |b: &Batch| b.readings.iter().map(|r| r.get().to_owned()).collect::<Vec<_>>();
    assert_eq!(raw(&again), raw(&batch));
    for reading in &batch.readings {
        let bytes = reading.get().as_bytes();
        let Some(tagged) = host_round_trip::<Reading>(bytes, MAX_MESSAGE_BYTES + 32) else {
            continue;
        };
        if bytes.len() <= MAX_MESSAGE_BYTES {
            let by_kind = Reading::decode(tagged.kind(), bytes).expect("a tagged reading decodes as its kind");
            assert_eq!(by_kind, tagged);
        }
    }
});
