//! The pgwire handlers of one client connection.
//!
//! Each socket gets its own [`Connection`], which owns one query-layer `Session`. The
//! simple protocol is handled whole here (so the ReadyForQuery status is the session's
//! exact transaction state); the extended protocol uses pgwire's portal machinery
//! (row limits, PortalSuspended, skipping to Sync after an error) with statements
//! parsed and described by the session.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use futures::{stream, Sink, SinkExt};
use pgwire::api::auth::{
    finish_authentication, protocol_negotiation, save_startup_parameters_to_metadata,
};
use pgwire::api::auth::{ServerParameterProvider, StartupHandler};
use pgwire::api::cancel::CancelHandler;
use pgwire::api::copy::CopyHandler;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{
    send_query_response, send_ready_for_query, ExtendedQueryHandler, SimpleQueryHandler,
};
use pgwire::api::results::{CopyResponse, FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::{Entry, PortalStore};
use pgwire::api::{
    ClientInfo, ClientPortalStore, PgWireConnectionState, PgWireServerHandlers, Type,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::cancel::CancelRequest;
use pgwire::messages::copy::{CopyData, CopyDone, CopyFail, CopyInResponse, CopyOutResponse};
use pgwire::messages::data::{NoData, ParameterDescription};
use pgwire::messages::extendedquery::Describe;
use pgwire::messages::response::{EmptyQueryResponse, TransactionStatus};
use pgwire::messages::simplequery::Query;
use pgwire::messages::startup::SecretKey;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use tessera_query::arrow::datatypes::SchemaRef;
use tessera_query::{Error, Output, QueryNode, Session, SqlState, TxnState};
use tokio::sync::Mutex;

use crate::encode;

/// Makes one [`Connection`] per accepted socket.
pub struct ConnectionFactory {
    node: Arc<QueryNode>,
    cancels: Arc<Cancels>,
}

impl ConnectionFactory {
    /// A factory for connections to `node`.
    pub fn new(node: Arc<QueryNode>) -> Self {
        ConnectionFactory {
            node,
            cancels: Arc::default(),
        }
    }

    /// Handlers for a new connection.
    pub fn connection(&self) -> Arc<Connection> {
        let session = Session::new(self.node.clone());
        let cancel = Arc::new(CancelSlot {
            interrupt: session.interrupt_flag(),
            ..CancelSlot::default()
        });
        let session = Arc::new(Mutex::new(session));
        Arc::new(Connection {
            session: session.clone(),
            parser: Arc::new(StatementParser { session }),
            cancels: self.cancels.clone(),
            cancel,
        })
    }
}

/// What a connection's running statement listens to for a CancelRequest.
#[derive(Default)]
struct CancelSlot {
    /// The process id and secret the client was given (set at startup).
    key: std::sync::Mutex<Option<(i32, SecretKey)>>,
    notify: tokio::sync::Notify,
    /// Stops a wait inside the statement (for an advisory lock).
    interrupt: Arc<std::sync::atomic::AtomicBool>,
}

/// The connections of this node that a CancelRequest can reach, by process id.
#[derive(Default)]
pub struct Cancels {
    by_pid: std::sync::Mutex<HashMap<i32, std::sync::Weak<CancelSlot>>>,
}

/// The handlers of one connection.
pub struct Connection {
    session: Arc<Mutex<Session>>,
    parser: Arc<StatementParser>,
    cancels: Arc<Cancels>,
    cancel: Arc<CancelSlot>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        if let Some((pid, _)) = self.cancel.key.lock().expect("cancel key").as_ref() {
            self.cancels.by_pid.lock().expect("cancels").remove(pid);
        }
    }
}

/// Cancels the statement running on the connection a CancelRequest names, when its
/// secret matches; otherwise does nothing, as PostgreSQL does.
struct CancelRequests {
    cancels: Arc<Cancels>,
}

#[async_trait]
impl CancelHandler for CancelRequests {
    async fn on_cancel_request(&self, request: CancelRequest) {
        let slot = self
            .cancels
            .by_pid
            .lock()
            .expect("cancels")
            .get(&request.pid)
            .and_then(|w| w.upgrade());
        if let Some(slot) = slot {
            let matches = slot
                .key
                .lock()
                .expect("cancel key")
                .as_ref()
                .is_some_and(|(_, secret)| secret.eq_value(&request.secret_key));
            if matches {
                tracing::info!(pid = request.pid, "cancelling the running statement");
                slot.interrupt
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                slot.notify.notify_waiters();
            }
        }
    }
}

fn cancelled() -> Error {
    Error::new(
        SqlState::QueryCanceled,
        "canceling statement due to user request",
    )
}

impl PgWireServerHandlers for Connection {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        Arc::new(SimpleHandler {
            session: self.session.clone(),
            cancel: self.cancel.clone(),
        })
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        Arc::new(ExtendedHandler {
            session: self.session.clone(),
            parser: self.parser.clone(),
            cancel: self.cancel.clone(),
        })
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        Arc::new(Startup {
            cancels: self.cancels.clone(),
            cancel: self.cancel.clone(),
        })
    }

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        Arc::new(CancelRequests {
            cancels: self.cancels.clone(),
        })
    }

    fn copy_handler(&self) -> Arc<impl CopyHandler> {
        Arc::new(CopyIn {
            session: self.session.clone(),
        })
    }
}

/// The ParameterStatus set of PostgreSQL 15.
struct Parameters;

impl ServerParameterProvider for Parameters {
    fn server_parameters<C: ClientInfo>(&self, client: &C) -> Option<HashMap<String, String>> {
        let meta = client.metadata();
        let mut p = HashMap::new();
        for (k, v) in [
            ("server_version", tessera_query::SERVER_VERSION),
            ("server_encoding", "UTF8"),
            ("client_encoding", "UTF8"),
            ("DateStyle", "ISO, MDY"),
            ("TimeZone", "UTC"),
            ("IntervalStyle", "postgres"),
            ("integer_datetimes", "on"),
            ("standard_conforming_strings", "on"),
            ("default_transaction_read_only", "off"),
            ("in_hot_standby", "off"),
            ("is_superuser", "on"),
        ] {
            p.insert(k.to_string(), v.to_string());
        }
        p.insert(
            "application_name".into(),
            meta.get("application_name").cloned().unwrap_or_default(),
        );
        p.insert(
            "session_authorization".into(),
            meta.get("user").cloned().unwrap_or_else(|| "root".into()),
        );
        Some(p)
    }
}

/// Trust authentication: any user name is accepted. The process id and secret handed
/// to the client make its connection reachable by a CancelRequest.
struct Startup {
    cancels: Arc<Cancels>,
    cancel: Arc<CancelSlot>,
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if let PgWireFrontendMessage::Startup(ref startup) = message {
            protocol_negotiation(client, startup).await?;
            save_startup_parameters_to_metadata(client, startup);
            let mut pid = (rand_u32() & 0x7fff_ffff) as i32;
            {
                let mut by_pid = self.cancels.by_pid.lock().expect("cancels");
                while pid == 0 || by_pid.contains_key(&pid) {
                    pid = (rand_u32() & 0x7fff_ffff) as i32;
                }
                by_pid.insert(pid, Arc::downgrade(&self.cancel));
            }
            let secret = SecretKey::I32(rand_u32() as i32);
            *self.cancel.key.lock().expect("cancel key") = Some((pid, secret.clone()));
            client.set_pid_and_secret_key(pid, secret);
            finish_authentication(client, &Parameters).await?;
        }
        Ok(())
    }
}

fn rand_u32() -> u32 {
    let b = *uuid::Uuid::new_v4().as_bytes();
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// A query-layer error as a protocol error.
pub fn error_info(e: &Error) -> ErrorInfo {
    let mut info = ErrorInfo::new("ERROR".into(), e.state.code().into(), e.message.clone());
    info.detail = e.extra.detail.clone();
    info.hint = e.extra.hint.clone();
    info.table = e.extra.table.clone();
    info.column = e.extra.column.clone();
    info.constraint = e.extra.constraint.clone();
    info
}

/// Tell the session who the client is, once: startup parameters and process id.
fn know_client<C: ClientInfo>(session: &mut Session, client: &C) {
    if !session.knows_client() {
        session.set_client(client.metadata());
        session.set_backend_pid(client.pid_and_secret_key().0);
    }
}

fn notice(msg: String) -> PgWireBackendMessage {
    PgWireBackendMessage::NoticeResponse(
        ErrorInfo::new("NOTICE".into(), "00000".into(), msg).into(),
    )
}

fn wire_status(s: TxnState) -> TransactionStatus {
    match s {
        TxnState::Idle => TransactionStatus::Idle,
        TxnState::Open => TransactionStatus::Transaction,
        TxnState::Failed => TransactionStatus::Error,
    }
}

/// The tag prefix pgwire completes with the row count (`SELECT` + ` 3`).
fn tag_prefix(tag: &str) -> String {
    match tag.rsplit_once(' ') {
        Some((head, n)) if n.chars().all(|c| c.is_ascii_digit()) => head.to_string(),
        _ => tag.to_string(),
    }
}

fn query_response(
    schema: &SchemaRef,
    batches: &[tessera_query::arrow::array::RecordBatch],
    tag: &str,
    format: &Format,
) -> QueryResponse {
    let fields: Arc<Vec<FieldInfo>> = Arc::new(encode::fields(schema, format));
    let rows = encode::rows(fields.clone(), schema, batches);
    let mut resp = QueryResponse::new(fields, stream::iter(rows));
    resp.set_command_tag(&tag_prefix(tag));
    resp
}

struct SimpleHandler {
    session: Arc<Mutex<Session>>,
    cancel: Arc<CancelSlot>,
}

#[async_trait]
impl SimpleQueryHandler for SimpleHandler {
    async fn on_query<C>(&self, client: &mut C, query: Query) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if !matches!(client.state(), PgWireConnectionState::ReadyForQuery) {
            return Err(PgWireError::NotReadyForQuery);
        }
        client.set_state(PgWireConnectionState::QueryInProgress);
        let mut session = self.session.lock().await;
        know_client(&mut session, client);
        let results = tokio::select! {
            r = session.execute_sql(&query.query) => r,
            _ = self.cancel.notify.notified() => {
                session.abandon_statement();
                vec![Err(cancelled())]
            }
        };
        for r in results {
            for n in session.take_notices() {
                client.feed(notice(n)).await?;
            }
            match r {
                Ok(Output::Empty) => {
                    client
                        .feed(PgWireBackendMessage::EmptyQueryResponse(
                            EmptyQueryResponse::new(),
                        ))
                        .await?
                }
                Ok(Output::Rows {
                    schema,
                    batches,
                    tag,
                }) => {
                    send_query_response(
                        client,
                        query_response(&schema, &batches, &tag, &Format::UnifiedText),
                        true,
                    )
                    .await?
                }
                Ok(Output::Command(tag)) => {
                    client
                        .feed(PgWireBackendMessage::CommandComplete(Tag::new(&tag).into()))
                        .await?
                }
                Ok(Output::CopyIn { columns }) => {
                    // The data comes next; ReadyForQuery follows the COPY's end.
                    client.set_transaction_status(wire_status(session.txn_state()));
                    client.set_state(PgWireConnectionState::CopyInProgress(false));
                    client
                        .send(PgWireBackendMessage::CopyInResponse(CopyInResponse::new(
                            0,
                            columns as i16,
                            vec![0; columns],
                        )))
                        .await?;
                    return Ok(());
                }
                Ok(Output::CopyOut {
                    schema,
                    batches,
                    format,
                }) => {
                    let lines = match encode::copy_lines(&schema, &batches, &format) {
                        Ok(lines) => lines,
                        Err(e) => {
                            client
                                .feed(PgWireBackendMessage::ErrorResponse(error_info(&e).into()))
                                .await?;
                            continue;
                        }
                    };
                    let columns = schema.fields().len();
                    client
                        .feed(PgWireBackendMessage::CopyOutResponse(CopyOutResponse::new(
                            0,
                            columns as i16,
                            vec![0; columns],
                        )))
                        .await?;
                    let n: usize = batches.iter().map(|b| b.num_rows()).sum();
                    for line in lines {
                        client
                            .feed(PgWireBackendMessage::CopyData(CopyData::new(line.into())))
                            .await?;
                    }
                    client
                        .feed(PgWireBackendMessage::CopyDone(CopyDone::new()))
                        .await?;
                    client
                        .feed(PgWireBackendMessage::CommandComplete(
                            Tag::new(&format!("COPY {n}")).into(),
                        ))
                        .await?
                }
                Err(e) => {
                    client
                        .feed(PgWireBackendMessage::ErrorResponse(error_info(&e).into()))
                        .await?
                }
            }
        }
        for n in session.take_notices() {
            client.feed(notice(n)).await?;
        }
        let status = wire_status(session.txn_state());
        client.set_state(PgWireConnectionState::ReadyForQuery);
        client.set_transaction_status(status);
        send_ready_for_query(client, status).await?;
        Ok(())
    }

    async fn do_query<C>(&self, _client: &mut C, _query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        Err(PgWireError::UserError(Box::new(error_info(
            &Error::internal("simple queries go through on_query"),
        ))))
    }
}

/// Receives the data of a COPY FROM STDIN started by a simple query.
struct CopyIn {
    session: Arc<Mutex<Session>>,
}

#[async_trait]
impl CopyHandler for CopyIn {
    async fn on_copy_data<C>(&self, _client: &mut C, copy_data: CopyData) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self.session.lock().await.copy_data(&copy_data.data).await;
        Ok(())
    }

    async fn on_copy_done<C>(&self, client: &mut C, _done: CopyDone) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let mut session = self.session.lock().await;
        let result = session.copy_done().await;
        client.set_transaction_status(wire_status(session.txn_state()));
        match result {
            Ok(out) => {
                client
                    .send(PgWireBackendMessage::CommandComplete(
                        Tag::new(out.tag()).into(),
                    ))
                    .await?;
                Ok(())
            }
            Err(e) => Err(user_error(e)),
        }
    }

    async fn on_copy_fail<C>(&self, client: &mut C, fail: CopyFail) -> PgWireError
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let mut session = self.session.lock().await;
        let e = session.copy_fail(&fail.message);
        client.set_transaction_status(wire_status(session.txn_state()));
        user_error(e)
    }
}

/// A parsed extended-protocol statement.
#[derive(Debug, Clone)]
pub struct Prepared {
    stmt: Option<tessera_query::Statement>,
    params: Vec<Type>,
    schema: Option<SchemaRef>,
}

/// Parses and describes statements for the extended protocol.
pub struct StatementParser {
    session: Arc<Mutex<Session>>,
}

fn user_error(e: Error) -> PgWireError {
    PgWireError::UserError(Box::new(error_info(&e)))
}

#[async_trait]
impl QueryParser for StatementParser {
    type Statement = Prepared;

    async fn parse_sql<C>(
        &self,
        _client: &C,
        sql: &str,
        types: &[Option<Type>],
    ) -> PgWireResult<Option<Prepared>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let mut stmts = tessera_query::parse(sql).map_err(user_error)?;
        if stmts.len() > 1 {
            return Err(user_error(Error::new(
                SqlState::SyntaxError,
                "cannot insert multiple commands into a prepared statement",
            )));
        }
        let Some(stmt) = stmts.pop() else {
            return Ok(None);
        };
        let mut session = self.session.lock().await;
        let desc = session.describe(&stmt).await.map_err(user_error)?;
        let n = desc.params.len().max(types.len());
        let params = (0..n)
            .map(|i| {
                types
                    .get(i)
                    .cloned()
                    .flatten()
                    .filter(|t| *t != Type::UNKNOWN)
                    .or_else(|| {
                        desc.params
                            .get(i)
                            .cloned()
                            .flatten()
                            .map(|f| crate::encode::pg_type(&f))
                    })
                    .unwrap_or(Type::TEXT)
            })
            .collect();
        Ok(Some(Prepared {
            stmt: Some(stmt),
            params,
            schema: desc.schema,
        }))
    }

    fn get_parameter_types(&self, stmt: &Prepared) -> PgWireResult<Vec<Type>> {
        Ok(stmt.params.clone())
    }

    fn get_result_schema(
        &self,
        stmt: &Prepared,
        format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        Ok(match &stmt.schema {
            Some(s) => encode::fields(s, format.unwrap_or(&Format::UnifiedText)),
            None => Vec::new(),
        })
    }
}

struct ExtendedHandler {
    session: Arc<Mutex<Session>>,
    parser: Arc<StatementParser>,
    cancel: Arc<CancelSlot>,
}

#[async_trait]
impl ExtendedQueryHandler for ExtendedHandler {
    type Statement = Prepared;
    type QueryParser = StatementParser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        self.parser.clone()
    }

    /// Describe of a statement without result rows answers ParameterDescription and
    /// NoData, as PostgreSQL does (pgwire would send an empty RowDescription when the
    /// statement has parameters, which drivers such as pgjdbc take for a query).
    async fn on_describe<C>(&self, client: &mut C, message: Describe) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if message.target_type == b'S' {
            let name = message.name.as_deref().unwrap_or("");
            if let Some(Entry::Value(stored)) = client.portal_store().get_statement(name) {
                if stored.statement.schema.is_none() {
                    let params: Vec<u32> = (0..stored
                        .parameter_types
                        .len()
                        .max(stored.statement.params.len()))
                        .map(|i| {
                            stored
                                .parameter_types
                                .get(i)
                                .cloned()
                                .flatten()
                                .filter(|t| *t != Type::UNKNOWN)
                                .or_else(|| stored.statement.params.get(i).cloned())
                                .unwrap_or(Type::UNKNOWN)
                                .oid()
                        })
                        .collect();
                    client
                        .send(PgWireBackendMessage::ParameterDescription(
                            ParameterDescription::new(params),
                        ))
                        .await?;
                    client
                        .send(PgWireBackendMessage::NoData(NoData::new()))
                        .await?;
                    return Ok(());
                }
            }
        }
        self._on_describe(client, message).await
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Prepared>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let prepared = &portal.statement.statement;
        let Some(stmt) = &prepared.stmt else {
            return Ok(Response::EmptyQuery);
        };
        let mut values = Vec::with_capacity(portal.parameters.len());
        for (i, raw) in portal.parameters.iter().enumerate() {
            let ty = portal
                .statement
                .parameter_types
                .get(i)
                .cloned()
                .flatten()
                .filter(|t| *t != Type::UNKNOWN)
                .or_else(|| prepared.params.get(i).cloned())
                .unwrap_or(Type::TEXT);
            let format = encode::format_for(&portal.parameter_format, i);
            values.push(crate::params::decode(raw.as_deref(), format, &ty).map_err(user_error)?);
        }
        let mut stmt = stmt.clone();
        tessera_query::bind_params(&mut stmt, &values).map_err(user_error)?;
        let kind = StatementKind::of(&stmt);
        let mut session = self.session.lock().await;
        know_client(&mut session, client);
        let result = tokio::select! {
            r = session.execute(stmt) => r,
            _ = self.cancel.notify.notified() => {
                session.abandon_statement();
                Err(cancelled())
            }
        };
        for n in session.take_notices() {
            client.feed(notice(n)).await?;
        }
        match result {
            Ok(Output::Empty) => Ok(Response::EmptyQuery),
            Ok(Output::CopyIn { columns }) => Ok(Response::CopyIn(CopyResponse::new(
                0,
                columns,
                stream::empty(),
            ))),
            Ok(Output::CopyOut {
                schema,
                batches,
                format,
            }) => {
                let lines = encode::copy_lines(&schema, &batches, &format).map_err(user_error)?;
                Ok(Response::CopyOut(CopyResponse::new(
                    0,
                    schema.fields().len(),
                    stream::iter(
                        lines
                            .into_iter()
                            .map(|l| Ok(CopyData::new(l.into())))
                            .collect::<Vec<_>>(),
                    ),
                )))
            }
            Ok(Output::Rows {
                schema,
                batches,
                tag,
            }) => Ok(Response::Query(query_response(
                &schema,
                &batches,
                &tag,
                &portal.result_column_format,
            ))),
            Ok(Output::Command(tag)) => Ok(match kind {
                StatementKind::Begin => Response::TransactionStart(Tag::new(&tag)),
                StatementKind::End => Response::TransactionEnd(Tag::new(&tag)),
                StatementKind::Other => Response::Execution(Tag::new(&tag)),
            }),
            Err(e) => {
                client.set_transaction_status(wire_status(session.txn_state()));
                Err(user_error(e))
            }
        }
    }
}

enum StatementKind {
    Begin,
    End,
    Other,
}

impl StatementKind {
    fn of(stmt: &tessera_query::Statement) -> Self {
        use tessera_query::Statement as S;
        match stmt {
            S::StartTransaction { .. } => StatementKind::Begin,
            S::Commit { .. }
            | S::Rollback {
                savepoint: None, ..
            } => StatementKind::End,
            _ => StatementKind::Other,
        }
    }
}
