//! Any text as a circle policy file: rejected with located problems or loaded, never a panic;
//! a loaded policy answers every question and explains every answer.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match acl::Policy::load(text, "fuzz.toml") {
        Err(e) => assert!(!e.problems.is_empty()),
        Ok(p) => {
            let key = [7u8; 32];
            for a in acl::Action::ALL {
                for proto in acl::Proto::ALL {
                    let v = p.decide(&key, a, proto, 22);
                    let e = p.explain(&acl::Who::Key(key), a, Some((proto, 22)));
                    assert_eq!(v, e.verdict, "tables and rules disagree");
                }
            }
        }
    }
});
