//! The control API's listing endpoint: `GET /who`, who is attached to this
//! node's supernode and chose to be listed (`--listed`), by the name the
//! supernode checked at the name's home supernodes, else by id.
//! Re-exported by [`super::api`], whose endpoint table lists it.

use serde::{Deserialize, Serialize};
use skyhop_protocol::{ListedPeer, NodeId};

use super::api::{Method, Request};

/// Where `GET /who` is served.
pub const WHO_PATH: &str = "/who";

/// `GET /who`: the nodes listed at this node's supernode.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct WhoRequest;

impl Request for WhoRequest {
    const METHOD: Method = Method::Get;
    const PATH: &'static str = WHO_PATH;
    type Reply = Who;
}

/// The answer to `GET /who`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Who {
    /// The supernode asked (this node itself, on a supernode).
    pub supernode: NodeId,
    /// The listed nodes, in id order.
    pub listed: Vec<ListedNode>,
}

/// One listed node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedNode {
    /// Its id.
    pub id: NodeId,
    /// Its name, if the supernode checked that the name's home supernodes
    /// hold this node's claim to it; else `null`, and the id is all there
    /// is.
    pub name: Option<String>,
}

impl From<ListedPeer> for ListedNode {
    fn from(p: ListedPeer) -> ListedNode {
        ListedNode {
            id: p.node,
            name: p.name,
        }
    }
}

impl ListedNode {
    /// How a person reads it: the name, or the id's short form.
    pub fn label(&self) -> String {
        match &self.name {
            Some(name) => format!("{name} ({})", self.id.short()),
            None => format!("{} (no checked name)", self.id.short()),
        }
    }
}
