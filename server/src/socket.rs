//! One client connection: TLS negotiation, the frame guard, and pgwire's message loop.
//!
//! This is pgwire's `process_socket` with one difference: the byte stream reaches
//! pgwire's codec through [`FrameGuard`], so a malformed message is answered with
//! `08P01` and the connection keeps serving, instead of panicking the connection's
//! task inside the decoder.

use std::io;
use std::time::Duration;

use futures::StreamExt;
use pgwire::api::{ClientInfo, PgWireConnectionState, PgWireServerHandlers};
use pgwire::error::{ErrorInfo, PgWireError};
use pgwire::messages::PgWireFrontendMessage;
use pgwire::tokio::server::{negotiate_tls, process_error, process_message};
use tokio::net::TcpStream;
use tokio_util::codec::{Framed, FramedParts};

use crate::frames::{FrameGuard, MALFORMED};

/// How long a client may take to finish its startup (PostgreSQL's
/// `authentication_timeout` defaults to one minute).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Serve one client connection until it ends.
pub async fn serve<H: PgWireServerHandlers>(tcp: TcpStream, handlers: H) -> io::Result<()> {
    let startup_timeout = tokio::time::sleep(STARTUP_TIMEOUT);
    tokio::pin!(startup_timeout);
    let negotiated = tokio::select! {
        _ = &mut startup_timeout => return Ok(()),
        s = negotiate_tls(tcp, None) => s?,
    };
    let Some(plain) = negotiated else {
        return Ok(());
    };
    let old = plain.into_parts();
    let mut parts = FramedParts::new(FrameGuard::new(old.io, old.read_buf), old.codec);
    parts.write_buf = old.write_buf;
    let mut socket = Framed::from_parts(parts);

    let startup = handlers.startup_handler();
    let simple = handlers.simple_query_handler();
    let extended = handlers.extended_query_handler();
    let copy = handlers.copy_handler();
    let cancel = handlers.cancel_handler();
    loop {
        let msg = if matches!(
            socket.state(),
            PgWireConnectionState::AwaitingStartup
                | PgWireConnectionState::AuthenticationInProgress
        ) {
            tokio::select! {
                _ = &mut startup_timeout => None,
                msg = socket.next() => msg,
            }
        } else {
            socket.next().await
        };
        let Some(Ok(msg)) = msg else {
            break;
        };
        // The client is leaving: close rather than wait for it to hang up.
        if matches!(msg, PgWireFrontendMessage::Terminate(_)) {
            break;
        }
        let is_extended_query = match socket.state() {
            PgWireConnectionState::CopyInProgress(extended) => extended,
            _ => msg.is_extended_query(),
        };
        let is_cancel_request = matches!(msg, PgWireFrontendMessage::CancelRequest(_));
        let result = process_message(
            msg,
            &mut socket,
            startup.clone(),
            simple.clone(),
            extended.clone(),
            copy.clone(),
            cancel.clone(),
        )
        .await;
        if let Err(e) = result {
            let e = malformed_as_protocol_violation(e);
            let fatal = e.is_fatal();
            process_error(&mut socket, e, is_extended_query).await?;
            if fatal {
                break;
            }
        }
        if is_cancel_request {
            break;
        }
    }
    Ok(())
}

/// The error for the stand-in of a malformed message: `08P01` with the reason.
fn malformed_as_protocol_violation(e: PgWireError) -> PgWireError {
    match e {
        PgWireError::StatementNotFound(name) if name.starts_with(MALFORMED) => {
            PgWireError::UserError(Box::new(ErrorInfo::new(
                "ERROR".into(),
                "08P01".into(),
                name[MALFORMED.len()..].to_string(),
            )))
        }
        other => other,
    }
}
