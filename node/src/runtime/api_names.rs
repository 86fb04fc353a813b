//! The control API's name endpoints: `POST /resolve` (what a name, id or
//! prefix stands for, and whether a pinned name now resolves to another
//! key) and `POST /repin` (trust the other key). Re-exported by
//! [`super::api`], whose endpoint table lists them.

use serde::{Deserialize, Serialize};
use skyhop_protocol::NodeId;

use super::api::{Method, Request};

/// Where `POST /resolve` is served.
pub const RESOLVE_PATH: &str = "/resolve";
/// Where `POST /repin` is served.
pub const REPIN_PATH: &str = "/repin";

/// `POST /resolve`: what `to` stands for: an exact id, a name pinned to a
/// contact, a unique prefix of a known id, or a name looked up at its home
/// supernodes (pinned at this first contact).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolveRequest {
    /// A node id, a prefix of one, or a name.
    pub to: String,
}

impl Request for ResolveRequest {
    const METHOD: Method = Method::Post;
    const PATH: &'static str = RESOLVE_PATH;
    type Reply = Resolution;
}

/// The answer to `POST /resolve`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolution {
    /// The node id to use (the pinned one, for a pinned name).
    pub id: NodeId,
    /// Another key the name resolves to on the network now: the pin is
    /// still used, until `POST /repin`.
    pub conflict: Option<NodeId>,
    /// The warning to show a person when there is a conflict.
    pub warning: Option<String>,
}

impl Resolution {
    /// The answer for `text`, resolved to `id`, with a conflict if any.
    pub fn new(text: &str, id: NodeId, conflict: Option<NodeId>) -> Resolution {
        let warning = conflict.map(|other| {
            format!(
                "WARNING: '{text}' now resolves to key {}, not the key {} you pinned at first \
                 contact; still using the pinned key. If you trust the new key: /repin {text} \
                 (or `skyhop repin {text}`)",
                other.short(),
                id.short()
            )
        });
        Resolution {
            id,
            conflict,
            warning,
        }
    }
}

/// `POST /repin`: pin `name` to the other key it now resolves to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepinRequest {
    /// The name.
    pub name: String,
}

impl Request for RepinRequest {
    const METHOD: Method = Method::Post;
    const PATH: &'static str = REPIN_PATH;
    type Reply = Repinned;
}

/// The answer to `POST /repin`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Repinned {
    /// The name.
    pub name: String,
    /// The key now pinned; `None`: the name resolved to no other key, the
    /// pin is unchanged.
    pub id: Option<NodeId>,
}
