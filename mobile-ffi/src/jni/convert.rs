//! The node's answers as Java objects: `api::Status` as a `NodeStatus`, `api::PeerInfo` as a
//! `Peer`, built here with one constructor call each (no JSON crosses into the JVM).

use super::classes::Classes;
use api::{PeerInfo, Status};
use jni::Env;
use jni::objects::{JObject, JObjectArray, JString, JValue};

fn string_or_null<'l>(env: &mut Env<'l>, s: Option<&str>) -> jni::errors::Result<JObject<'l>> {
    Ok(match s {
        Some(s) => env.new_string(s)?.into(),
        None => JObject::null(),
    })
}

fn strings<'l>(
    env: &mut Env<'l>,
    c: &Classes,
    items: &[String],
) -> jni::errors::Result<JObjectArray<'l>> {
    let array = env.new_object_array(items.len() as i32, &c.string, JObject::null())?;
    for (i, s) in items.iter().enumerate() {
        let js: JString = env.new_string(s)?;
        array.set_element(env, i, &js)?;
        env.delete_local_ref(js);
    }
    Ok(array)
}

/// Saturates: counters are u64, Java's long is signed.
fn long(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn int(v: usize) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

/// Every numeric leaf of `v` (objects only, not arrays), under its dotted path.
fn counters(prefix: &str, v: &serde_json::Value, out: &mut Vec<(String, i64)>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                counters(&path, v, out);
            }
        }
        serde_json::Value::Number(n) => {
            if let Some(x) = n.as_u64() {
                out.push((prefix.to_string(), long(x)));
            } else if let Some(x) = n.as_i64() {
                out.push((prefix.to_string(), x));
            }
        }
        _ => {}
    }
}

/// A `lan.planetary.NodeStatus`.
pub fn status<'l>(env: &mut Env<'l>, c: &Classes, st: &Status) -> jni::errors::Result<JObject<'l>> {
    let mut all = Vec::new();
    if let Ok(v) = serde_json::to_value(st) {
        counters("", &v, &mut all);
    }
    let names: Vec<String> = all.iter().map(|(k, _)| k.clone()).collect();
    let values: Vec<i64> = all.iter().map(|(_, v)| *v).collect();
    let n = &st.node;
    let public_key = env.new_string(&n.public_key)?;
    let address = env.new_string(&n.address)?;
    let subnet = env.new_string(&n.subnet)?;
    let listen = strings(env, c, &n.listen)?;
    let version = env.new_string(&n.version)?;
    let key_name = string_or_null(env, n.key_name.as_deref())?;
    let counter_names = strings(env, c, &names)?;
    let counter_values = env.new_long_array(values.len())?;
    counter_values.set_region(env, 0, &values)?;
    let args = [
        JValue::from(&public_key).as_jni(),
        JValue::from(&address).as_jni(),
        JValue::from(&subnet).as_jni(),
        JValue::from(&listen).as_jni(),
        JValue::Int(i32::from(n.mtu)).as_jni(),
        JValue::from(&version).as_jni(),
        JValue::from(&key_name).as_jni(),
        JValue::Long(long(st.uptime_secs)).as_jni(),
        JValue::Int(int(st.peers_up)).as_jni(),
        JValue::Int(int(st.peers_configured)).as_jni(),
        JValue::Long(long(st.dropped_from_network)).as_jni(),
        JValue::from(&counter_names).as_jni(),
        JValue::from(&counter_values).as_jni(),
    ];
    // SAFETY: status_new is NodeStatus's constructor with exactly these 13 parameter types
    // (see classes.rs), and the class is NodeStatus.
    unsafe { env.new_object_unchecked(&c.status, c.status_new, &args) }
}

/// A `lan.planetary.Peer`.
fn peer<'l>(env: &mut Env<'l>, c: &Classes, p: &PeerInfo) -> jni::errors::Result<JObject<'l>> {
    let public_key = string_or_null(env, p.public_key.as_deref())?;
    let address = string_or_null(env, p.address.as_deref())?;
    let state = env.new_string(&p.state)?;
    let uri = string_or_null(env, p.uri.as_deref())?;
    let endpoint = string_or_null(env, p.endpoint.as_deref())?;
    let cipher = string_or_null(env, p.cipher.as_deref())?;
    let last_error = string_or_null(env, p.last_error.as_deref())?;
    let origin = string_or_null(env, p.origin.as_deref())?;
    let transport = string_or_null(env, p.transport.as_deref())?;
    let paths = strings(env, c, &p.paths)?;
    let secs = |s: Option<u64>| s.map_or(-1, long);
    let args = [
        JValue::from(&public_key).as_jni(),
        JValue::from(&address).as_jni(),
        JValue::from(&state).as_jni(),
        JValue::from(&uri).as_jni(),
        JValue::from(&endpoint).as_jni(),
        JValue::Long(long(p.rx_bytes)).as_jni(),
        JValue::Long(long(p.tx_bytes)).as_jni(),
        JValue::Long(long(p.rx_packets)).as_jni(),
        JValue::Long(long(p.tx_packets)).as_jni(),
        JValue::Long(secs(p.up_secs)).as_jni(),
        JValue::Long(secs(p.last_handshake_secs)).as_jni(),
        JValue::from(&cipher).as_jni(),
        JValue::from(&last_error).as_jni(),
        JValue::from(&origin).as_jni(),
        JValue::from(&transport).as_jni(),
        JValue::from(&paths).as_jni(),
    ];
    // SAFETY: peer_new is Peer's constructor with exactly these 16 parameter types (see
    // classes.rs), and the class is Peer.
    unsafe { env.new_object_unchecked(&c.peer, c.peer_new, &args) }
}

/// A `lan.planetary.Peer[]`.
pub fn peers<'l>(
    env: &mut Env<'l>,
    c: &Classes,
    ps: &[PeerInfo],
) -> jni::errors::Result<JObject<'l>> {
    let array = env.new_object_array(int(ps.len()), &c.peer, JObject::null())?;
    for (i, p) in ps.iter().enumerate() {
        // A frame per peer: a node may have hundreds, each making a dozen local references.
        env.with_local_frame(24, |env| -> jni::errors::Result<()> {
            let obj = peer(env, c, p)?;
            array.set_element(env, i, &obj)
        })?;
    }
    Ok(array.into())
}
