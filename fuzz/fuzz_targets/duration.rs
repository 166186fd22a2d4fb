//! `parse_duration` on arbitrary text: no panic, and what it accepts is written back by
//! `format_duration` in a form that parses to the same duration.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nightshift_core::duration::{format_duration, parse_duration, parse_positive_duration};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let parsed = parse_duration(&text);
    let positive = parse_positive_duration(&text);
    if let Ok(d) = parsed {
        assert_eq!(positive.is_ok(), !d.is_zero());
        let written = format_duration(d);
        assert_eq!(
            parse_duration(&written),
            Ok(d),
            "{text:?} written as {written:?}"
        );
    } else {
        assert!(positive.is_err());
    }
});
