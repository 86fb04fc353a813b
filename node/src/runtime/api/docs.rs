//! The endpoint table in README.md, made from the types.

use super::*;

/// One row of the endpoint table in README.md.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointDoc {
    /// How it is sent.
    pub method: Method,
    /// Where it is served.
    pub path: &'static str,
    /// What the request carries.
    pub request: &'static str,
    /// What a 200 answer holds.
    pub answer: &'static str,
}

/// The row of a typed request: its method and path come from its type.
fn typed<R: Request>(request: &'static str, answer: &'static str) -> EndpointDoc {
    EndpointDoc {
        method: R::METHOD,
        path: R::PATH,
        request,
        answer,
    }
}

/// Every endpoint, typed requests first.
pub fn endpoints() -> Vec<EndpointDoc> {
    let get = |path, answer| EndpointDoc {
        method: Method::Get,
        path,
        request: "",
        answer,
    };
    vec![
        typed::<StatusRequest>(
            "",
            "`Status`: `id`, `role`, `primary`, `backups`, `clients`, `neighbors`, `links`, `records`, \
             `cached_locations`, `host_cache`, `pending_chats`, `stored_chats`, `mailbox_chats`, `mailbox_bytes`, \
             `counters`, `peer_id`, `listen_addrs`, \
             `dropped_frames`, `links_closed`, `links_lost`, `connections_refused`, `bad_bodies_relayed`, \
             `connected_peers`, `auto_role`, `reachability`, `promotions`, `demotions`, \
             `name`, `name_state` (claiming/held/taken by ID)",
        ),
        typed::<PeersRequest>(
            "",
            "`KnownPeers`: `clients`, `neighbors`, `links`, `host_cache`, `recent` (chat partners), `contacts`",
        ),
        typed::<HistoryRequest>(
            "query `[peer=ID][&limit=1-1000]`",
            "`HistoryPage`: `peer`, `messages` (newest `limit`, default 100, oldest first: `row`, `peer`, \
             `direction` in/out, `msg_id`, `body`, `at_ms`, `state` received/sent/delivered/failed/interrupted, \
             `reason`, `said_by` recipient/home_supernode/this_node, `hops`), `rows`, `evicted`, `limits`",
        ),
        typed::<ContactsRequest>(
            "",
            "`Contacts`: `{\"contacts\": [{\"id\", \"peer_id\", \"name\", \"first_seen_ms\", \
             \"last_heard_ms\", \"last_offline_ms\", \"presence\": online/offline/unknown, \
             \"name_conflict\"}]}`",
        ),
        typed::<WhoRequest>(
            "",
            "`Who`: `supernode` (the one asked; this node on a supernode), `listed`: the nodes attached \
             to it that chose to be listed (`--listed`), in id order: `[{\"id\", \"name\"}]`, `name` only \
             if the supernode checked it at the name's home supernodes, else null",
        ),
        typed::<SendRequest>(
            "`{\"to\": ID, prefix or NAME, \"text\"}`",
            "`SendReply`, after the outcome (at most the chat deadline + 5 s): `{\"to\", \"delivered\": true, \
             \"hops\", \"latency_ms\"}` or `{\"to\", \"delivered\": false, \"reason\"}`",
        ),
        typed::<TraceRequest>(
            "`{\"to\": ID}`",
            "`TraceReply`: `{\"to\", \"ok\": true, \"path\" (this node first), \"hops\", \"rtt_ms\"}` or \
             `{\"to\", \"ok\": false, \"reason\"}`",
        ),
        typed::<ResolveRequest>(
            "`{\"to\": ID, prefix or NAME}`",
            "`Resolution`: `id` (for a pinned name: the pinned key), `conflict` (another key the name \
             resolves to now, or null), `warning`",
        ),
        typed::<RepinRequest>(
            "`{\"name\": NAME}`",
            "`Repinned`: `name`, `id` (the key now pinned, or null if the name resolved to no other key)",
        ),
        typed::<PingRequest>(
            "`{\"to\": ID, \"count\": 1-100, \"interval_ms\": 100-10000}`",
            "`PingReply`: `to`, `sent`, `received`, `loss_pct`, `rtts_ms` (null if lost), `hops`, \
             `last_failure`, `stats` (`min_ms`, `p50_ms`, `p90_ms`, `max_ms`)",
        ),
        typed::<EventsRequest>(
            "query `since=CURSOR[&wait=S]`",
            "`Events`: `{\"next\": CURSOR, \"events\": [{\"cursor\", \"event\", ...}]}` after a long-poll of at \
             most 25 s (or `wait`); pass `next` back as `since`; the last 1024 events are kept (`attached`, \
             `detached`, `chat_received` with `from`, `msg_id`, `seq`, `body`, `hops`, `chat_delivered`, \
             `chat_failed`, `trace_completed`, `trace_failed`, `peer_misbehaved`, `name_claimed`, `name_taken`, \
             `name_resolved`)",
        ),
        get(
            STREAM_PATH,
            "server-sent events: `log` (a logged event as in `/events`) and `status` (as `/status`, at once, \
             after events and every 2 s)",
        ),
        get(METRICS_PATH, "Prometheus / OpenMetrics text"),
        get("/", "the web page (`/app.js`, `/style.css`; `/login?token=COOKIE` on TCP)"),
    ]
}

/// The endpoint and error tables of README.md ("Control API"), generated
/// from [`endpoints`] and [`ErrorCode`].
pub fn schema_markdown() -> String {
    let mut out = String::from("| request | body | answer |\n| --- | --- | --- |\n");
    for e in endpoints() {
        out += &format!(
            "| `{} {}` | {} | {} |\n",
            e.method.as_str(),
            e.path,
            e.request,
            e.answer
        );
    }
    out += "\n| code | status | when |\n| --- | --- | --- |\n";
    for c in ErrorCode::ALL {
        out += &format!("| `{}` | {} | {} |\n", c.name(), c.status(), c.meaning());
    }
    out
}
