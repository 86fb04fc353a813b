//! Human text for the control API's answers: what `skyhop send | status |
//! trace` print and what the chat prompt shows.

use serde_json::Value;

pub(super) fn short(hex: &str) -> &str {
    hex.get(..8).unwrap_or(hex)
}

/// A human line for a `/send` answer, and whether it was delivered.
pub(super) fn describe_send(v: &Value) -> (bool, String) {
    if v.get("delivered").and_then(Value::as_bool) == Some(true) {
        let hops = v.get("hops").and_then(Value::as_u64).unwrap_or(0);
        let ms = v.get("latency_ms").and_then(Value::as_f64).unwrap_or(0.0);
        (true, format!("delivered ({hops} hops, {ms:.1} ms)"))
    } else {
        let reason = v
            .get("reason")
            .and_then(Value::as_str)
            .unwrap_or("unknown reason");
        (false, format!("failed: {reason}"))
    }
}

pub(super) fn describe_status(v: &Value) -> String {
    let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("-").to_string();
    let n = |k: &str| v.get(k).and_then(Value::as_array).map_or(0, Vec::len);
    let mut out = String::new();
    out += &format!("node id    {}\n", s("id"));
    out += &format!("peer id    {}\n", s("peer_id"));
    out += &format!("role       {}\n", s("role"));
    if let Some(p) = v.get("primary").and_then(Value::as_str) {
        out += &format!("primary    {}\n", short(p));
    }
    out += &format!(
        "links {}  neighbors {}  clients {}  backups {}\n",
        n("links"),
        n("neighbors"),
        n("clients"),
        n("backups")
    );
    out += &format!(
        "records {}  cached locations {}  host cache {}  pending chats {}\n",
        v.get("records").and_then(Value::as_u64).unwrap_or(0),
        v.get("cached_locations")
            .and_then(Value::as_u64)
            .unwrap_or(0),
        v.get("host_cache").and_then(Value::as_u64).unwrap_or(0),
        v.get("pending_chats").and_then(Value::as_u64).unwrap_or(0),
    );
    for a in v
        .get("listen_addrs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        out += &format!("listening  {}\n", a.as_str().unwrap_or(""));
    }
    out
}

/// The short forms of the ids in the JSON array `v[key]` (none if absent).
pub(super) fn short_ids<'a>(v: &'a Value, key: &str) -> Vec<&'a str> {
    v.get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(short)
        .collect()
}

pub(super) fn describe_trace(v: &Value) -> (bool, String) {
    if v.get("ok").and_then(Value::as_bool) == Some(true) {
        let path = short_ids(v, "path");
        let ms = v.get("rtt_ms").and_then(Value::as_f64).unwrap_or(0.0);
        (
            true,
            format!(
                "{} ({} hops, rtt {ms:.1} ms)",
                path.join(" > "),
                path.len().saturating_sub(1)
            ),
        )
    } else {
        let reason = v.get("reason").and_then(Value::as_str).unwrap_or("unknown");
        (false, format!("trace failed: {reason}"))
    }
}
