//! The wire limits of every message: [`LimitError`] and the `validate`
//! methods that check them after decoding.

use super::{Body, ChatMessage, KeptChat, Listed, LocationRecord, Message, NameClaim, PeerInfo};
use crate::limits::*;

/// A wire limit that a message breaks.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// A chat body longer than [`MAX_CHAT_BODY`].
    #[error("chat body is {0} bytes, the limit is {MAX_CHAT_BODY}")]
    ChatBodyTooLong(usize),
    /// A sealed chat longer than [`MAX_SEALED_CHAT`].
    #[error("sealed chat is {0} bytes, the limit is {MAX_SEALED_CHAT}")]
    SealedChatTooLong(usize),
    /// A routed body longer than [`MAX_ROUTED_BODY`].
    #[error("routed body is {0} bytes, the limit is {MAX_ROUTED_BODY}")]
    RoutedBodyTooLong(usize),
    /// A hop trace longer than [`MAX_TRACE_HOPS`].
    #[error("trace has {0} hops, the limit is {MAX_TRACE_HOPS}")]
    TraceTooLong(usize),
    /// More than [`MAX_ADDRS`] addresses.
    #[error("{0} addresses, the limit is {MAX_ADDRS}")]
    TooManyAddrs(usize),
    /// An address longer than [`MAX_ADDR_LEN`].
    #[error("address of {0} bytes, the limit is {MAX_ADDR_LEN}")]
    AddrTooLong(usize),
    /// An agent string longer than [`MAX_AGENT_LEN`].
    #[error("agent string of {0} bytes, the limit is {MAX_AGENT_LEN}")]
    AgentTooLong(usize),
    /// More than [`MAX_PEERS_PER_MESSAGE`] peers.
    #[error("{0} peers, the limit is {MAX_PEERS_PER_MESSAGE}")]
    TooManyPeers(usize),
    /// A datagram over [`MAX_DATAGRAM`].
    #[error("datagram of {0} bytes, the limit is {MAX_DATAGRAM}")]
    DatagramTooLong(usize),
    /// A record lifetime over [`MAX_RECORD_LIFETIME_S`].
    #[error("record lifetime of {0} s, the limit is {MAX_RECORD_LIFETIME_S}")]
    LifetimeTooLong(u32),
    /// A name claim lifetime over [`MAX_NAME_LIFETIME_S`].
    #[error("name claim lifetime of {0} s, the limit is {MAX_NAME_LIFETIME_S}")]
    NameLifetimeTooLong(u32),
    /// A name that is not one (see [`crate::name::check_name`]).
    #[error("{0}")]
    BadName(#[from] crate::name::NameError),
    /// A listing of more than [`MAX_LISTED`] nodes.
    #[error("{0} listed nodes, the limit is {MAX_LISTED}")]
    TooManyListed(usize),
    /// A location record naming more than [`MAX_RECORD_BACKUPS`] backups.
    #[error("{0} backup supernodes, the limit is {MAX_RECORD_BACKUPS}")]
    TooManyBackups(usize),
}

/// Checks that a chat's text is within [`MAX_CHAT_BODY`].
pub(crate) fn check_chat_text(chat: &ChatMessage) -> Result<(), LimitError> {
    if chat.body.len() > MAX_CHAT_BODY {
        return Err(LimitError::ChatBodyTooLong(chat.body.len()));
    }
    Ok(())
}

fn check_addrs(addrs: &[String]) -> Result<(), LimitError> {
    if addrs.len() > MAX_ADDRS {
        return Err(LimitError::TooManyAddrs(addrs.len()));
    }
    match addrs.iter().find(|a| a.len() > MAX_ADDR_LEN) {
        Some(a) => Err(LimitError::AddrTooLong(a.len())),
        None => Ok(()),
    }
}

fn check_peers(peers: &[PeerInfo]) -> Result<(), LimitError> {
    if peers.len() > MAX_PEERS_PER_MESSAGE {
        return Err(LimitError::TooManyPeers(peers.len()));
    }
    peers.iter().try_for_each(|p| check_addrs(&p.addrs))
}

impl LocationRecord {
    fn validate(&self) -> Result<(), LimitError> {
        check_addrs(&self.sn_addrs)?;
        if self.backups.len() > MAX_RECORD_BACKUPS {
            return Err(LimitError::TooManyBackups(self.backups.len()));
        }
        if self.lifetime_s > MAX_RECORD_LIFETIME_S {
            return Err(LimitError::LifetimeTooLong(self.lifetime_s));
        }
        Ok(())
    }
}

impl NameClaim {
    fn validate(&self) -> Result<(), LimitError> {
        crate::name::check_name(&self.name)?;
        if self.lifetime_s > MAX_NAME_LIFETIME_S {
            return Err(LimitError::NameLifetimeTooLong(self.lifetime_s));
        }
        Ok(())
    }
}

impl Body {
    /// Checks every limit of the body.
    pub fn validate(&self) -> Result<(), LimitError> {
        match self {
            Body::NameClaim { claim, .. }
            | Body::NameReply {
                claim: Some(claim), ..
            } => claim.validate(),
            Body::NameQuery { name, .. } | Body::NameReply { name, .. } => {
                Ok(crate::name::check_name(name)?)
            }
            Body::Chat(sealed)
            | Body::MailboxStore(KeptChat { sealed, .. })
            | Body::MailboxHandOver(KeptChat { sealed, .. })
                if sealed.0.len() > MAX_SEALED_CHAT =>
            {
                Err(LimitError::SealedChatTooLong(sealed.0.len()))
            }
            Body::TraceReply { path, .. } if path.len() > MAX_TRACE_HOPS => {
                Err(LimitError::TraceTooLong(path.len()))
            }
            Body::Publish(record) => record.validate(),
            Body::LocationReply {
                record: Some(record),
                ..
            } => record.validate(),
            Body::Datagram(bytes) if bytes.len() > MAX_DATAGRAM => {
                Err(LimitError::DatagramTooLong(bytes.len()))
            }
            _ => Ok(()),
        }
    }
}

impl Message {
    /// Checks every limit of the message (the frame size is the codec's).
    pub fn validate(&self) -> Result<(), LimitError> {
        match self {
            Message::Hello(h) => {
                check_addrs(&h.listen_addrs)?;
                if h.agent.len() > MAX_AGENT_LEN {
                    return Err(LimitError::AgentTooLong(h.agent.len()));
                }
                Ok(())
            }
            Message::Accept(a) => check_peers(&a.supernodes),
            Message::Redirect(r) => check_peers(&r.supernodes),
            Message::Neighbors(n) => check_peers(&n.peers),
            Message::Publish(record) => record.validate(),
            Message::DialBack(d) => check_addrs(&d.addrs),
            Message::Listed(Listed {
                claim: Some(claim), ..
            }) => claim.validate(),
            Message::Listing(l) => {
                if l.peers.len() > MAX_LISTED {
                    return Err(LimitError::TooManyListed(l.peers.len()));
                }
                l.peers
                    .iter()
                    .filter_map(|p| p.name.as_deref())
                    .try_for_each(|n| Ok(crate::name::check_name(n)?))
            }
            Message::Routed(p) => {
                if let Some(trace) = &p.trace {
                    if trace.0.len() > MAX_TRACE_HOPS {
                        return Err(LimitError::TraceTooLong(trace.0.len()));
                    }
                }
                p.body.validate()
            }
            Message::Join(_)
            | Message::Leave(_)
            | Message::Heartbeat(_)
            | Message::HeartbeatAck(_)
            | Message::FindNeighbors(_)
            | Message::StaleLocation(_)
            | Message::DialBackResult(_)
            | Message::Listed(_)
            | Message::WhoQuery(_) => Ok(()),
        }
    }
}
