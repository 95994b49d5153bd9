//! Every policy shown in `docs/POLICY.md` loads (its own tests pass), so the reference cannot
//! drift from the code. Placeholders `KEY_…` become valid keys.

use acl::Policy;

fn valid_keys() -> Vec<String> {
    (0u8..=255)
        .map(|i| std::iter::repeat_n(format!("{i:02x}"), 32).collect::<String>())
        .filter(|h| acl::parse::parse_key(h).is_ok())
        .collect()
}

#[test]
fn every_example_in_the_policy_reference_loads() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/POLICY.md");
    let doc = std::fs::read_to_string(path).expect("docs/POLICY.md");
    let keys = valid_keys();
    let mut blocks = 0;
    let mut rest = doc.as_str();
    while let Some(start) = rest.find("```toml\n") {
        let body = &rest[start + 8..];
        let end = body.find("```").expect("closed block");
        let mut text = body[..end].to_string();
        rest = &body[end + 3..];
        if text.contains("policy_file") {
            continue; // meshd.toml, not a policy
        }
        // KEY_NAME placeholders: one valid key per distinct name.
        let mut names: Vec<String> = Vec::new();
        let mut i = 0;
        while let Some(at) = text[i..].find("KEY_") {
            let s = i + at;
            let e = text[s..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .map_or(text.len(), |n| s + n);
            let name = text[s..e].to_string();
            if !names.contains(&name) {
                names.push(name.clone());
            }
            let k = &keys[names.iter().position(|n| *n == name).expect("known")];
            text.replace_range(s..e, k);
            i = s + k.len();
        }
        blocks += 1;
        if let Err(e) = Policy::load(&text, "POLICY.md example") {
            panic!("example {blocks} of docs/POLICY.md does not load:\n{e}\n---\n{text}");
        }
    }
    assert!(blocks >= 8, "found only {blocks} examples");
}
