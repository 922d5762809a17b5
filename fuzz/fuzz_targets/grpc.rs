//! Fuzzes what a node does first with an agent's request: the protobuf
//! decoding of every request kind, and the validation of every fingerprint
//! set in it (`Submitted::from_wire`), whose bounds must hold for whatever
//! it accepts. Any panic or hang is a bug; bad sets come back as errors.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use starling_proto::{Submitted, v1};

fn check(set: &v1::FingerprintSet) {
    if let Ok(submitted) = Submitted::from_wire(set) {
        assert!(submitted.urls.len() <= set.urls.len());
        let _ = starling_proto::index_keys(&submitted);
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = v1::CheckRequest::decode(data) {
        request.messages.iter().for_each(check);
    }
    if let Ok(request) = v1::ReportRequest::decode(data) {
        request.reports.iter().filter_map(|r| r.fingerprints.as_ref()).for_each(check);
    }
    if let Ok(request) = v1::RevokeRequest::decode(data) {
        for revocation in &request.revocations {
            if let Some(set) = revocation.fingerprints.as_ref() {
                check(set);
            }
        }
    }
    let _ = v1::ChangesRequest::decode(data);
    let _ = v1::HelloRequest::decode(data);
    let _ = v1::ExplainRequest::decode(data).map(|r| r.fingerprints.as_ref().map(check));
});
