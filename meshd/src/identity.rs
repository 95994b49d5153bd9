//! The node identity: one ed25519 key, from which everything else follows.
//!
//! * The **ed25519 signing key** is the identity. Its public half, written as 64 hex digits, is
//!   the node's *public key* everywhere (config pins, `meshctl`, logs).
//! * The **Noise static key** (X25519) is *derived* from it, not stored: the X25519 secret is the
//!   clamped scalar of the ed25519 key (the first half of SHA-512 of the seed) and the X25519
//!   public key is the Montgomery form of the ed25519 public key. A peer sends its ed25519 public
//!   key inside the encrypted handshake; the receiver converts it and compares it with the static
//!   key Noise authenticated. Completing the handshake therefore proves possession of the ed25519
//!   key's scalar, with nothing extra on the wire and no second key to lose.
//! * The **overlay addresses** are derived from the public key ([`routing::address`]).
//!
//! The key is stored as a PKCS#8 PEM file with mode 0600. `meshd` refuses to start if the file
//! is corrupt or readable by group or others, and says how to fix it.

use anyhow::{Context, bail};
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, spki::der::pem::LineEnding};
use ed25519_dalek::{SigningKey, VerifyingKey};
use routing::address;
use std::fmt;
use std::io::Write;
use std::net::Ipv6Addr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::str::FromStr;
use zeroize::Zeroizing;

/// A node's public key: an ed25519 public key, shown as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PublicKey(pub [u8; 32]);

/// All 32 bytes as four words: the maps of peers, sessions and flows look a key up for
/// every packet, and a byte slice's hash (a length, then a loop for long input) cost about
/// 4% of a node's instructions. Every byte still goes into the (seeded) hasher, so keys an
/// attacker makes up collide no more than before. `#[inline]`: without it the compiler
/// stopped inlining the look-ups once the link's frame handling grew (about 300 more
/// instructions per packet at every node, `bench/callgrind.sh`).
impl std::hash::Hash for PublicKey {
    #[inline]
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        for word in self.0.chunks_exact(8) {
            let mut w = [0u8; 8];
            w.copy_from_slice(word);
            state.write_u64(u64::from_ne_bytes(w));
        }
    }
}

impl PublicKey {
    /// The node address this key owns.
    pub fn address(&self) -> Ipv6Addr {
        address::node_address(&self.0)
    }

    /// The first address of the /64 subnet this key owns.
    pub fn subnet(&self) -> Ipv6Addr {
        address::node_subnet(&self.0)
    }

    /// The X25519 public key Noise sees for this identity, or `None` if the bytes are not a
    /// usable ed25519 key. Refused: encodings that are not points, non-canonical encodings, and
    /// *weak* (small-order) points. A small-order key converts to an X25519 key whose every
    /// Diffie-Hellman result is zero, so anybody could complete a handshake as it without a
    /// secret; no honestly generated key is weak.
    pub fn noise_static(&self) -> Option<[u8; 32]> {
        let vk = VerifyingKey::from_bytes(&self.0).ok()?;
        if vk.is_weak() || vk.to_bytes() != self.0 {
            return None;
        }
        let x = vk.to_montgomery().to_bytes();
        (x != [0; 32]).then_some(x)
    }

    /// Short form for logs: the first 8 hex digits.
    pub fn short(&self) -> String {
        self.to_string()[..8].to_string()
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.short())
    }
}

/// Why a public key string was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyParseError {
    /// Not 64 characters.
    #[error("a public key is 64 hex digits, this one has {0} characters")]
    Length(usize),
    /// A character outside `0-9a-fA-F`.
    #[error("a public key is 64 hex digits, found {0:?}")]
    NotHex(char),
    /// 32 bytes, but not a usable point (not on the curve, small order, non-canonical).
    #[error("not a valid ed25519 public key")]
    NotAPoint,
}

impl FromStr for PublicKey {
    type Err = KeyParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 64 {
            return Err(KeyParseError::Length(s.chars().count()));
        }
        let mut out = [0u8; 32];
        let bytes = s.as_bytes();
        for (i, o) in out.iter_mut().enumerate() {
            let hi = hex_val(bytes[2 * i])?;
            let lo = hex_val(bytes[2 * i + 1])?;
            *o = hi << 4 | lo;
        }
        let key = PublicKey(out);
        key.noise_static().ok_or(KeyParseError::NotAPoint)?;
        Ok(key)
    }
}

fn hex_val(c: u8) -> Result<u8, KeyParseError> {
    match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        b'A'..=b'F' => Ok(c - b'A' + 10),
        _ => Err(KeyParseError::NotHex(c as char)),
    }
}

/// The node's secret identity.
pub struct Identity {
    signing: SigningKey,
    public: PublicKey,
}

impl Identity {
    /// Makes a new identity from the operating system's random number generator.
    pub fn generate() -> anyhow::Result<Self> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).context("the operating system gave no random bytes")?;
        Ok(Self::from_seed(&seed))
    }

    /// The identity with this 32-byte ed25519 seed (tests and key import).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        let signing = SigningKey::from_bytes(seed);
        let public = PublicKey(signing.verifying_key().to_bytes());
        Identity { signing, public }
    }

    /// The signing key (for announcements this node signs itself).
    pub(crate) fn signing_key(&self) -> &SigningKey {
        &self.signing
    }

    /// The public key.
    pub fn public_key(&self) -> PublicKey {
        self.public
    }

    /// The node address.
    pub fn address(&self) -> Ipv6Addr {
        self.public.address()
    }

    /// The ed25519 secret seed (the routing core signs with it).
    pub fn secret_seed(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.signing.to_bytes())
    }

    /// The X25519 private key Noise uses (derived, see the module doc).
    pub fn noise_private(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.signing.to_scalar_bytes())
    }

    /// Loads the identity from `path`, or creates it (mode 0600, parent directories 0700) if the
    /// file does not exist. Returns the identity and whether it was created.
    pub fn load_or_create(path: &Path) -> anyhow::Result<(Self, bool)> {
        match std::fs::symlink_metadata(path) {
            Ok(_) => Ok((Self::load(path)?, false)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let id = Self::generate()?;
                id.save_new(path)?;
                Ok((id, true))
            }
            Err(e) => {
                Err(e).with_context(|| format!("cannot read identity file {}", path.display()))
            }
        }
    }

    /// Loads an existing identity file, checking its permissions first.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let meta = std::fs::metadata(path)
            .with_context(|| format!("cannot read identity file {}", path.display()))?;
        if !meta.is_file() {
            bail!("identity file {} is not a regular file", path.display());
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            bail!(
                "identity file {} is readable by group or others (mode {mode:04o}); \
                 the key must stay secret: run `chmod 600 {}`",
                path.display(),
                path.display()
            );
        }
        let text = Zeroizing::new(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read identity file {}", path.display()))?,
        );
        let signing = SigningKey::from_pkcs8_pem(&text).map_err(|e| {
            anyhow::anyhow!(
                "identity file {} is corrupt (expected a PKCS#8 PEM ed25519 private key: {e}); \
                 restore it from a backup, or move it away to create a new identity \
                 (which gives this node a new address)",
                path.display()
            )
        })?;
        let public = PublicKey(signing.verifying_key().to_bytes());
        Ok(Identity { signing, public })
    }

    /// Writes the identity to a new file at `path`, never overwriting an existing one.
    pub fn save_new(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .with_context(|| format!("cannot create directory {}", dir.display()))?;
        }
        let pem = self
            .signing
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| anyhow::anyhow!("cannot encode the identity: {e}"))?;
        let tmp = path.with_extension("tmp");
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("cannot create identity file {}", tmp.display()))?;
        f.write_all(pem.as_bytes())
            .and_then(|_| f.sync_all())
            .with_context(|| format!("cannot write identity file {}", tmp.display()))?;
        drop(f);
        // A hard link fails if `path` appeared meanwhile: never replace an existing identity.
        let linked = std::fs::hard_link(&tmp, path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(e).with_context(|| format!("cannot create identity file {}", path.display()))
            }
            // Some sandboxes (Android's SELinux policy for apps) forbid link(2): create the
            // file exclusively instead. A crash mid-write leaves a short file, which `load`
            // refuses with its path rather than silently replacing the key.
            Err(_) => {
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .with_context(|| format!("cannot create identity file {}", path.display()))?;
                let written = f.write_all(pem.as_bytes()).and_then(|_| f.sync_all());
                if let Err(e) = written {
                    let _ = std::fs::remove_file(path);
                    return Err(e)
                        .with_context(|| format!("cannot write identity file {}", path.display()));
                }
                Ok(())
            }
        }
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("meshd-id-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn derived_noise_key_matches_the_public_key() {
        let id = Identity::from_seed(&[9; 32]);
        let secret = x25519_dalek::StaticSecret::from(*id.noise_private());
        let public = x25519_dalek::PublicKey::from(&secret);
        assert_eq!(Some(public.to_bytes()), id.public_key().noise_static());
    }

    #[test]
    fn create_then_load_keeps_the_address() {
        let d = tmpdir("roundtrip");
        let p = d.join("sub/identity.key");
        let (a, created) = Identity::load_or_create(&p).expect("create");
        assert!(created);
        let mode = std::fs::metadata(&p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (b, created) = Identity::load_or_create(&p).expect("load");
        assert!(!created);
        assert_eq!(a.public_key(), b.public_key());
        assert_eq!(a.address(), b.address());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn refuses_open_permissions_and_corrupt_files() {
        let d = tmpdir("refuse");
        let p = d.join("identity.key");
        Identity::load_or_create(&p).expect("create");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let e = Identity::load(&p).expect_err("must refuse").to_string();
        assert!(e.contains("chmod 600"), "{e}");
        std::fs::write(&p, "garbage").expect("write");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let e = format!("{:#}", Identity::load(&p).expect_err("must refuse"));
        assert!(e.contains("corrupt"), "{e}");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn weak_and_non_canonical_keys_are_refused() {
        // The identity point (01 00..00) and another small-order point: every DH with their
        // X25519 form is zero, so they must never be accepted as anybody's key.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(PublicKey(identity).noise_static(), None);
        let mut minus_one = [0u8; 32];
        minus_one[0] = 0xec;
        minus_one[1..31].fill(0xff);
        minus_one[31] = 0x7f;
        assert_eq!(PublicKey(minus_one).noise_static(), None);
        let text: String = identity.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(text.parse::<PublicKey>(), Err(KeyParseError::NotAPoint));
        // Honest keys are fine.
        assert!(
            Identity::from_seed(&[4; 32])
                .public_key()
                .noise_static()
                .is_some()
        );
    }

    #[test]
    fn public_key_text_roundtrip_and_errors() {
        let k = Identity::from_seed(&[1; 32]).public_key();
        assert_eq!(k.to_string().parse::<PublicKey>(), Ok(k));
        assert_eq!("ab".parse::<PublicKey>(), Err(KeyParseError::Length(2)));
        let bad = "g".repeat(64);
        assert_eq!(bad.parse::<PublicKey>(), Err(KeyParseError::NotHex('g')));
    }
}
