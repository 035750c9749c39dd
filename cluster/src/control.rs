//! Control requests: how nodes admit each other and how the `tessera` command (and
//! the tests) talk to a node's RPC port.
//!
//! ```text
//!   connection = 'C', one frame (ControlRequest), one frame back (ControlResponse)
//! ```
//!
//! Both are typed and encoded with serde's derive and postcard, like KV messages. A
//! request that does not decode is answered with [`ControlResponse::Refused`].

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::frame::{encode_frame, read_frame};

/// The byte that opens a control connection.
pub(crate) const CONTROL_STREAM: u8 = b'C';
/// Largest control request or answer, in bytes.
pub(crate) const MAX_CONTROL: usize = 1 << 20;

/// A request to a node's control service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControlRequest {
    /// Start a new cluster on a node that has not joined one (`tessera init`).
    Init,
    /// Admit the node whose RPC port is `addr` (answered by the leaseholder).
    Join { addr: SocketAddr },
    /// This node's id and the leaseholder it knows.
    Status,
}

/// A node's answer to a [`ControlRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControlResponse {
    /// `Init` accepted: the node starts a cluster.
    Initialising,
    /// `Join` accepted: the new node's id and every member's RPC address.
    Joined {
        id: u64,
        members: Vec<(u64, SocketAddr)>,
    },
    /// The answer to `Status`.
    Status { node: u64, leaseholder: Option<u64> },
    /// The request was refused; why.
    Refused(String),
}

/// Send `request` to the node whose RPC port is `addr` and wait for its answer.
pub fn control_call(
    addr: SocketAddr,
    request: &ControlRequest,
    timeout: Duration,
) -> std::io::Result<ControlResponse> {
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let body = postcard::to_stdvec(request).map_err(std::io::Error::other)?;
    let mut msg = vec![CONTROL_STREAM];
    msg.extend_from_slice(&encode_frame(&body)?);
    s.write_all(&msg)?;
    decode(&read_frame(&mut s, MAX_CONTROL)?)
        .ok_or_else(|| std::io::Error::other("malformed control answer"))
}

/// Decode one complete control message (`None`: malformed).
pub(crate) fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    match postcard::take_from_bytes(bytes) {
        Ok((m, [])) => Some(m),
        _ => None,
    }
}

/// Encode a control message.
pub(crate) fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    postcard::to_stdvec(message).expect("control messages always encode")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_messages_round_trip_and_garbage_is_refused() {
        let join = ControlRequest::Join {
            addr: "127.0.0.2:7000".parse().unwrap(),
        };
        assert_eq!(decode::<ControlRequest>(&encode(&join)), Some(join));
        let joined = ControlResponse::Joined {
            id: 4,
            members: vec![(1, "127.0.0.1:7000".parse().unwrap())],
        };
        assert_eq!(decode::<ControlResponse>(&encode(&joined)), Some(joined));
        assert_eq!(decode::<ControlRequest>(b"JOIN 127.0.0.1:1"), None);
        let mut longer = encode(&ControlRequest::Status);
        longer.push(1);
        assert_eq!(decode::<ControlRequest>(&longer), None);
    }
}
