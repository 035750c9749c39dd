//! Errors of the query layer, each with the SQLSTATE PostgreSQL would send.

use std::fmt;

use datafusion::error::DataFusionError;

/// SQLSTATE codes used by tessera (names follow PostgreSQL's errcodes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SqlState {
    SuccessfulCompletion,
    FeatureNotSupported,
    SyntaxError,
    UndefinedTable,
    UndefinedColumn,
    UndefinedObject,
    UndefinedFunction,
    DuplicateTable,
    DuplicateColumn,
    DuplicateObject,
    AmbiguousColumn,
    DatatypeMismatch,
    InvalidTextRepresentation,
    InvalidDatetimeFormat,
    DatetimeFieldOverflow,
    InvalidParameterValue,
    NumericValueOutOfRange,
    StringDataRightTruncation,
    DivisionByZero,
    UniqueViolation,
    CardinalityViolation,
    InvalidColumnReference,
    NotNullViolation,
    InvalidTableDefinition,
    ActiveSqlTransaction,
    NoActiveSqlTransaction,
    InFailedSqlTransaction,
    InvalidTransactionState,
    SerializationFailure,
    StatementCompletionUnknown,
    ObjectNotInPrerequisiteState,
    DependentObjectsStillExist,
    InvalidSavepointSpecification,
    ProtocolViolation,
    QueryCanceled,
    BadCopyFileFormat,
    CharacterNotInRepertoire,
    ForeignKeyViolation,
    InvalidForeignKey,
    Internal,
}

impl SqlState {
    /// The five-character code.
    pub fn code(self) -> &'static str {
        use SqlState::*;
        match self {
            SuccessfulCompletion => "00000",
            FeatureNotSupported => "0A000",
            SyntaxError => "42601",
            UndefinedTable => "42P01",
            UndefinedColumn => "42703",
            UndefinedObject => "42704",
            UndefinedFunction => "42883",
            DuplicateTable => "42P07",
            DuplicateColumn => "42701",
            DuplicateObject => "42710",
            AmbiguousColumn => "42702",
            DatatypeMismatch => "42804",
            InvalidTextRepresentation => "22P02",
            InvalidDatetimeFormat => "22007",
            DatetimeFieldOverflow => "22008",
            InvalidParameterValue => "22023",
            NumericValueOutOfRange => "22003",
            StringDataRightTruncation => "22001",
            DivisionByZero => "22012",
            UniqueViolation => "23505",
            CardinalityViolation => "21000",
            InvalidColumnReference => "42P10",
            NotNullViolation => "23502",
            InvalidTableDefinition => "42P16",
            ActiveSqlTransaction => "25001",
            NoActiveSqlTransaction => "25P01",
            InFailedSqlTransaction => "25P02",
            InvalidTransactionState => "25000",
            SerializationFailure => "40001",
            StatementCompletionUnknown => "40003",
            ObjectNotInPrerequisiteState => "55000",
            DependentObjectsStillExist => "2BP01",
            InvalidSavepointSpecification => "3B001",
            ProtocolViolation => "08P01",
            QueryCanceled => "57014",
            BadCopyFileFormat => "22P04",
            ForeignKeyViolation => "23503",
            InvalidForeignKey => "42830",
            CharacterNotInRepertoire => "22021",
            Internal => "XX000",
        }
    }
}

/// A SQL error: a SQLSTATE, a message, and what else PostgreSQL's ErrorResponse can carry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    /// The SQLSTATE.
    pub state: SqlState,
    /// The primary message.
    pub message: String,
    /// The optional fields, boxed so that `Result<T>` stays small.
    pub extra: Box<ErrorFields>,
}

/// The optional fields of an [`Error`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ErrorFields {
    /// The DETAIL line, if any.
    pub detail: Option<String>,
    /// The HINT line, if any.
    pub hint: Option<String>,
    /// The table concerned, if one.
    pub table: Option<String>,
    /// The column concerned, if one.
    pub column: Option<String>,
    /// The constraint concerned, if one.
    pub constraint: Option<String>,
    /// For a transaction conflict: the raw key, named by the session before sending.
    pub conflict_key: Option<Vec<u8>>,
}

impl Error {
    /// An error with a state and message.
    pub fn new(state: SqlState, message: impl Into<String>) -> Self {
        Error {
            state,
            message: message.into(),
            extra: Box::default(),
        }
    }

    /// Attach a DETAIL line.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.extra.detail = Some(detail.into());
        self
    }

    /// Attach a HINT line.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.extra.hint = Some(hint.into());
        self
    }

    /// Name the table concerned.
    pub fn with_table(mut self, table: impl Into<String>) -> Self {
        self.extra.table = Some(table.into());
        self
    }

    /// Name the column concerned.
    pub fn with_column(mut self, column: impl Into<String>) -> Self {
        self.extra.column = Some(column.into());
        self
    }

    /// Name the constraint concerned.
    pub fn with_constraint(mut self, c: impl Into<String>) -> Self {
        self.extra.constraint = Some(c.into());
        self
    }

    /// A statement inside a failed transaction block (25P02).
    pub fn in_failed_transaction() -> Self {
        Error::new(
            SqlState::InFailedSqlTransaction,
            "current transaction is aborted, commands ignored until end of transaction block",
        )
    }

    /// A feature that is not built: SQLSTATE 0A000 naming it.
    pub fn unsupported(feature: impl fmt::Display) -> Self {
        Error::new(
            SqlState::FeatureNotSupported,
            format!("{feature} is not supported"),
        )
    }

    /// An internal error (a bug).
    pub fn internal(msg: impl fmt::Display) -> Self {
        Error::new(SqlState::Internal, format!("internal error: {msg}"))
    }

    /// Whether the client may retry the transaction.
    pub fn is_retryable(&self) -> bool {
        self.state == SqlState::SerializationFailure
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.message)
    }
}

impl std::error::Error for Error {}

/// Result alias of the query layer.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<tessera_cluster::Error> for Error {
    fn from(e: tessera_cluster::Error) -> Self {
        use tessera_cluster::Error as E;
        match e {
            E::Conflict { key, reason } => {
                let mut err = Error::new(
                    SqlState::SerializationFailure,
                    format!("could not serialize access: {reason}"),
                );
                err.extra.conflict_key = Some(key);
                err.with_detail("The transaction can be retried.")
            }
            E::TooOld { .. } => Error::new(
                SqlState::SerializationFailure,
                format!("could not serialize access: {e}"),
            ),
            E::Uncertain { ref key, .. } => {
                let key = key.clone();
                let mut err = Error::new(
                    SqlState::SerializationFailure,
                    format!("could not serialize access: {e}"),
                );
                err.extra.conflict_key = Some(key);
                err.with_detail("The transaction can be retried.")
            }
            E::Ambiguous(m) => Error::new(SqlState::StatementCompletionUnknown, m),
            E::Finished(s) => Error::new(
                SqlState::InvalidTransactionState,
                format!("transaction already {s}"),
            ),
            E::Storage(s) => Error::internal(s),
            E::NotLeaseholder { leader } => Error::unsupported(format!(
                "serving SQL on a node that does not hold the tablet's lease ({})",
                leader
                    .map(|l| format!("the leaseholder is node {l}; connect there"))
                    .unwrap_or_else(|| "the leaseholder is not known yet".into())
            )),
            E::RangeKeyMismatch { .. } | E::Unsettled { .. } => Error::new(
                SqlState::SerializationFailure,
                format!("could not serialize access: {e}"),
            )
            .with_detail("The transaction can be retried."),
            E::Unsupported(m) => Error::unsupported(m),
            E::Raft(m) => Error::new(
                SqlState::ObjectNotInPrerequisiteState,
                format!("replication unavailable: {m}"),
            ),
        }
    }
}

impl From<tessera_storage::Error> for Error {
    fn from(e: tessera_storage::Error) -> Self {
        Error::internal(e)
    }
}

/// Map a DataFusion error to the SQLSTATE PostgreSQL would use for the same mistake.
impl From<DataFusionError> for Error {
    fn from(e: DataFusionError) -> Self {
        let e = e.find_root().clone_or_string();
        match e {
            Root::Tessera(err) => err,
            Root::Message(kind, msg) => {
                let state = classify(kind, &msg);
                Error::new(state, clean_message(&msg))
            }
        }
    }
}

enum Root {
    Tessera(Error),
    Message(Kind, String),
}

#[derive(Clone, Copy)]
enum Kind {
    Plan,
    Schema,
    Sql,
    NotImpl,
    Arrow,
    Execution,
    Other,
}

trait RootExt {
    fn clone_or_string(&self) -> Root;
}

impl RootExt for DataFusionError {
    fn clone_or_string(&self) -> Root {
        match self {
            DataFusionError::External(e) => match e.downcast_ref::<Error>() {
                Some(err) => Root::Tessera(err.clone()),
                None => Root::Message(Kind::Other, e.to_string()),
            },
            DataFusionError::Plan(m) => Root::Message(Kind::Plan, m.clone()),
            DataFusionError::SchemaError(e, _) => Root::Message(Kind::Schema, e.to_string()),
            DataFusionError::SQL(e, _) => Root::Message(Kind::Sql, e.to_string()),
            DataFusionError::NotImplemented(m) => Root::Message(Kind::NotImpl, m.clone()),
            DataFusionError::ArrowError(e, _) => Root::Message(Kind::Arrow, e.to_string()),
            DataFusionError::Execution(m) => Root::Message(Kind::Execution, m.clone()),
            other => Root::Message(Kind::Other, other.to_string()),
        }
    }
}

fn classify(kind: Kind, msg: &str) -> SqlState {
    let m = msg.to_lowercase();
    if m.contains("divide by zero") || m.contains("division by zero") {
        return SqlState::DivisionByZero;
    }
    if m.contains("overflow") || m.contains("out of range") || m.contains("too large to store") {
        return SqlState::NumericValueOutOfRange;
    }
    if m.contains("cannot cast string")
        || m.contains("invalid digit")
        || m.contains("error parsing")
        || m.contains("cannot parse")
        || m.contains("invalid input syntax")
        || m.contains("parser error")
    {
        return SqlState::InvalidTextRepresentation;
    }
    match kind {
        Kind::Sql => SqlState::SyntaxError,
        Kind::NotImpl => SqlState::FeatureNotSupported,
        Kind::Schema => {
            if m.contains("ambiguous") {
                SqlState::AmbiguousColumn
            } else if m.contains("duplicate") {
                SqlState::DuplicateColumn
            } else {
                SqlState::UndefinedColumn
            }
        }
        Kind::Plan => {
            if m.contains("table") && m.contains("not found") {
                SqlState::UndefinedTable
            } else if m.contains("invalid function") || m.contains("no function matches") {
                SqlState::UndefinedFunction
            } else if m.contains("cannot coerce arithmetic")
                || m.contains("common argument type for comparison")
            {
                // PostgreSQL: "operator does not exist: boolean = integer".
                SqlState::UndefinedFunction
            } else if m.contains("cannot be cast")
                || m.contains("cannot infer common")
                || m.contains("coercion")
                || m.contains("does not support")
                || m.contains("unsupported")
            {
                SqlState::DatatypeMismatch
            } else if m.contains("not implemented") {
                SqlState::FeatureNotSupported
            } else {
                SqlState::SyntaxError
            }
        }
        Kind::Arrow | Kind::Execution | Kind::Other => {
            if m.contains("cast") {
                SqlState::InvalidTextRepresentation
            } else {
                SqlState::Internal
            }
        }
    }
}

fn clean_message(msg: &str) -> String {
    msg.trim()
        .trim_start_matches("Error during planning: ")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datafusion_errors_get_postgres_states() {
        let cases = [
            (
                DataFusionError::Plan("table 'x.y.z' not found".into()),
                "42P01",
            ),
            (DataFusionError::NotImplemented("LATERAL".into()), "0A000"),
            (
                DataFusionError::Execution("Divide by zero error".into()),
                "22012",
            ),
        ];
        for (e, want) in cases {
            assert_eq!(Error::from(e).state.code(), want);
        }
        let ours = Error::new(SqlState::UniqueViolation, "dup");
        let wrapped = DataFusionError::External(Box::new(ours.clone()));
        assert_eq!(Error::from(wrapped), ours);
    }
}
